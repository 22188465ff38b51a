"""Readable, JSON-shaped summaries of outcomes for syrupy snapshots (reviewed like code)."""

from __future__ import annotations

import datetime as dt
import decimal
import math
from collections.abc import Mapping
from typing import Any

from crm_audit_transform.domain import ActivityLog, Actor, Failed, Migrated, Outcome, Skipped

LONG_TEXT = 80
# Copies of the row itself: pinned by a test of their own, left out of the per-row snapshots.
ROW_COPIES = ("crm_audit_id", "crm_tenant", "request_uuid")


def encode(value: Any) -> Any:
    """The value model in JSON: typed markers for what JSON lacks, long strings shortened."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"$float": repr(value)}
    if isinstance(value, str):
        return value if len(value) <= LONG_TEXT else f"{value[:LONG_TEXT]}… ({len(value)} chars)"
    if isinstance(value, decimal.Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, dt.datetime):
        return {"$time": value.isoformat()}
    if isinstance(value, dt.date):
        return {"$date": value.isoformat()}
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    if isinstance(value, Mapping):
        if all(isinstance(k, str) for k in value):
            return {k: encode(v) for k, v in value.items()}
        return {"$hash": [[encode(k), encode(v)] for k, v in value.items()]}
    return {"$unexpected": repr(value)}


def actor_text(actor: Actor) -> str:
    return f"{actor.kind}: {actor.name}" + (f" ({actor.sso_id})" if actor.sso_id else "")


def log_summary(log: ActivityLog) -> dict[str, Any]:
    return {
        "log": f"{log.category}/{log.action}",
        "actor": actor_text(log.actor),
        "customer_id": log.customer_id,
        "changes": {c.field: [encode(c.from_), encode(c.to)] for c in log.changes},
        "metadata": {k: encode(v) for k, v in log.metadata.items() if k not in ROW_COPIES},
    }


def outcome_summary(outcome: Outcome) -> dict[str, Any]:
    if isinstance(outcome, Migrated):
        return {"id": outcome.audit_id, "outcome": "migrated", **log_summary(outcome.log)}
    kind = "skipped" if isinstance(outcome, Skipped) else "failed"
    assert isinstance(outcome, Skipped | Failed)
    return {"id": outcome.audit_id, "outcome": f"{kind}: {outcome.reason}", "detail": outcome.detail}


def full_log(log: ActivityLog) -> dict[str, Any]:
    """Every field of a log, for the hand-written rule cases."""
    return {
        "company_sso_id": log.company_sso_id,
        "customer_id": log.customer_id,
        "category": log.category,
        "action": log.action,
        "actor": {"kind": log.actor.kind, "name": log.actor.name, "sso_id": log.actor.sso_id},
        "changes": [
            {"field": c.field, "label": c.label, "from": encode(c.from_), "to": encode(c.to)}
            for c in log.changes
        ],
        "timestamp": log.timestamp.isoformat(),
        "external_id": log.external_id,
        "source_tag": log.source_tag,
        "metadata": {k: encode(v) for k, v in log.metadata.items()},
    }
