"""Status (not_started, progress, counts per reason, accuracy) and rollback (scoped, idempotent)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import attrs
import pytest

from crm_audit_transform.domain import ActivityLog, Actor
from crm_audit_transform.errors import JobAlreadyRunning, JobNotFound, JobNotRunnable, LeaseHeld
from crm_audit_transform.jobs import (
    CANCELLED,
    COMPLETED,
    HALTED,
    IN_PROGRESS,
    ROLLED_BACK,
    ROLLING_BACK,
    JobShard,
    MigrationJob,
)
from crm_audit_transform.tally import Tally
from crm_audit_transform.testing import FixedClock, InMemoryJobStore
from crm_audit_transform.usecases import RunSettings
from crm_audit_transform.usecases.cancel import cancel
from crm_audit_transform.usecases.rollback import RollbackPorts, rollback
from crm_audit_transform.usecases.status import migration_status, report_counts
from support.corpus_account import World


def native_log(company: str, n: int) -> ActivityLog:
    return ActivityLog(
        company_sso_id=company,
        customer_id=f"contact-{n}",
        category="contact",
        action="update",
        actor=Actor("user", "Ana", "sso-1"),
        changes=(),
        timestamp=dt.datetime(2026, 3, 1, tzinfo=dt.UTC),
        source_tag="live_feed",
    )


def migrated_log(company: str, n: int) -> ActivityLog:
    return attrs.evolve(native_log(company, n), external_id=f"crm:acme:audit:{n}", source_tag="crm_migration")


class TestStatus:
    def test_no_job_reports_not_started_and_nothing_else(self) -> None:
        """An account never triggered answers only ``not_started``."""
        world = World()
        status = migration_status(world.company, world.jobs)
        assert status.as_dict() == {"company_sso_id": world.company, "status": "not_started"}

    def test_reports_progress_counts_per_reason_and_rates(self) -> None:
        """Status carries progress, per-reason counts, failure rate, cursor and S2S accuracy."""
        world = World()
        job = world.trigger()
        tally = Tally(100, 80, {"contact_not_found": 15}, {"malformed_audited_changes": 5})
        world.jobs.save(attrs.evolve(job, last_audit_id=380, tally=tally))
        doc = migration_status(world.company, world.jobs).as_dict()
        assert doc["status"] == IN_PROGRESS
        assert doc["progress_pct"] == round(100 * 380 / 759, 2)
        assert (doc["records_processed"], doc["records_migrated"]) == (100, 80)
        assert (doc["records_skipped"], doc["records_failed"]) == (15, 5)
        assert doc["skipped"] == {"contact_not_found": 15}
        assert doc["failed"] == {"malformed_audited_changes": 5}
        assert doc["failure_rate"] == 0.05
        assert doc["accuracy_pct"] == 95.0
        assert doc["last_audit_id"] == 380

    def test_completed_job_is_at_one_hundred_percent(self) -> None:
        """A completed job shows 100% whatever its cursor."""
        world = World()
        job = world.trigger()
        world.jobs.save(attrs.evolve(job, status=COMPLETED))
        assert migration_status(world.company, world.jobs).progress_pct == 100.0

    def test_report_counts_have_the_dry_run_shape(self) -> None:
        """The dry-run report is processed, migrated, skipped and failed per reason, and degraded actors."""
        report = report_counts(Tally(3, 1, {"contact_not_found": 1}, {"write_error": 1}, actors_degraded=1))
        assert report == {
            "processed": 3,
            "migrated": 1,
            "skipped": {"contact_not_found": 1},
            "failed": {"write_error": 1},
            "actors_degraded": 1,
        }


class TestShardedStatus:
    def test_each_shard_shows_its_range_cursor_and_lease(self) -> None:
        """A sharded job's status lists every shard with its cursor and the lease its runner holds."""
        world = World()
        world.service().trigger(world.company, shards=2)
        job = world.jobs.latest(world.company)
        assert job is not None
        held = attrs.evolve(job.shards[1], lease_owner="host-b:7", lease_expires_at=world.clock.now())
        world.jobs.save(attrs.evolve(job, shards=(job.shards[0], held)))
        doc = migration_status(world.company, world.jobs).as_dict()
        assert [s["shard"] for s in doc["shards"]] == [0, 1]
        assert doc["shards"][0]["after_id"] == job.shards[0].after_id
        assert doc["shards"][1]["until_id"] is None
        assert (doc["shards"][0]["lease_owner"], doc["shards"][1]["lease_owner"]) == (None, "host-b:7")
        assert doc["shards"][1]["lease_expires_at"] is not None

    def test_an_unsharded_job_has_an_empty_shard_list(self) -> None:
        """Unsharded jobs keep one shape: ``shards`` is present and empty."""
        world = World()
        world.trigger()
        assert migration_status(world.company, world.jobs).as_dict()["shards"] == []


class TestRollback:
    def setup_world(self) -> World:
        world = World()
        for n in range(3):
            world.logs.add_native(native_log(world.company, n))
            world.logs.add_native(native_log("other-company", n))
        world.logs.insert_batch([migrated_log(world.company, n) for n in range(5)])
        world.logs.insert_batch([migrated_log("other-company", n) for n in range(4)])
        return world

    def test_deletes_only_this_accounts_migrated_logs(self) -> None:
        """Native logs and other accounts' migrated logs survive the rollback."""
        world = self.setup_world()
        before = world.logs.logs
        result = rollback(world.company, RollbackPorts(world.jobs, world.logs, world.clock))
        assert result.deleted == 5
        assert world.logs.logs == tuple(
            x for x in before if not (x.company_sso_id == world.company and x.source_tag == "crm_migration")
        )
        assert sum(1 for x in world.logs.logs if x.source_tag == "live_feed") == 6

    def test_is_idempotent(self) -> None:
        """A second rollback deletes nothing and changes nothing."""
        world = self.setup_world()
        rollback(world.company, RollbackPorts(world.jobs, world.logs, world.clock))
        after = world.logs.logs
        assert rollback(world.company, RollbackPorts(world.jobs, world.logs, world.clock)).deleted == 0
        assert world.logs.logs == after

    def test_is_refused_while_a_job_is_in_progress(self) -> None:
        """A running job would write behind the rollback, so it is refused with 409."""
        world = self.setup_world()
        world.trigger()
        with pytest.raises(JobAlreadyRunning):
            rollback(world.company, RollbackPorts(world.jobs, world.logs, world.clock))
        assert world.logs.count_migrated(world.company) == 5

    def test_marks_the_job_rolled_back_so_it_can_be_triggered_again(self) -> None:
        """After a rollback of a completed job the account may be migrated afresh."""
        world = self.setup_world()
        job = world.trigger()
        world.jobs.save(attrs.evolve(job, status=COMPLETED))
        result = rollback(world.company, RollbackPorts(world.jobs, world.logs, world.clock))
        assert result.job_id == job.job_id
        assert migration_status(world.company, world.jobs).status == ROLLED_BACK
        world.clock.advance(1)
        assert world.trigger().status == IN_PROGRESS

    def test_status_shows_how_many_logs_the_rollback_deleted(self) -> None:
        """A rolled-back job's status carries logs_deleted, kept by a second rollback that finds nothing."""
        world = self.setup_world()
        job = world.trigger()
        world.jobs.save(attrs.evolve(job, status=COMPLETED))
        assert migration_status(world.company, world.jobs).as_dict()["logs_deleted"] is None
        rollback(world.company, RollbackPorts(world.jobs, world.logs, world.clock))
        assert migration_status(world.company, world.jobs).as_dict()["logs_deleted"] == 5
        assert rollback(world.company, RollbackPorts(world.jobs, world.logs, world.clock)).deleted == 0
        assert migration_status(world.company, world.jobs).logs_deleted == 5


class TestRollbackFence:
    def test_a_job_triggered_before_the_hold_makes_the_rollback_refuse(self) -> None:
        """A newer job seen after the hold: the rollback gives the status back and deletes nothing."""
        world = TestRollback().setup_world()
        old = world.trigger()
        world.jobs.save(attrs.evolve(old, status=HALTED))

        class RacedJobs(InMemoryJobStore):
            """A new job is created between the rollback's hold and its re-read."""

            def transition(self, job: MigrationJob, expected: Any, **fence: Any) -> MigrationJob | None:
                stored = super().transition(job, expected, **fence)
                if job.status == ROLLING_BACK and self.latest(job.company_sso_id) == stored:
                    world.clock.advance(1)
                    self.create(
                        attrs.evolve(old, job_id="newer", status=IN_PROGRESS, created_at=world.clock.now())
                    )
                return stored

        world.jobs = RacedJobs(world.jobs.jobs, clock=world.clock)
        with pytest.raises(JobAlreadyRunning, match="newer"):
            rollback(world.company, RollbackPorts(world.jobs, world.logs, world.clock))
        assert world.logs.count_migrated(world.company) == 5
        assert {j.job_id: j.status for j in world.jobs.jobs} == {old.job_id: HALTED, "newer": IN_PROGRESS}

    def test_while_a_rollback_holds_the_account_trigger_and_run_are_refused(self) -> None:
        """A job left rolling_back (a rollback that died) refuses trigger and run until rollback finishes."""
        world = TestRollback().setup_world()
        old = world.trigger()
        world.jobs.save(attrs.evolve(old, status=ROLLING_BACK))
        with pytest.raises(JobAlreadyRunning, match="rolled back"):
            world.trigger()
        world.clock.advance(1)
        # A job created behind the trigger's back (another process) still cannot run.
        world.jobs.create(attrs.evolve(old, job_id="newer", status=IN_PROGRESS, created_at=world.clock.now()))
        with pytest.raises(JobAlreadyRunning, match="being rolled back"):
            world.run()
        assert world.logs.count_migrated(world.company) == 5

    def test_rollback_again_finishes_a_rollback_that_died(self) -> None:
        """Re-running rollback on a rolling_back job deletes the rest and marks it rolled back."""
        world = TestRollback().setup_world()
        old = world.trigger()
        world.jobs.save(attrs.evolve(old, status=ROLLING_BACK))
        assert rollback(world.company, RollbackPorts(world.jobs, world.logs, world.clock)).deleted == 5
        assert migration_status(world.company, world.jobs).status == ROLLED_BACK


class TestRollbackAfterCancel:
    def test_a_cancelled_runner_hands_its_lease_back_so_the_rollback_need_not_wait(self) -> None:
        """Cancel, then rollback while the runner still holds its lease (its batch in flight lands
        after the cancel): refused; the runner hands the lease back when it sees the cancel, so a
        rollback right after the run deletes every log, that batch's too — no wait for the expiry."""
        world = World()
        world.trigger()
        refused: list[str] = []

        def cancel_then_roll_back(job: MigrationJob) -> None:
            if refused:
                return
            cancel(world.company, jobs=world.jobs, clock=world.clock)
            with pytest.raises(LeaseHeld) as raised:
                rollback(world.company, RollbackPorts(world.jobs, world.logs, world.clock))
            refused.append(str(raised.value))

        result = world.run(on_progress=cancel_then_roll_back)
        assert result.job.status == CANCELLED
        assert "held by runner-1 until" in refused[0]
        assert (result.job.lease_owner, result.job.lease_expires_at) == (None, None)
        written = world.logs.count_migrated(world.company)
        assert written > 0  # the batch in flight when the cancel came was written after it
        assert rollback(world.company, RollbackPorts(world.jobs, world.logs, world.clock)).deleted == written
        assert world.logs.count_migrated(world.company) == 0

    def test_a_runner_ended_under_it_hands_its_lease_back_without_undoing_the_rollback(self) -> None:
        """A runner paused past its lease: cancelled, then held by a rollback. Its next write is
        JOB_NOT_RUNNABLE; its hand-back must not save its stale read (rolling_back) over the
        rollback that finished meanwhile, which would leave the account held."""
        world = TestRollback().setup_world()
        world.trigger()

        class RollbackFinishesAfterRead(InMemoryJobStore):
            finishing = False

            def latest(self, company_sso_id: str) -> MigrationJob | None:
                read = super().latest(company_sso_id)
                if self.finishing and read is not None and read.status == ROLLING_BACK:
                    self.finishing = False
                    done = attrs.evolve(read, status=ROLLED_BACK, logs_deleted=5)
                    super().transition(done, {ROLLING_BACK})
                return read

        jobs = RollbackFinishesAfterRead(world.jobs.jobs, clock=world.clock)
        world.jobs = jobs

        def paused(job: MigrationJob) -> None:
            if job.status != IN_PROGRESS or jobs.rollback_under_way(world.company) is not None:
                return
            cancel(world.company, jobs=jobs, clock=world.clock)
            world.clock.advance(RunSettings().lease_ttl + dt.timedelta(seconds=1))
            stored = jobs.latest(world.company)
            assert stored is not None
            assert jobs.transition(attrs.evolve(stored, status=ROLLING_BACK), {CANCELLED})
            jobs.finishing = True

        with pytest.raises(JobNotRunnable):
            world.run(on_progress=paused)
        stored = jobs.latest(world.company)
        assert stored is not None
        assert (stored.status, stored.logs_deleted, stored.lease_owner) == (ROLLED_BACK, 5, None)

    def test_a_runner_stalled_past_its_lease_inserts_nothing_after_the_rollback(self) -> None:
        """The runner is stuck in a page's lookups (a slow USMAN) past its lease; meanwhile the job is
        cancelled and, the lease having expired, rolled back. Back from the lookups it renews the lease
        before inserting — finds the job rolled back (JOB_NOT_RUNNABLE) — and inserts no batch, so the
        rollback stays whole; its lease is handed back."""
        world = World()
        world.trigger()
        inner = world.contacts
        stalled: list[int] = []

        class SlowContacts:
            def __getattr__(self, name: str) -> Any:
                return getattr(inner, name)

            def contacts_by_crm_ids(self, *args: Any, **kwargs: Any) -> Any:
                if not stalled:
                    stalled.append(1)
                    cancel(world.company, jobs=world.jobs, clock=world.clock)
                    world.clock.advance(RunSettings().lease_ttl + dt.timedelta(seconds=1))
                    rollback(world.company, RollbackPorts(world.jobs, world.logs, world.clock))
                return inner.contacts_by_crm_ids(*args, **kwargs)

        world.contacts = SlowContacts()  # type: ignore[assignment]
        with pytest.raises(JobNotRunnable, match="rolled_back"):
            world.run()
        assert stalled == [1]
        assert world.logs.count_migrated(world.company) == 0
        stored = world.jobs.latest(world.company)
        assert stored is not None
        assert (stored.status, stored.lease_owner) == (ROLLED_BACK, None)

    def test_a_renewal_answered_late_is_renewed_again_before_the_next_insert(self) -> None:
        """A batch's progress write is applied, and its answer comes back more than the lease
        later (a slow network); meanwhile the job is cancelled and, the lease expired, rolled back.
        The half lease counts from that write's sending, so the runner renews before its next
        insert, finds the job rolled back (JOB_NOT_RUNNABLE) and inserts nothing after the
        rollback. Before, it counted from the answer: the next batch went out on the expired lease
        and its 20 logs stayed behind the rolled-back job."""
        world = World()
        world.trigger()
        late: list[int] = []

        class LateAnswer(InMemoryJobStore):
            def save_progress(self, job: MigrationJob, owner: str, ttl: dt.timedelta | None) -> MigrationJob:
                stored = super().save_progress(job, owner, ttl)
                if not late and stored.status == IN_PROGRESS and stored.tally.migrated > 0:
                    late.append(stored.tally.migrated)  # applied; its answer is on its way
                    cancel(world.company, jobs=self, clock=world.clock)
                    world.clock.advance(RunSettings().lease_ttl + dt.timedelta(seconds=1))
                    rollback(world.company, RollbackPorts(self, world.logs, world.clock))
                return stored

        world.jobs = LateAnswer(world.jobs.jobs, clock=world.clock)
        with pytest.raises(JobNotRunnable, match="rolled_back"):
            world.run()
        assert late
        assert world.logs.count_migrated(world.company) == 0
        stored = world.jobs.latest(world.company)
        assert stored is not None
        assert (stored.status, stored.logs_deleted, stored.lease_owner) == (ROLLED_BACK, late[0], None)

    def test_the_lease_is_live_or_not_on_the_stores_clock_not_this_hosts(self) -> None:
        """A rollback on a host 90 s ahead of the database: a repair's lease with 60 s left on the
        database's clock has "expired" on the host's; it is still live, so the rollback refuses."""
        world = TestRollback().setup_world()
        job = world.trigger()
        world.jobs.save(attrs.evolve(job, status=COMPLETED))
        world.jobs.acquire_lease(job.job_id, "repair-1", dt.timedelta(seconds=60))
        host = FixedClock(world.clock.now() + dt.timedelta(seconds=90))
        with pytest.raises(LeaseHeld, match="repair-1"):
            rollback(world.company, RollbackPorts(world.jobs, world.logs, host))
        assert world.logs.count_migrated(world.company) == 5
        assert migration_status(world.company, world.jobs).status == COMPLETED

    def test_a_lease_taken_between_the_rollbacks_read_and_its_hold_refuses_it(self) -> None:
        """A repair (or a --resume) takes the lease just after the rollback read the job: the hold
        checks the lease in the same write as the status, so it refuses and deletes nothing."""
        world = TestRollback().setup_world()
        job = world.trigger()
        world.jobs.save(attrs.evolve(job, status=COMPLETED))

        class LeasedAfterRead(InMemoryJobStore):
            """``verify --repair`` takes the lease right after ``latest`` answered."""

            def latest(self, company_sso_id: str) -> MigrationJob | None:
                read = super().latest(company_sso_id)
                if read is not None and read.lease_owner is None and read.status == COMPLETED:
                    self.acquire_lease(read.job_id, "repair-1", dt.timedelta(seconds=60))
                return read

        world.jobs = LeasedAfterRead(world.jobs.jobs, clock=world.clock)
        with pytest.raises(LeaseHeld, match="repair-1"):
            rollback(world.company, RollbackPorts(world.jobs, world.logs, world.clock))
        assert world.logs.count_migrated(world.company) == 5
        assert migration_status(world.company, world.jobs).status == COMPLETED

    def test_a_live_lease_on_an_ended_job_refuses_and_deletes_nothing(self) -> None:
        """A completed job held by ``verify --repair`` (or a shard's runner) is not rolled back under it."""
        world = TestRollback().setup_world()
        job = world.trigger()
        world.jobs.save(attrs.evolve(job, status=COMPLETED))
        world.jobs.acquire_lease(job.job_id, "repair-1", dt.timedelta(seconds=60))
        with pytest.raises(LeaseHeld, match="repair-1"):
            rollback(world.company, RollbackPorts(world.jobs, world.logs, world.clock))
        assert world.logs.count_migrated(world.company) == 5
        assert migration_status(world.company, world.jobs).status == COMPLETED
        world.clock.advance(60)
        assert rollback(world.company, RollbackPorts(world.jobs, world.logs, world.clock)).deleted == 5

    def test_a_shards_live_lease_refuses_too(self) -> None:
        """A sharded job's lease is per shard: a live one on any shard refuses the rollback."""
        world = TestRollback().setup_world()
        job = world.trigger()
        until = world.clock.now() + dt.timedelta(seconds=30)
        shard = JobShard(0, 0, None, 0, lease_owner="shard-runner", lease_expires_at=until)
        world.jobs.save(attrs.evolve(job, status=CANCELLED, shards=(shard,)))
        with pytest.raises(LeaseHeld, match="shard-runner"):
            rollback(world.company, RollbackPorts(world.jobs, world.logs, world.clock))
        assert world.logs.count_migrated(world.company) == 5


class TestCancel:
    def test_an_in_progress_job_becomes_cancelled_with_its_cursor(self) -> None:
        """cancel keeps the cursor and the lease fields, so status still names the runner."""
        world = World()
        world.trigger()
        stopped = world.run(should_stop=lambda: True).job
        world.jobs.acquire_lease(stopped.job_id, "runner-9", dt.timedelta(seconds=60))
        cancelled = cancel(world.company, jobs=world.jobs, clock=world.clock)
        assert (cancelled.status, cancelled.last_audit_id) == (CANCELLED, stopped.last_audit_id)
        status = migration_status(world.company, world.jobs).as_dict()
        assert (status["status"], status["lease_owner"]) == (CANCELLED, "runner-9")
        assert status["lease_expires_at"] is not None

    def test_a_live_runner_stops_at_its_next_batch(self) -> None:
        """Cancelled mid-run: the runner's next progress write finds the job cancelled and stops."""
        world = World()
        world.trigger()
        cancelled_at: list[int] = []

        def cancel_once(job: MigrationJob) -> None:
            if not cancelled_at:
                cancelled_at.append(cancel(world.company, jobs=world.jobs, clock=world.clock).last_audit_id)

        result = world.run(on_progress=cancel_once)
        assert result.job.status == CANCELLED
        assert result.steps == 2  # the batch in flight when cancel came, then stop
        stored = world.jobs.latest(world.company)
        assert stored is not None
        assert (stored.status, stored.last_audit_id) == (CANCELLED, cancelled_at[0])

    def test_nothing_in_progress_is_job_not_found(self) -> None:
        """Cancelling an account with no running job refuses JOB_NOT_FOUND."""
        with pytest.raises(JobNotFound):
            cancel(World().company, jobs=World().jobs, clock=World().clock)
