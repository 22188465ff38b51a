"""Repair writes the job whole only over the status it read: a rollback meanwhile is never undone."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import attrs
import pytest

from crm_audit_transform.domain import ActivityLog, EncodedLog, Migrated, WriteResult
from crm_audit_transform.errors import JobNotFound, JobNotRunnable
from crm_audit_transform.jobs import (
    CANCELLED,
    COMPLETED,
    IN_PROGRESS,
    ROLLED_BACK,
    ROLLING_BACK,
    MigrationJob,
)
from crm_audit_transform.tally import Tally
from crm_audit_transform.testing import InMemoryActivityLogStore, InMemoryJobStore
from crm_audit_transform.usecases import RunSettings, VerifySettings
from crm_audit_transform.usecases._verify_leases import hold_every_lease, release_every_lease
from crm_audit_transform.usecases._verify_repair import Repair
from support.corpus_account import World

LEASE = dt.timedelta(seconds=60)


def completed_world() -> tuple[World, MigrationJob]:
    world = World()
    world.trigger()
    job = world.run(settings=RunSettings(halt_threshold=1.0)).job
    assert job.status == COMPLETED
    return world, job


class TestRepairWritesOverTheStatusItRead:
    def test_a_release_from_a_stale_copy_does_not_undo_a_finished_rollback(self) -> None:
        """Repair read the job while a rollback was deleting (rolling_back); the rollback then finished:
        handing the lease back from that copy would put the job back to rolling_back and lose
        logs_deleted, leaving the account held. It writes nothing instead."""
        world, job = completed_world()
        held = world.jobs.acquire_lease(job.job_id, "verify", LEASE)
        stale = attrs.evolve(held, status=ROLLING_BACK)
        world.jobs.save(attrs.evolve(held, status=ROLLED_BACK, logs_deleted=5, lease_owner=None))
        with pytest.raises(JobNotFound):
            release_every_lease(world.jobs, stale, "verify")
        stored = world.jobs.latest(world.company)
        assert stored is not None
        assert (stored.status, stored.logs_deleted) == (ROLLED_BACK, 5)

    def test_repairs_count_is_not_saved_over_a_rollback_that_came_after_its_hold(self) -> None:
        """The rollback moved the job to rolling_back right after repair re-took its leases: repair's
        completed copy with its counts is not written over it (JobNotFound), the hold stays."""
        world, job = completed_world()

        class RolledBackAfterTheHold(InMemoryJobStore):
            def acquire_lease(self, job_id: str, owner: str, ttl: Any) -> MigrationJob:
                held = super().acquire_lease(job_id, owner, ttl)
                super().save(attrs.evolve(held, status=ROLLING_BACK))
                return held

        jobs = RolledBackAfterTheHold(world.jobs.jobs, clock=world.clock)
        ports = world.verify_ports(jobs)
        repair = Repair(ports, VerifySettings(repair=True), "verify")
        with pytest.raises(JobNotFound):
            repair.finish(job, Tally(processed=job.tally.processed + 3, migrated=job.tally.migrated + 3))
        stored = jobs.latest(world.company)
        assert stored is not None
        assert stored.status == ROLLING_BACK
        assert stored.tally == job.tally

    def test_repairs_count_is_not_saved_over_a_cancel_that_came_after_its_hold(self) -> None:
        """An in-progress job cancelled right after repair re-took its leases: repair's in-progress
        copy is a compare-and-set too (status and lease), so the cancel is not undone (JobNotFound)."""
        world = World()
        job = world.trigger()

        class CancelledAfterTheHold(InMemoryJobStore):
            def acquire_lease(self, job_id: str, owner: str, ttl: Any) -> MigrationJob:
                held = super().acquire_lease(job_id, owner, ttl)
                super().transition(attrs.evolve(held, status=CANCELLED), {IN_PROGRESS})
                return held

        jobs = CancelledAfterTheHold(world.jobs.jobs, clock=world.clock)
        ports = world.verify_ports(jobs)
        repair = Repair(ports, VerifySettings(repair=True), "verify")
        with pytest.raises(JobNotRunnable, match="cancelled, rolled back or taken over meanwhile"):
            repair.finish(job, Tally(processed=3, migrated=3))
        stored = jobs.latest(world.company)
        assert stored is not None
        assert (stored.status, stored.tally) == (CANCELLED, job.tally)


class TestHoldEveryLease:
    def test_a_job_cancelled_between_two_shard_leases_gets_the_first_back(self) -> None:
        """Repair takes every shard's lease, then the job's. The job cancelled after shard 0's lease
        was taken: shard 1's acquisition is JobNotRunnable, and shard 0's lease goes back (a
        repair that gave up would otherwise hold it until it expired, refusing the rollback)."""
        world = World()
        job = world.trigger(shards=2)
        assert len(job.shards) == 2

        class CancelledAfterTheFirstShard(InMemoryJobStore):
            def acquire_shard_lease(self, job_id: str, shard: int, owner: str, ttl: Any) -> MigrationJob:
                held = super().acquire_shard_lease(job_id, shard, owner, ttl)
                if shard == 0:
                    super().transition(attrs.evolve(held, status=CANCELLED), {IN_PROGRESS})
                return held

        jobs = CancelledAfterTheFirstShard(world.jobs.jobs, clock=world.clock)
        with pytest.raises(JobNotRunnable):
            hold_every_lease(jobs, job, "verify", LEASE)
        stored = jobs.latest(world.company)
        assert stored is not None
        assert stored.status == CANCELLED
        assert [(s.lease_owner, s.lease_expires_at) for s in stored.shards] == [(None, None), (None, None)]


class TestRepairWritesTheRunsLog:
    def test_a_repaired_association_log_is_named_as_the_run_names_it(self) -> None:
        """The run gives an association log its ``linked_entity_name`` before the write: repair, which
        writes "the run's log", does too, so the repaired account and job equal the clean run's
        (verify does not compare enrichment keys: a log written without its name stayed unnamed and
        unseen). The job's counts, enrichment included, count the restored log once, as before."""
        world = World(enrich=True)
        world.trigger()
        clean = world.run(settings=RunSettings(halt_threshold=1.0)).job
        named = [log for log in world.logs.logs if "linked_entity_name" in log.metadata]
        assert named, "the corpus account has association logs the run names"
        gone = named[0]
        # The in-memory CDP: its document and its log go, as a deleted document.
        assert world.logs.delete_migrated_ids(world.company, [gone.external_id]) == 1

        report = world.service().verify(world.company, repair=True)

        assert report.repaired == 1
        back = next(log for log in world.logs.logs if log.external_id == gone.external_id)
        assert back == gone
        stored = world.jobs.latest(world.company)
        assert stored is not None
        assert (stored.tally, stored.enrichment) == (clean.tally, clean.enrichment)


class TestRepairStalledBetweenBatches:
    def test_a_page_stalled_past_its_lease_writes_no_batch_after_a_rollback(self) -> None:
        """A page's missing logs go out in batches of 20. The repair froze after its first batch
        (``kill -STOP``, a partition) past its lease; a rollback took the job over and ended it.
        Before, the rest of the page went out once it woke, logs behind a rolled-back job; now the
        lease is renewed again before the next batch and the repair stops there (JobNotRunnable)."""
        world, job = completed_world()
        missing = [
            Migrated(int(log.external_id.rsplit(":", 1)[1]), log)
            for log in world.logs.logs
            if log.external_id is not None
        ][:60]
        settings = VerifySettings(repair=True, lease_seconds=60)

        class FrozenAfterTheFirstBatch(InMemoryActivityLogStore):
            def insert_batch(self, logs: Sequence[ActivityLog | EncodedLog]) -> Sequence[WriteResult]:
                results = super().insert_batch(logs)
                if len(self.logs) == len(logs):  # the first batch: freeze past the lease, then a rollback
                    world.clock.advance(settings.lease_ttl * 2)
                    stored = world.jobs.latest(world.company)
                    assert stored is not None
                    ended = attrs.evolve(stored, status=ROLLED_BACK, lease_owner=None, lease_expires_at=None)
                    world.jobs.save(ended)
                return results

        timeline = FrozenAfterTheFirstBatch()
        ports = world.verify_ports(logs=timeline)
        repair = Repair(ports, settings, "verify")
        with pytest.raises(JobNotRunnable):
            repair.write(missing, job)
        assert len(timeline.logs) == 20

    def test_a_page_written_within_half_its_lease_renews_it_once(self) -> None:
        """No stall: the page's batches go out under the one renewal before them (no round trip per
        batch), and all of them are written."""
        world, job = completed_world()
        missing = [
            Migrated(int(log.external_id.rsplit(":", 1)[1]), log)
            for log in world.logs.logs
            if log.external_id is not None
        ][:60]
        renewals: list[str] = []

        class CountingLeases(InMemoryJobStore):
            def acquire_lease(self, job_id: str, owner: str, ttl: Any) -> MigrationJob:
                renewals.append(owner)
                return super().acquire_lease(job_id, owner, ttl)

        jobs = CountingLeases(world.jobs.jobs, clock=world.clock)
        timeline = InMemoryActivityLogStore()
        ports = world.verify_ports(jobs, logs=timeline)
        repair = Repair(ports, VerifySettings(repair=True), "verify")
        repair.write(missing, job)
        assert len(timeline.logs) == 60
        assert renewals == ["verify", "verify"]  # before the page and after it


class TestRepairRenewalAnsweredLate:
    def test_a_renewal_answered_past_its_lease_is_renewed_again_before_the_first_batch(self) -> None:
        """The renewal before a page is applied and its answer comes back more than the lease later
        (a slow network); meanwhile a rollback took the job over and ended it. The half lease counts
        from the renewal's sending, so the repair renews again before its first batch and stops
        there (JobNotRunnable), nothing written. Before, it counted from the answer: the page's 3
        batches went out on the expired lease, 60 logs behind the rolled-back job."""
        world, job = completed_world()
        missing = [
            Migrated(int(log.external_id.rsplit(":", 1)[1]), log)
            for log in world.logs.logs
            if log.external_id is not None
        ][:60]
        settings = VerifySettings(repair=True, lease_seconds=60)
        late: list[str] = []

        class LateAnswer(InMemoryJobStore):
            def acquire_lease(self, job_id: str, owner: str, ttl: Any) -> MigrationJob:
                held = super().acquire_lease(job_id, owner, ttl)
                if not late:  # applied; its answer is on its way while the lease expires
                    late.append(owner)
                    world.clock.advance(settings.lease_ttl * 2)
                    stored = self.latest(world.company)
                    assert stored is not None
                    self.save(
                        attrs.evolve(stored, status=ROLLED_BACK, lease_owner=None, lease_expires_at=None)
                    )
                return held

        jobs = LateAnswer(world.jobs.jobs, clock=world.clock)
        timeline = InMemoryActivityLogStore()
        repair = Repair(world.verify_ports(jobs, logs=timeline), settings, "verify")
        with pytest.raises(JobNotRunnable):
            repair.write(missing, job)
        assert (late, timeline.logs) == (["verify"], ())


class TestRepairAfterALongGrowth:
    def test_a_growth_past_half_the_lease_brings_the_next_renewal_before_the_first_batch(self) -> None:
        """The mark's growth over rows appended since took more than half the lease (a large append,
        a pause): the renewal before the page then counts from the renewal before the growth, so
        the lease is renewed again before the first batch, not half a lease after the growth."""
        world, job = completed_world()
        job = attrs.evolve(job, source_mark="mark-1")
        world.jobs.save(job)
        missing = [
            Migrated(int(log.external_id.rsplit(":", 1)[1]), log)
            for log in world.logs.logs
            if log.external_id is not None
        ][:60]
        settings = VerifySettings(repair=True, lease_seconds=60)
        events: list[str] = []

        class SlowGrowth:
            """The world's source, whose mark grows over rows appended since: slowly."""

            def __getattr__(self, name: str) -> Any:
                return getattr(world.source, name)

            def source_mark(self) -> str | None:
                return "mark-1"

            def mark_changed(self, mark: str) -> str | None:
                return None

            def grown_mark(self, mark: str) -> str | None:
                world.clock.advance(settings.lease_ttl * 0.75)
                events.append("grown")
                return "mark-2"

            def mark_covers(self, mark: str, grown: str) -> bool:
                return mark == grown

        source = SlowGrowth()

        class Recording(InMemoryJobStore):
            def acquire_lease(self, job_id: str, owner: str, ttl: Any) -> MigrationJob:
                events.append("renewed")
                return super().acquire_lease(job_id, owner, ttl)

        class RecordingLogs(InMemoryActivityLogStore):
            def insert_batch(self, logs: Sequence[ActivityLog | EncodedLog]) -> Sequence[WriteResult]:
                events.append("batch")
                return super().insert_batch(logs)

        jobs = Recording(world.jobs.jobs, clock=world.clock)
        timeline = RecordingLogs()
        ports = world.verify_ports(jobs, logs=timeline, source=source)  # type: ignore[arg-type]
        stored = Repair(ports, settings, "verify").write(missing, job)
        assert stored.source_mark == "mark-2"
        assert events[:4] == ["renewed", "grown", "renewed", "batch"]
        assert len(timeline.logs) == 60
