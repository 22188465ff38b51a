"""``/migrate`` against a rollback (``usecases.migrate_hold``): refused before, cleaned up after."""

from __future__ import annotations

import attrs
import pytest

from crm_audit_transform.errors import JobAlreadyRunning, JobNotRunnable
from crm_audit_transform.jobs import COMPLETED, IN_PROGRESS, ROLLED_BACK, ROLLING_BACK
from crm_audit_transform.ports import JobStore
from crm_audit_transform.usecases.migrate_hold import (
    ROLLBACK_POLL_SECONDS,
    refuse_rolled_back,
    settle_after_write,
)
from crm_audit_transform.usecases.rollback import RollbackPorts
from support.corpus_account import World


def ran(world: World) -> int:
    """The world's account triggered and run to its end: how many logs it migrated."""
    world.trigger()
    return world.run().job.tally.migrated


def set_status(jobs: JobStore, company: str, status: str) -> None:
    job = jobs.latest(company)
    assert job is not None
    jobs.save(attrs.evolve(job, status=status))


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


class TestAfterTheWrite:
    def test_a_job_neither_rolling_back_nor_rolled_back_leaves_the_batch_alone(self) -> None:
        """The batch went in before any hold: nothing deleted, nothing raised, no wait."""
        world = World()
        migrated = ran(world)
        ports = RollbackPorts(world.jobs, world.logs, world.clock)

        def no_sleep(_: float) -> None:
            raise AssertionError("waited")

        settle_after_write(world.company, world.jobs, ports, sleep=no_sleep)
        assert world.logs.count_migrated(world.company) == migrated

    def test_a_batch_written_during_a_rollback_waits_for_it_then_rolls_the_account_back(self) -> None:
        """The job is rolling_back after the write: the batch waits for that rollback to finish, then
        rolls the account back once more (its logs may have landed after the delete) and is refused;
        the job counts both deletes."""
        world = World()
        migrated = ran(world)
        set_status(world.jobs, world.company, ROLLING_BACK)
        deleted_first = world.logs.delete_migrated(world.company)
        waits: list[float] = []

        def sleep(seconds: float) -> None:
            waits.append(seconds)
            if len(waits) == 2:  # the first rollback finishes meanwhile
                job = world.jobs.latest(world.company)
                assert job is not None
                world.jobs.save(attrs.evolve(job, status=ROLLED_BACK, logs_deleted=deleted_first))

        source = World()
        ran(source)
        world.logs.insert_batch(source.logs.logs[:3])  # the batch, landed after the delete
        ports = RollbackPorts(world.jobs, world.logs, world.clock)
        with pytest.raises(JobNotRunnable, match="deleted with the rest"):
            settle_after_write(world.company, world.jobs, ports, sleep=sleep)
        assert waits == [ROLLBACK_POLL_SECONDS] * 2
        assert world.logs.count_migrated(world.company) == 0
        job = world.jobs.latest(world.company)
        assert job is not None
        assert (deleted_first, job.status, job.logs_deleted) == (migrated, ROLLED_BACK, migrated + 3)

    def test_a_rollback_still_under_way_after_the_wait_is_named_not_waited_for_ever(self) -> None:
        """The rollback does not finish within the wait (it died): JobAlreadyRunning naming rollback
        as the remedy; nothing deleted by the batch."""
        world = World()
        migrated = ran(world)
        set_status(world.jobs, world.company, ROLLING_BACK)
        waits: list[float] = []
        ports = RollbackPorts(world.jobs, world.logs, world.clock)
        with pytest.raises(JobAlreadyRunning, match="run rollback again"):
            settle_after_write(world.company, world.jobs, ports, sleep=waits.append, wait_seconds=1.0)
        assert sum(waits) == 1.0
        assert world.logs.count_migrated(world.company) == migrated

    def test_without_a_rollback_port_the_batch_is_refused_naming_rollback(self) -> None:
        """A service with no MigratedLogs cannot delete: JobAlreadyRunning once the wait is over."""
        world = World()
        ran(world)
        set_status(world.jobs, world.company, ROLLED_BACK)
        with pytest.raises(JobAlreadyRunning, match="run rollback again"):
            settle_after_write(world.company, world.jobs, None, sleep=lambda _: None, wait_seconds=0.5)

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
        ports = RollbackPorts(world.jobs, world.logs, world.clock)
        settle_after_write(world.company, world.jobs, ports, sleep=lambda _: None)
        assert world.logs.count_migrated(world.company) == migrated
