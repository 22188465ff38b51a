"""``/migrate`` against a rollback (``usecases.migrate_hold``): refused before, undone after."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import attrs
import pytest

from crm_audit_transform.domain import ActivityLog
from crm_audit_transform.errors import JobAlreadyRunning, JobNotRunnable
from crm_audit_transform.jobs import COMPLETED, IN_PROGRESS, ROLLED_BACK, ROLLING_BACK, MigrationJob
from crm_audit_transform.ports import JobStore
from crm_audit_transform.usecases.migrate_hold import refuse_rolled_back, settle_after_write
from support.corpus_account import World


def ran(world: World) -> int:
    """The world's account triggered and run to its end: how many logs it migrated."""
    world.trigger()
    return world.run().job.tally.migrated


def set_status(jobs: JobStore, company: str, status: str) -> None:
    job = jobs.latest(company)
    assert job is not None
    jobs.save(attrs.evolve(job, status=status))


def batch(count: int) -> list[ActivityLog]:
    """``count`` logs of the corpus account, as a client posts them (the same account as ``World()``'s)."""
    source = World()
    ran(source)
    return list(source.logs.logs[:count])


class TestBeforeTheWrite:
    def test_a_rolling_back_or_rolled_back_account_is_refused_and_any_other_is_not(self) -> None:
        """rolling_back: JobAlreadyRunning; rolled_back: JobNotRunnable; no job, or a job in progress
        or completed: nothing raised."""
        world = World()
        refuse_rolled_back(world.company, world.jobs)
        world.trigger()
        refuse_rolled_back(world.company, world.jobs)
        for status, error in ((ROLLING_BACK, JobAlreadyRunning), (ROLLED_BACK, JobNotRunnable)):
            set_status(world.jobs, world.company, status)
            with pytest.raises(error):
                refuse_rolled_back(world.company, world.jobs)
        set_status(world.jobs, world.company, COMPLETED)
        refuse_rolled_back(world.company, world.jobs)


class _RollbackAfterTheCheck:
    """The account's job store as ``/migrate`` meets it: a rollback takes the job to ``status`` right
    after the batch's check read it (``rolled_back``: its delete done too), so the batch lands after
    it. More than the route's three reads of the job would be waiting for that rollback: refused."""

    def __init__(self, world: World, status: str) -> None:
        self.inner = world.jobs
        self.world = world
        self.status = status
        self.reads = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def latest(self, company_sso_id: str) -> MigrationJob | None:
        self.reads += 1
        assert self.reads <= 3, "the batch read the job again: it waits for the rollback"
        job = self.inner.latest(company_sso_id)
        if self.reads == 1 and job is not None:  # the check read it; the rollback comes now
            deleted = self.world.logs.delete_migrated(company_sso_id) if self.status == ROLLED_BACK else None
            self.inner.save(attrs.evolve(job, status=self.status, logs_deleted=deleted))
        return job


class TestAfterTheWrite:
    def test_a_job_neither_rolling_back_nor_rolled_back_leaves_the_batch_alone(self) -> None:
        """The batch went in before any hold: nothing deleted, nothing raised."""
        world = World()
        migrated = ran(world)
        settle_after_write(world.company, world.jobs, ["crm:acme:audit:1"], world.logs)
        assert world.logs.count_migrated(world.company) == migrated

    def test_a_batch_landing_during_a_rollback_deletes_its_own_logs_at_once(self) -> None:
        """The job is rolling_back after the write: the batch deletes the logs it inserted — none
        other, the rollback deletes those — and is refused JOB_NOT_RUNNABLE, without waiting for the
        rollback. (It polled the job for up to 30 s in the request, then ran a whole rollback.)"""
        world = World()
        migrated = ran(world)
        set_status(world.jobs, world.company, COMPLETED)
        logs = batch(3)
        world.logs.delete_migrated(world.company)  # room for the batch's own ids
        world.logs.insert_batch(batch(20)[10:])  # what the rollback under way has not reached yet
        world.jobs = _RollbackAfterTheCheck(world, ROLLING_BACK)  # type: ignore[assignment]
        with pytest.raises(JobNotRunnable, match="its 3 inserted logs were deleted"):
            world.service().migrate(logs)
        assert world.logs.count_migrated(world.company) == 10
        assert not {log.external_id for log in logs} & {log.external_id for log in world.logs.logs}
        assert migrated > 20

    def test_a_batch_landing_after_a_rollback_deletes_its_own_logs_and_leaves_the_count(self) -> None:
        """The rollback finished between the batch's check and its write: the batch's logs are
        deleted by the batch, the rollback's count stays what it deleted, and the refusal comes at
        once. (A second whole rollback ran in the request and added the batch to logs_deleted.)"""
        world = World()
        migrated = ran(world)
        set_status(world.jobs, world.company, COMPLETED)
        jobs = world.jobs
        world.jobs = _RollbackAfterTheCheck(world, ROLLED_BACK)  # type: ignore[assignment]
        with pytest.raises(JobNotRunnable, match="nothing of it was kept"):
            world.service().migrate(batch(3))
        assert world.logs.count_migrated(world.company) == 0
        job = jobs.latest(world.company)
        assert job is not None
        assert (job.status, job.logs_deleted) == (ROLLED_BACK, migrated)

    def test_a_job_triggered_between_the_two_reads_is_named(self) -> None:
        """A new job exists by the read after the delete: the refusal names it (its run may have
        counted one of the batch's logs as its own before the delete; verify reports it)."""
        world = World()
        ran(world)
        set_status(world.jobs, world.company, ROLLED_BACK)

        class TriggerOnDelete:
            """The batch's delete, with a new job triggered while it ran."""

            def delete_migrated_ids(self, company: str, external_ids: Collection[str]) -> int:
                deleted = world.logs.delete_migrated_ids(company, external_ids)
                world.clock.advance(1)
                world.trigger()
                return deleted

        with pytest.raises(JobNotRunnable, match="triggered meanwhile"):
            settle_after_write(world.company, world.jobs, ["crm:acme:audit:1"], TriggerOnDelete())

    def test_without_a_store_that_deletes_by_id_the_batch_is_refused_naming_rollback(self) -> None:
        """A service whose log store cannot delete chosen logs: JobAlreadyRunning naming rollback."""
        world = World()
        migrated = ran(world)
        set_status(world.jobs, world.company, ROLLED_BACK)
        with pytest.raises(JobAlreadyRunning, match="run rollback again"):
            settle_after_write(world.company, world.jobs, ["crm:acme:audit:1"], None)
        assert world.logs.count_migrated(world.company) == migrated

    def test_a_newer_job_is_left_alone(self) -> None:
        """A new job was triggered after the rollback: its logs are its own, nothing is deleted."""
        world = World()
        migrated = ran(world)
        set_status(world.jobs, world.company, ROLLED_BACK)
        world.clock.advance(1)
        world.trigger()
        job = world.jobs.latest(world.company)
        assert job is not None
        assert job.status == IN_PROGRESS
        settle_after_write(world.company, world.jobs, ["crm:acme:audit:1"], world.logs)
        assert world.logs.count_migrated(world.company) == migrated
