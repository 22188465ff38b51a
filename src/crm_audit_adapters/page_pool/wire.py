"""A page's result as it crosses back from a worker: plain tuples, not the outcome objects.

Pickling the attrs outcomes (each ``Migrated`` with its ``ActivityLog``, its actor, its changes) was
the cost of ``--workers``: 20 µs a row to pickle in the worker and 16 µs to unpickle in the parent,
as much as the work moved out (benchmarks/RESULTS.md, issue 15 goal 2). So the worker encodes each
log in its writer's format (``ports.EncodingLogWriter``) and sends one tuple of builtins per row:

- ``(audit_id, company_sso_id, external_id, action, encoding, data, problem, source_tag, named)`` —
  a ``Migrated`` whose log is an ``EncodedLog`` (9 items);
- ``(audit_id, reason, detail, skipped)`` — a ``Skipped`` (``skipped`` true) or a ``Failed`` (4);
- ``(audit_id, outcome)`` — anything else, pickled as it is: a ``Migrated`` whose log the run
  loop may still change (an association log it names), or an outcome of another class (2).

Strings that repeat (the company, actions, reasons, the encoding) are one object each in the
worker, so pickle's memo sends them once per page. ``unpack`` builds the same outcomes the worker
held, so the run loop cannot tell the page crossed a process boundary.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias

from crm_audit_transform.domain import ActivityLog, EncodedLog, Failed, Migrated, Outcome, Skipped
from crm_audit_transform.transformer import PageResult

__all__ = ["WirePage", "pack", "unpack"]

WirePage: TypeAlias = tuple[list[tuple[Any, ...]], Any, tuple[bool, ...], tuple[bool, ...]]
"""``(rows, tally, fell_through, degraded)``: what ``pack`` makes of a ``PageResult`` (``tally``
None when it was not counted yet: the rebuilt ``PageResult`` counts it if read)."""


def pack(
    result: PageResult, encode: Callable[[ActivityLog], ActivityLog | EncodedLog] | None = None
) -> WirePage:
    """``result`` as tuples of builtins (see the module docstring); with ``encode``, each migrated
    ``ActivityLog`` is sent as what it returns (``usecases.pages.encode_ahead``)."""
    rows: list[tuple[Any, ...]] = []
    append = rows.append
    for outcome in result.outcomes:
        if isinstance(outcome, Migrated):
            log = outcome.log
            if encode is not None and isinstance(log, ActivityLog):
                log = encode(log)
            if isinstance(log, EncodedLog):
                append(
                    (
                        outcome.audit_id,
                        log.company_sso_id,
                        log.external_id,
                        log.action,
                        log.encoding,
                        log.data,
                        log.problem,
                        log.source_tag,
                        log.named,
                    )
                )
                continue
            if log is not outcome.log:  # left as a log by ``encode``, and sent as one
                append((outcome.audit_id, Migrated(outcome.audit_id, log)))
                continue
        elif type(outcome) is Skipped or type(outcome) is Failed:  # not a subclass: sent as it is
            append((outcome.audit_id, outcome.reason, outcome.detail, type(outcome) is Skipped))
            continue
        append((outcome.audit_id, outcome))
    # The tally only when already counted: the writer counts the page if it reads it (it does not),
    # and a worker's pages are the two-core run's critical path.
    return rows, result.counted_tally, result.fell_through, result.degraded


def unpack(wire: WirePage) -> PageResult:
    """The ``PageResult`` that ``pack`` was given, rebuilt in this process."""
    rows, tally, fell_through, degraded = wire
    outcomes: list[Outcome] = []
    append = outcomes.append
    for row in rows:
        size = len(row)
        if size == 9:
            append(Migrated(row[0], EncodedLog(*row[1:])))
        elif size == 4:
            append((Skipped if row[3] else Failed)(row[0], row[1], row[2]))
        else:
            append(row[1])
    return PageResult(tuple(outcomes), tally, fell_through, degraded)
