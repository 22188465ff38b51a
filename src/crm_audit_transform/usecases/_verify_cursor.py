"""Which rows a file's job counted at its cursor id, for verify's job check (``_verify_walk``).

A file may repeat an id, and a run may stop among that id's rows: the job then counted only the
first ``MigrationJob.rows_at_cursor`` of them, its row and then its repeats in file order
(``usecases._page_rows.CountedAtCursor``, the run's side). Verify hands the rows a read set aside
before that read's rows (``_verify_walk.Walk.run``), so which of the id's repeats the job counted
is told by their order alone, but one: the job's last counted row is a repeat only when the id has
no row (its first line could not become one), which is known once the walk has ended.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..domain import Outcome
from ..jobs import MigrationJob


class CountedRowsAtCursor:
    """The rows set aside behind a job's cursor, its cursor id's as the job counted them.

    Every id other than the cursor's is behind as ``MigrationJob.is_behind`` says; so is every
    row of the cursor's id where ``rows_at_cursor`` is 0 (a database source, a sharded job, a job
    stored before the field: the cursor covers its id). Memory: one outcome, however many rows the
    id repeats."""

    __slots__ = ("_counted", "_id", "_job", "_last", "_row", "_seen")

    def __init__(self, job: MigrationJob) -> None:
        self._job = job
        self._counted = job.rows_at_cursor
        self._id = job.last_audit_id
        self._seen = 0  # the rows of the cursor's id set aside so far
        self._row = False  # whether the cursor's id had a row (not set aside: the id's first)
        self._last: Outcome | None = None  # the repeat counted only where the id had no row

    def behind(self, outcomes: Sequence[Outcome]) -> list[Outcome]:
        """Of ``outcomes``, rows set aside in the order the source handed them, those the job
        counted (but the one that waits for ``settled``)."""
        is_behind, audit_id, counted = self._job.is_behind, self._id, self._counted
        found: list[Outcome] = []
        for outcome in outcomes:
            if not counted or outcome.audit_id != audit_id:
                if is_behind(outcome.audit_id):
                    found.append(outcome)
                continue
            # The id's row comes first in a run's count, then its repeats in file order: the
            # job counted its row and counted - 1 repeats, or counted repeats without a row.
            if self._seen < counted - 1:
                found.append(outcome)
            elif self._seen == counted - 1:
                self._last = outcome
            self._seen += 1
        return found

    def saw_rows(self, ids: Sequence[int]) -> None:
        """A page's row ids, ascending: whether the cursor's id is one of them."""
        if self._counted and ids and ids[0] <= self._id <= ids[-1] and self._id in ids:
            self._row = True

    def settled(self) -> Outcome | None:
        """Once the walk has ended: the repeat the job counted last, where its id had no row."""
        return None if self._row else self._last
