"""A page's rows as the run loop cuts them into steps: the rows it transformed and the rows the
source set aside with it, in id order, less the rows of the cursor's id a resume finds counted
(``usecases.run``, "Rows set aside").
"""

from __future__ import annotations

from collections.abc import Sequence

from attrs import frozen

from ..domain import Outcome
from ..errors import SourceChanged
from ..jobs import MigrationJob


@frozen
class PageRows:
    """A page's rows in id order: their ids, outcomes (a tuple, a list, or a worker's packed view),
    and per row whether its actor fell through to the fallback and whether it was degraded."""

    ids: Sequence[int]
    outcomes: Sequence[Outcome]
    fell_through: Sequence[bool]
    degraded: Sequence[bool]

    def __len__(self) -> int:
        return len(self.ids)

    def after(self, count: int) -> PageRows:
        """The rows after the first ``count``."""
        if not count:
            return self
        return PageRows(
            self.ids[count:], self.outcomes[count:], self.fell_through[count:], self.degraded[count:]
        )


def with_set_aside(
    rows: PageRows, aside: Sequence[Outcome], *, after_id: int, until_id: int | None = None
) -> PageRows:
    """``rows`` with the rows the source set aside (``ports.RowsSetAside``) past ``after_id`` (and,
    for a shard, at or below ``until_id``) in their id order; a row set aside is neither a
    fallthrough nor degraded.

    Rows set aside at or below ``after_id`` are dropped: a source reading its file again from the
    start (a resume in another process, a read by byte ranges) hands them again, and the job
    counted them. Those past a shard's ``until_id`` are the next shard's, which reads and counts
    them: a shard's last page may read past its range's end (its limit is the ids left in the
    range, more than the rows a file with gaps in its ids holds there), and counting them here
    too counted them twice and moved the shard's cursor past its range.

    The sort is stable: an id's row comes before its repeats set aside, and those in
    the order they were read, as in a clean run, so a resume passes over the same rows of an id
    as the run before it counted (``CountedAtCursor``).
    """
    if aside and until_id is not None:
        aside = [outcome for outcome in aside if after_id < outcome.audit_id <= until_id]
    elif aside and aside[0].audit_id <= after_id:
        aside = [outcome for outcome in aside if outcome.audit_id > after_id]
    if not aside:
        return rows
    merged = sorted(
        [
            *zip(rows.ids, rows.outcomes, rows.fell_through, rows.degraded, strict=True),
            *((o.audit_id, o, False, False) for o in aside),
        ],
        key=lambda item: item[0],
    )
    return PageRows(
        [item[0] for item in merged],
        [item[1] for item in merged],
        [item[2] for item in merged],
        [item[3] for item in merged],
    )


class CountedAtCursor:
    """The rows of a job's cursor id that it counted before a resume (``MigrationJob.rows_at_cursor``:
    a file may repeat an id, and a step may end among its rows), passed over when read again.

    The run reads from ``after_id``: the cursor itself when none was counted this way (every row
    of the cursor's id is behind it), else the id below it, so that id's rows are read again; ids
    are integers, so none lies between. Those rows come first, before any of a higher id, and
    the source must still hold as many as the job counted: one that holds fewer changed since
    (a file rewritten between runs), and the run stops there with ``SourceChanged`` before it
    counts anything, rather than count a row twice or never (``pass_over``, ``at_end``). One that
    holds more counts the rest as new rows."""

    __slots__ = ("_counted", "_id", "_left", "after_id")

    def __init__(self, job: MigrationJob) -> None:
        self._id = job.last_audit_id
        self._counted = self._left = job.rows_at_cursor
        self.after_id = self._id - 1 if self._left else self._id
        """The id the run's first page is asked after; rows set aside at or below it were counted."""

    def pass_over(self, rows: PageRows) -> PageRows:
        """``rows`` without those of the cursor's id still counted. ``SourceChanged`` when a row of
        another id comes while some are left: the source holds fewer rows of that id than the job
        counted."""
        if not self._left or not rows.ids:
            return rows
        ids, left, audit_id = rows.ids, self._left, self._id
        count = 0
        while count < len(ids) and count < left and ids[count] == audit_id:
            count += 1
        if count < len(ids) and count < left:
            raise SourceChanged(audit_id, self._counted, self._counted - left + count)
        self._left = left - count
        return rows.after(count)

    def at_end(self) -> None:
        """The source's end (or a shard range's) reached: ``SourceChanged`` if it held fewer rows of
        the cursor's id than the job counted (no other id came after them)."""
        if self._left:
            raise SourceChanged(self._id, self._counted, self._counted - self._left)
