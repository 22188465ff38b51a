"""A page cut into steps (consecutive rows holding at most a batch of logs, ending also at the halt
rule's check points), and a step's write results folded into its outcomes (``usecases.run``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from attrs import frozen

from .. import reasons
from ..domain import Failed, Migrated, Outcome, Skipped, WriteResult
from ..packed import PackedOutcomes


@frozen
class Step:
    """A run of consecutive rows saved at once: through ``last_id``, with their outcomes (a tuple,
    or a view of a worker's packed page: ``packed.PackedOutcomes``). ``last_rows``: how many of its
    last rows are of ``last_id`` (counted only where an id may repeat, else 0: ``cut_steps``)."""

    last_id: int
    outcomes: Sequence[Outcome]
    fallthrough: int = 0
    degraded: int = 0
    last_rows: int = 0


def cut_steps(
    ids: Sequence[int],
    outcomes: Sequence[Outcome],
    fell_through: Sequence[bool],
    degraded: Sequence[bool],
    size: int,
    *,
    first_check: int,
    every: int,
    repeats: bool = False,
) -> Iterator[Step]:
    """Cut a page into steps of consecutive rows holding at most ``size`` logs to write, ending
    also after row ``first_check`` and every ``every`` rows after it (the halt rule's check points).

    ``ids`` ascend; with ``repeats`` (a file's repeated id, ``ports.RowsSetAside``) they may repeat,
    and a step may end among one id's rows: each step then tells how many of its last rows are of
    its last id (``Step.last_rows``), which the job keeps with its cursor (``rows_at_cursor``) so
    that a resume passes over exactly the rows counted.

    A packed page's steps are views of it (``PackedOutcomes``: its rows are told apart by their
    kinds, not read as objects); any other page's steps hold tuples."""
    marks: Iterable[object]
    if isinstance(outcomes, PackedOutcomes):
        marks = outcomes.log_marks()
    else:
        marks = (isinstance(outcome, Migrated) for outcome in outcomes)
    start = 0
    logs = 0
    next_check = first_check
    for index, is_log in enumerate(marks):
        if index >= next_check:
            if index > start:
                yield _step(ids, outcomes, fell_through, degraded, start, index, repeats)
                start, logs = index, 0
            while next_check <= index:
                next_check += every
        if is_log:
            if logs == size:
                yield _step(ids, outcomes, fell_through, degraded, start, index, repeats)
                start, logs = index, 0
            logs += 1
    if start < len(outcomes):
        yield _step(ids, outcomes, fell_through, degraded, start, len(outcomes), repeats)


def _step(
    ids: Sequence[int],
    outcomes: Sequence[Outcome],
    fell_through: Sequence[bool],
    degraded: Sequence[bool],
    a: int,
    b: int,
    repeats: bool,
) -> Step:
    part = outcomes[a:b]
    last_rows = 0
    if repeats:
        last = ids[b - 1]
        first = b - 1
        while first > a and ids[first - 1] == last:
            first -= 1
        last_rows = b - first
    return Step(
        last_id=ids[b - 1],
        outcomes=part if isinstance(part, PackedOutcomes) else tuple(part),
        fallthrough=sum(fell_through[a:b]),
        degraded=sum(degraded[a:b]),
        last_rows=last_rows,
    )


def settle_outcomes(outcomes: Sequence[Outcome], results: Sequence[WriteResult]) -> Iterator[Outcome]:
    """Fold the write results into the outcomes (see the counting rule in the module docstring)."""
    by_id = {r.external_id: r for r in results}
    for outcome in outcomes:
        if not isinstance(outcome, Migrated):
            yield outcome
            continue
        result = by_id.get(outcome.log.external_id)
        if result is None or result.status == "inserted" or result.reason == reasons.DUPLICATE_EXTERNAL_ID:
            yield outcome
        elif result.status == "skipped":
            yield Skipped(outcome.audit_id, result.reason, result.detail)
        else:
            yield Failed(outcome.audit_id, result.reason or reasons.WRITE_ERROR, result.detail)
