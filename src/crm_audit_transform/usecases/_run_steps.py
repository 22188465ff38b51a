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
    or a view of a worker's packed page: ``packed.PackedOutcomes``)."""

    last_id: int
    outcomes: Sequence[Outcome]
    fallthrough: int = 0
    degraded: int = 0


def cut_steps(
    ids: Sequence[int],
    outcomes: Sequence[Outcome],
    fell_through: Sequence[bool],
    degraded: Sequence[bool],
    size: int,
    *,
    first_check: int,
    every: int,
) -> Iterator[Step]:
    """Cut a page into steps of consecutive rows holding at most ``size`` logs to write, ending
    also after row ``first_check`` and every ``every`` rows after it (the halt rule's check points).

    A step ends only between two different ids: a file's repeated id (``ports.RowsSetAside``: the
    id's row, then its repeats set aside) is never split, so a job's cursor covers every row of its
    id or none (a resume cannot tell which of them were counted). A check point inside such a run
    of equal ids moves to its end (``HaltRule.crossed``); a batch never needs to, as only the id's
    first row can hold a log. ``ids`` ascend.

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
        if index >= next_check and index and ids[index] != ids[index - 1]:
            # A check point, or the end of the equal ids it fell among.
            if index > start:
                yield _step(ids, outcomes, fell_through, degraded, start, index)
                start, logs = index, 0
            while next_check <= index:
                next_check += every
        if is_log:
            if logs == size:
                yield _step(ids, outcomes, fell_through, degraded, start, index)
                start, logs = index, 0
            logs += 1
    if start < len(outcomes):
        yield _step(ids, outcomes, fell_through, degraded, start, len(outcomes))


def _step(
    ids: Sequence[int],
    outcomes: Sequence[Outcome],
    fell_through: Sequence[bool],
    degraded: Sequence[bool],
    a: int,
    b: int,
) -> Step:
    part = outcomes[a:b]
    return Step(
        last_id=ids[b - 1],
        outcomes=part if isinstance(part, PackedOutcomes) else tuple(part),
        fallthrough=sum(fell_through[a:b]),
        degraded=sum(degraded[a:b]),
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
