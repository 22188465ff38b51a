"""Readable, JSON-shaped summaries of outcomes for snapshot tests (reviewed like code when they change).

The value model has what JSON lacks (Decimal, bytes, date, datetime, non-finite floats, non-string keys):
those become one-key markers (``{"$decimal": "12.50"}``), and long strings are shortened, so a
snapshot stays small, stable and diffable. A value that is itself a one-key dict whose key starts with
``$`` is wrapped as ``{"$literal": {...}}`` (MongoDB's name for a document taken as it is), so a
changed value ``{"$decimal": "12.50"}`` never reads as the marker of ``Decimal("12.50")``.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
from collections.abc import Mapping
from typing import Any

from ..domain import ActivityLog, Actor, EncodedLog, Failed, Migrated, Outcome, Skipped
from ..tally import Tally
from ..transformer import PageResult

LONG_TEXT = 80
# Copies of the audit row itself (pinned by tests of their own), left out of per-row summaries.
ROW_COPIES = ("crm_audit_id", "crm_tenant", "request_uuid")


def _encode(value: object) -> Any:
    """The value model in JSON: typed markers for what JSON lacks, long strings shortened."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"$float": repr(value)}
    if isinstance(value, str):
        return value if len(value) <= LONG_TEXT else f"{value[:LONG_TEXT]}… ({len(value)} chars)"
    if isinstance(value, decimal.Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, bytes):
        return {"$bytes": value.hex()}
    if isinstance(value, dt.datetime):
        return {"$time": value.isoformat()}
    if isinstance(value, dt.date):
        return {"$date": value.isoformat()}
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    if isinstance(value, Mapping):
        if all(isinstance(k, str) for k in value):
            encoded = {k: _encode(v) for k, v in value.items()}
            # One key starting with "$" is how a marker looks (Extended JSON reads it as a type):
            # such a dict of the data is wrapped, so every one-key "$" dict of a snapshot is a marker.
            if len(encoded) == 1 and next(iter(encoded)).startswith("$"):
                return {"$literal": encoded}
            return encoded
        return {"$hash": [[_encode(k), _encode(v)] for k, v in value.items()]}
    return {"$unexpected": repr(value)}


def _actor_text(actor: Actor) -> str:
    return f"{actor.kind}: {actor.name}" + (f" ({actor.sso_id})" if actor.sso_id else "")


def _tally_snapshot(tally: Tally) -> dict[str, Any]:
    return {
        "processed": tally.processed,
        "migrated": tally.migrated,
        "skipped": dict(tally.skipped),
        "failed": dict(tally.failed),
        "fallthrough": tally.fallthrough,
    }


def outcome_snapshot(outcome: Outcome) -> dict[str, Any]:
    """One row's outcome as JSON-shaped data: the log's gist if migrated, else reason and detail.

    A migrated row shows category/action, actor, customer, changes and the metadata that is not a
    copy of the row itself. ``TypeError`` for anything but a ``Migrated``, ``Skipped`` or ``Failed``.
    """
    if not isinstance(outcome, Migrated | Skipped | Failed):
        raise _wrong("outcome_snapshot(outcome)", "a Migrated, Skipped or Failed", outcome)
    if isinstance(outcome, Migrated):
        log = outcome.log
        if isinstance(log, EncodedLog):  # encoded by a --workers process: what the run loop reads
            return {"id": outcome.audit_id, "outcome": "migrated", "log": f"{log.encoding}/{log.action}"}
        return {
            "id": outcome.audit_id,
            "outcome": "migrated",
            "log": f"{log.category}/{log.action}",
            "actor": _actor_text(log.actor),
            "customer_id": log.customer_id,
            "changes": {c.field: [_encode(c.from_), _encode(c.to)] for c in log.changes},
            "metadata": {k: _encode(v) for k, v in log.metadata.items() if k not in ROW_COPIES},
        }
    kind = "skipped" if isinstance(outcome, Skipped) else "failed"
    return {"id": outcome.audit_id, "outcome": f"{kind}: {outcome.reason}", "detail": outcome.detail}


def snapshot_of(result: PageResult) -> dict[str, Any]:
    """A transform's result as JSON-shaped data: its tally and one summary per row, in row order.

    ``TypeError`` for anything but a ``PageResult`` (``transform_corpus``'s)."""
    if not isinstance(result, PageResult):
        raise _wrong("snapshot_of(result)", "a PageResult", result)
    return {
        "tally": _tally_snapshot(result.tally),
        "rows": [outcome_snapshot(o) for o in result.outcomes],
    }


def log_snapshot(log: ActivityLog) -> dict[str, Any]:
    """Every field of one activity log as JSON-shaped data (labels, timestamp and full metadata too).

    ``TypeError`` for anything but an ``ActivityLog``."""
    if not isinstance(log, ActivityLog):
        raise _wrong("log_snapshot(log)", "an ActivityLog", log)
    return {
        "company_sso_id": log.company_sso_id,
        "customer_id": log.customer_id,
        "category": log.category,
        "action": log.action,
        "actor": {"kind": log.actor.kind, "name": log.actor.name, "sso_id": log.actor.sso_id},
        "changes": [
            {"field": c.field, "label": c.label, "from": _encode(c.from_), "to": _encode(c.to)}
            for c in log.changes
        ],
        "timestamp": log.timestamp.isoformat(),
        "external_id": log.external_id,
        "source_tag": log.source_tag,
        "metadata": {k: _encode(v) for k, v in log.metadata.items()},
    }


def _wrong(call: str, expected: str, found: object) -> TypeError:
    # A caller's mistake, told as one: it was an AttributeError (or a bare AssertionError) from inside.
    return TypeError(f"{call} must be {expected}, got {type(found).__name__}")
