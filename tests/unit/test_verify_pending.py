"""Verify on a job that is not completed: the rows past its cursor are ``pending``, not ``missing``."""

from __future__ import annotations

import attrs
import pytest

from crm_audit_adapters.cli.verify import summary_lines
from crm_audit_transform.jobs import CANCELLED, COMPLETED, HALTED, IN_PROGRESS, ROLLED_BACK, MigrationJob
from crm_audit_transform.usecases import RunSettings
from support.corpus_account import World

SETTINGS = RunSettings(page_size=200, batch_size=20, halt_threshold=1.0)


def paused_world() -> World:
    """An account whose run stopped after its first batch (a Ctrl-C, a worker's shutdown): in progress."""
    world = World()
    world.trigger()
    asked: list[bool] = []

    def stop_after_the_first_batch() -> bool:
        asked.append(True)
        return len(asked) > 1

    result = world.run(settings=SETTINGS, should_stop=stop_after_the_first_batch)
    assert result.stopped
    assert result.job.status == IN_PROGRESS
    return world


def job_of(world: World) -> MigrationJob:
    job = world.jobs.latest(world.company)
    assert job is not None
    return job


class TestPending:
    @pytest.mark.parametrize("status", [IN_PROGRESS, HALTED, CANCELLED])
    def test_rows_past_the_cursor_of_a_job_not_completed_are_pending_not_missing(self, status: str) -> None:
        """A paused, halted or cancelled job resumes from its cursor: its unread rows are ``pending``
        (before: every one of them ``missing``, read as lost records), the rows behind it consistent."""
        world = paused_world()
        job = job_of(world)
        world.jobs.save(attrs.evolve(job, status=status))
        report = world.verify()
        assert report.count("missing") == 0
        assert report.pending.count > 0
        assert all(f.audit_id is not None and f.audit_id > job.last_audit_id for f in report.pending.items)
        assert report.job is not None
        assert report.job.consistent
        assert "missing" not in report.outstanding
        assert not report.clean  # not proven complete while its run is not done
        assert report.to_json()["pending"]["count"] == report.pending.count

    def test_the_summary_says_the_pending_rows_are_not_lost(self) -> None:
        """The human summary names them apart, and why they have no log yet."""
        world = paused_world()
        lines = list(summary_lines(world.verify()))
        assert not any(line.strip().startswith("missing:") for line in lines)
        (pending,) = [line for line in lines if line.strip().startswith("pending:")]
        assert "in_progress job" in pending
        assert "not lost" in pending

    def test_repair_leaves_pending_rows_to_the_run(self) -> None:
        """``--repair`` on a paused job writes nothing past its cursor: the run will reach those rows."""
        world = paused_world()
        before = len(world.logs.logs)
        report = world.verify(repair=True)
        assert report.repaired == 0
        assert len(world.logs.logs) == before
        assert report.pending.count > 0

    @pytest.mark.parametrize("status", [COMPLETED, ROLLED_BACK])
    def test_a_job_whose_run_has_ended_has_no_pending_rows(self, status: str) -> None:
        """A completed job claims every row (one short of it is missing); a rolled-back one claims
        none is migrated: neither run will reach a row again, so none is pending."""
        world = paused_world()
        world.jobs.save(attrs.evolve(job_of(world), status=status))
        report = world.verify()
        assert report.pending.count == 0
        assert report.count("missing") > 0
