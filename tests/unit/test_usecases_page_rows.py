"""A page's rows cut into steps where a file repeats an id: steps end among one id's rows, say how
many of their last rows are of their last id, and a resume passes over the rows its job counted."""

from __future__ import annotations

import pytest

from crm_audit_transform import reasons
from crm_audit_transform.domain import Failed, Outcome, Skipped
from crm_audit_transform.errors import SourceChanged
from crm_audit_transform.usecases._page_rows import CountedAtCursor, PageRows, with_set_aside
from crm_audit_transform.usecases._run_steps import Step, cut_steps
from crm_audit_transform.usecases._step_counts import rows_at_cursor
from support.mongo import migration_job


def _repeat(audit_id: int, n: int = 0) -> Outcome:
    return Failed(audit_id, reasons.DUPLICATE_AUDIT_ID, f"repeat {n}")


def _rows(ids: list[int]) -> PageRows:
    outcomes = [Skipped(i, "contact_not_found") for i in ids]
    return PageRows(ids, outcomes, [False] * len(ids), [False] * len(ids))


class TestCutSteps:
    def test_a_check_point_among_one_ids_rows_ends_a_step_there(self) -> None:
        """Check points after rows 2 and 4 cut the equal ids 1, 1, 1 and 2, 2 where they fall."""
        page = _rows([1, 1, 1, 2, 2])
        steps = list(
            cut_steps(
                page.ids,
                page.outcomes,
                page.fell_through,
                page.degraded,
                10,
                first_check=2,
                every=2,
                repeats=True,
            )
        )
        assert [(s.last_id, len(s.outcomes), s.last_rows) for s in steps] == [(1, 2, 2), (2, 2, 1), (2, 1, 1)]

    def test_without_repeats_a_step_counts_no_rows_at_its_last_id(self) -> None:
        """A source of unique ids (PostgreSQL): the job's ``rows_at_cursor`` stays 0."""
        page = _rows([1, 2, 3])
        steps = list(
            cut_steps(page.ids, page.outcomes, page.fell_through, page.degraded, 10, first_check=2, every=2)
        )
        assert [s.last_rows for s in steps] == [0, 0]


class TestRowsAtCursor:
    def test_a_step_all_of_the_cursors_id_adds_to_its_rows(self) -> None:
        job = migration_job(last_audit_id=7, rows_at_cursor=2)
        assert rows_at_cursor(job, Step(7, (_repeat(7),) * 3, last_rows=3)) == 5

    def test_a_step_reaching_a_new_id_counts_its_rows_of_it(self) -> None:
        job = migration_job(last_audit_id=7, rows_at_cursor=2)
        step = Step(9, (_repeat(7), _repeat(9), _repeat(9)), last_rows=2)
        assert rows_at_cursor(job, step) == 2

    def test_a_step_ending_at_the_cursors_id_among_others_is_not_added(self) -> None:
        """Only a step wholly of the cursor's id continues its count (else it started below it)."""
        job = migration_job(last_audit_id=0, rows_at_cursor=0)
        assert rows_at_cursor(job, Step(3, (_repeat(2), _repeat(3)), last_rows=1)) == 1


class TestCountedAtCursor:
    def test_a_job_with_no_rows_counted_at_its_cursor_reads_after_it(self) -> None:
        """Its cursor covers all of its id's rows (a database source, or a job stored before the field)."""
        counted = CountedAtCursor(migration_job(last_audit_id=7))
        assert counted.after_id == 7
        assert counted.pass_over(_rows([8, 9])).ids == [8, 9]

    def test_the_rows_counted_are_passed_over_across_pages(self) -> None:
        """Five rows of id 7 counted: three on the first page read, two on the next, then none."""
        counted = CountedAtCursor(migration_job(last_audit_id=7, rows_at_cursor=5))
        assert counted.after_id == 6
        assert counted.pass_over(_rows([7, 7, 7])).ids == []
        assert list(counted.pass_over(_rows([7, 7, 7, 8])).ids) == [7, 8]
        assert list(counted.pass_over(_rows([8, 9])).ids) == [8, 9]

    def test_an_id_with_fewer_rows_than_counted_is_a_changed_source(self) -> None:
        """A file changed since (fewer repeats): counting the next id's rows would lose the ones
        the job counted past them, so the run stops with how many it found."""
        counted = CountedAtCursor(migration_job(last_audit_id=7, rows_at_cursor=5))
        with pytest.raises(SourceChanged) as raised:
            counted.pass_over(_rows([7, 7, 8, 8]))
        assert (raised.value.audit_id, raised.value.counted, raised.value.found) == (7, 5, 2)

    def test_an_id_whose_rows_end_the_source_short_is_a_changed_source(self) -> None:
        counted = CountedAtCursor(migration_job(last_audit_id=7, rows_at_cursor=5))
        assert list(counted.pass_over(_rows([7, 7, 7])).ids) == []
        with pytest.raises(SourceChanged) as raised:
            counted.at_end()
        assert (raised.value.counted, raised.value.found) == (5, 3)


class TestWithSetAside:
    def test_an_ids_row_comes_before_its_repeats_and_those_below_the_read_are_dropped(self) -> None:
        """Stable in id order: the row, then its repeats as read; rows set aside at or below the
        id the read started after were counted (a source reading its file from the start)."""
        aside = [_repeat(5, 1), _repeat(7, 1), _repeat(7, 2), _repeat(9, 1)]
        merged = with_set_aside(_rows([7, 8, 9]), aside, after_id=6)
        assert list(merged.ids) == [7, 7, 7, 8, 9, 9]
        assert merged.outcomes[1:3] == [_repeat(7, 1), _repeat(7, 2)]
        assert isinstance(merged.outcomes[0], Skipped)
