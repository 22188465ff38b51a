"""Which rows a file's job counted at its cursor id, for verify's job check (``_verify_walk``).

A file may repeat an id, and a run may stop among that id's rows: the job (or, in a sharded job,
the shard) then counted only the first ``rows_at_cursor`` of them, its row and then its repeats in
file order (``usecases._page_rows.CountedAtCursor``, the run's side). Verify hands the rows a read
set aside before that read's rows (``_verify_walk.Walk.run``), so which of the id's repeats the job
counted is told by their order alone, but one: the job's last counted row is a repeat only when the
id has no row (its first line could not become one), which is known once the walk has ended.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Sequence

from ..domain import Outcome
from ..jobs import MigrationJob


class CountedRowsAtCursor:
    """The rows set aside behind a job's cursors, each cursor id's as the job counted them.

    Every other id is behind as ``MigrationJob.is_behind`` says; so is every row of a cursor's id
    whose ``rows_at_cursor`` is 0 (a database source, a job stored before the field: the cursor
    covers its id). Memory: one outcome a cursor (the job's, or each shard's), however many rows
    its id repeats."""

    __slots__ = ("_counted", "_job", "_last", "_rows", "_seen")

    def __init__(self, job: MigrationJob) -> None:
        self._job = job
        # A shard's cursor ids are distinct: the ranges are disjoint, and a shard that counted
        # none of its first id (its cursor still its range's start) counts none at it.
        cursors = [(s.last_audit_id, s.rows_at_cursor) for s in job.shards] or [
            (job.last_audit_id, job.rows_at_cursor)
        ]
        self._counted = {audit_id: counted for audit_id, counted in cursors if counted}
        self._seen: Counter[int] = Counter()  # the rows of each cursor id set aside so far
        self._rows: set[int] = set()  # the cursor ids that had a row (not set aside: the id's first)
        self._last: dict[int, Outcome] = {}  # per cursor id, the repeat counted only without a row

    def behind(self, outcomes: Sequence[Outcome]) -> list[Outcome]:
        """Of ``outcomes``, rows set aside in the order the source handed them, those the job
        counted (but those that wait for ``settled``)."""
        is_behind, counted_at = self._job.is_behind, self._counted
        found: list[Outcome] = []
        for outcome in outcomes:
            audit_id = outcome.audit_id
            counted = counted_at.get(audit_id) if counted_at else None
            if counted is None:
                if is_behind(audit_id):
                    found.append(outcome)
                continue
            # The id's row comes first in a run's count, then its repeats in file order: the
            # job counted its row and counted - 1 repeats, or counted repeats without a row.
            seen = self._seen[audit_id]
            if seen < counted - 1:
                found.append(outcome)
            elif seen == counted - 1:
                self._last[audit_id] = outcome
            self._seen[audit_id] = seen + 1
        return found

    def saw_rows(self, ids: Sequence[int]) -> None:
        """A page's row ids, ascending: which cursor ids are among them."""
        if not self._counted or not ids:
            return
        for audit_id in self._counted:
            if ids[0] <= audit_id <= ids[-1] and ids[bisect_left(ids, audit_id)] == audit_id:
                self._rows.add(audit_id)

    def settled(self) -> list[Outcome]:
        """Once the walk has ended: the repeats the job counted last, where their id had no row."""
        return [outcome for audit_id, outcome in self._last.items() if audit_id not in self._rows]
