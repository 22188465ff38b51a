"""A page's result as it crosses back from a worker: arrays and tuples, not the outcome objects.

Pickling the attrs outcomes (each ``Migrated`` with its ``ActivityLog``, its actor, its changes) was
the cost of ``--workers``: 20 µs a row to pickle in the worker and 16 µs to unpickle in the parent,
as much as the work moved out (benchmarks/RESULTS.md, issue 15 goal 2). Rebuilding a ``Migrated``
and its ``EncodedLog`` per row in the parent was still a sixth of the runner's time (ninth round).
So the worker encodes each log in its writer's format (``ports.EncodingLogWriter``) and packs the
page (``packed.pack_outcomes``): the rows' ids, kinds and logs' fields in arrays, their lines in one
buffer. Of the other rows it sends

- ``(reason, detail, skipped)`` for a ``Skipped`` (``skipped`` true) or a ``Failed``;
- the outcome itself, pickled, for anything else (a ``Migrated`` whose log the run loop may still
  change, an association log it names; an outcome of another class).

Strings that repeat (reasons, actions) are one object each in the worker, so pickle's memo sends
them once per page. ``unpack`` gives a ``PackedOutcomes`` that reads, row by row, as the outcomes
the worker held, so the run loop cannot tell the page crossed a process boundary; the loop writes
its steps from the arrays (``ports.PackedLogWriter``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias

from crm_audit_transform.domain import ActivityLog, EncodedLog, Failed, Outcome, Skipped
from crm_audit_transform.packed import PackedOutcomes, PackedRows, pack_outcomes
from crm_audit_transform.transformer import PageResult

__all__ = ["WirePage", "pack", "unpack"]

WirePage: TypeAlias = tuple[PackedRows, Any, tuple[bool, ...], tuple[bool, ...]]
"""``(rows, tally, fell_through, degraded)``: what ``pack`` makes of a ``PageResult`` (``tally``
None when it was not counted yet: the rebuilt ``PageResult`` counts it if read)."""


def pack(
    result: PageResult, encode: Callable[[ActivityLog], ActivityLog | EncodedLog] | None = None
) -> WirePage:
    """``result`` as arrays and builtins (see the module docstring); with ``encode``, each migrated
    ``ActivityLog`` is sent as what it returns (``usecases.pages.encode_ahead``)."""
    packed = pack_outcomes(result.outcomes, encode, other=_other)
    # The tally only when already counted: the writer counts the page if it reads it (it does not),
    # and a worker's pages are the two-core run's critical path.
    return packed.rows, result.counted_tally, result.fell_through, result.degraded


def _other(outcome: Outcome) -> Any:
    if type(outcome) is Skipped or type(outcome) is Failed:  # not a subclass: sent as it is
        return (outcome.reason, outcome.detail, type(outcome) is Skipped)
    return outcome


def unpack(wire: WirePage) -> PageResult:
    """The ``PageResult`` that ``pack`` was given, rebuilt in this process (its outcomes packed)."""
    rows, tally, fell_through, degraded = wire
    others = rows.others
    ids = rows.ids
    for index, other in enumerate(others):
        if type(other) is tuple:
            reason, detail, skipped = other
            others[index] = (Skipped if skipped else Failed)(ids[index], reason, detail)
    return PageResult(PackedOutcomes(rows), tally, fell_through, degraded)
