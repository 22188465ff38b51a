"""Trigger guards, in order: flag, Phase-A coverage, running job, completed job."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import attrs
import mongomock
import pytest

from crm_audit_adapters.mongo.jobs import MongoJobStore
from crm_audit_transform.domain import ANY_TIME, Contact
from crm_audit_transform.errors import (
    AlreadyCompleted,
    ContactsNotMigrated,
    FlagDisabled,
    GuardError,
    JobAlreadyRunning,
    JobNotFound,
    LeaseHeld,
    ResumeOrFresh,
)
from crm_audit_transform.jobs import CANCELLED, COMPLETED, HALTED, IN_PROGRESS, ROLLED_BACK, MigrationJob
from crm_audit_transform.testing import (
    InMemoryAuditSource,
    InMemoryContactDirectory,
    InMemoryPeopleCounter,
)
from crm_audit_transform.usecases import FRESH, RESUME, RunSettings
from crm_audit_transform.usecases.cancel import cancel
from crm_audit_transform.usecases.guards import contact_coverage, new_job
from crm_audit_transform.usecases.rollback import RollbackPorts, rollback
from crm_audit_transform.usecases.verify import verify_account
from support.corpus_account import World


def finish(world: World, status: str) -> None:
    job = world.jobs.latest(world.company)
    assert job is not None
    world.jobs.save(attrs.evolve(job, status=status))
    world.clock.advance(1)


class TestTriggerGuards:
    def test_flag_off_is_refused_first_with_403(self) -> None:
        """A disabled account is refused FLAG_DISABLED (403) even when coverage is also too low."""
        world = World(enabled=False, coverage=0.5)
        with pytest.raises(FlagDisabled) as raised:
            world.trigger()
        assert (raised.value.code, raised.value.http_status) == ("FLAG_DISABLED", 403)
        assert world.jobs.jobs == ()

    def test_low_coverage_is_refused_with_422_and_writes_no_job(self) -> None:
        """Coverage under 99% is refused contacts_not_migrated (422) and leaves no job row."""
        world = World(coverage=0.98)
        with pytest.raises(ContactsNotMigrated) as raised:
            world.trigger()
        assert (raised.value.code, raised.value.http_status) == ("contacts_not_migrated", 422)
        assert world.jobs.jobs == ()

    @pytest.mark.parametrize(("synced", "accepted"), [(99, True), (98, False)])
    def test_coverage_exactly_at_the_threshold_is_accepted(self, synced: int, accepted: bool) -> None:
        """99 of 100 people synced passes the 99% gate; 98 of 100 does not."""
        world = World()
        world.contacts = InMemoryContactDirectory(
            Contact(f"c{pid}", world.company, pid, dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
            for pid in range(1, synced + 1)
        )
        world.people = InMemoryPeopleCounter({world.tenant: 100})
        if accepted:
            assert world.trigger().status == IN_PROGRESS
        else:
            with pytest.raises(ContactsNotMigrated):
                world.trigger()

    def test_contacts_of_people_gone_from_the_crm_do_not_cover_for_people_without_one(self) -> None:
        """90 of 100 people have a contact, 15 more contacts name people gone from the CRM: 90%, refused."""
        world = World()
        world.contacts = InMemoryContactDirectory(
            Contact(f"c{pid}", world.company, pid, dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
            for pid in [*range(1, 91), *range(1001, 1016)]
        )
        world.people = InMemoryPeopleCounter({world.tenant: 100})
        assert contact_coverage(world.company, world.tenant, world.contacts, world.people) == 0.9
        with pytest.raises(ContactsNotMigrated):
            world.trigger()

    def test_threshold_is_configurable(self) -> None:
        """A lower threshold lets a partly synced account start."""
        world = World(coverage=0.5)
        assert world.trigger(coverage_threshold=0.5).status == IN_PROGRESS

    def test_running_job_is_refused_with_409(self) -> None:
        """A second trigger while a job is in progress is JOB_ALREADY_RUNNING (409)."""
        world = World()
        first = world.trigger()
        world.clock.advance(1)
        with pytest.raises(JobAlreadyRunning) as raised:
            world.trigger()
        assert (raised.value.code, raised.value.http_status) == ("JOB_ALREADY_RUNNING", 409)
        assert world.jobs.jobs == (first,)

    def test_completed_job_is_refused_with_409(self) -> None:
        """Re-triggering a completed account is ALREADY_COMPLETED (409)."""
        world = World()
        world.trigger()
        finish(world, COMPLETED)
        with pytest.raises(AlreadyCompleted) as raised:
            world.trigger()
        assert (raised.value.code, raised.value.http_status) == ("ALREADY_COMPLETED", 409)

    def test_a_rolled_back_job_allows_a_new_one(self) -> None:
        """A rolled-back account starts afresh with a new job from the first row."""
        world = World()
        old = world.trigger()
        finish(world, ROLLED_BACK)
        new = world.trigger()
        assert new.job_id != old.job_id
        assert new.last_audit_id == new.first_audit_id - 1


class TestRetriggerAfterAStop:
    @pytest.mark.parametrize("status", [HALTED, CANCELLED])
    def test_without_a_choice_a_stopped_job_is_refused_resume_or_fresh(self, status: str) -> None:
        """After a halt or a cancel, a plain trigger is refused RESUME_OR_FRESH (409); nothing changes."""
        world = World()
        world.trigger()
        finish(world, status)
        before = world.jobs.jobs
        with pytest.raises(ResumeOrFresh) as raised:
            world.trigger()
        assert (raised.value.code, raised.value.http_status) == ("RESUME_OR_FRESH", 409)
        assert world.jobs.jobs == before

    def test_resume_keeps_the_job_its_cursor_and_its_logs(self) -> None:
        """--resume puts the same job back in progress at its cursor; the halt rule counts from there."""
        world = World(sso_failing=True)
        world.trigger()
        halted = world.run().job
        assert halted.status == HALTED
        written = world.logs.count_migrated(world.company)
        world.sso.failing = False
        resumed = world.trigger(restart=RESUME)
        assert (resumed.job_id, resumed.status, resumed.last_audit_id) == (
            halted.job_id,
            IN_PROGRESS,
            halted.last_audit_id,
        )
        assert (resumed.halt_basis, resumed.halted_reason) == (halted.tally, None)
        assert world.logs.count_migrated(world.company) == written
        done = world.run().job
        assert done.status == COMPLETED
        assert done.tally.processed == 759

    def test_resume_clears_a_task_not_re_sent_before_the_stop(self) -> None:
        """A job (and shard) stamped ``not_resent_at`` before it halted comes back in progress without
        it: it awaits a new run (`enqueue`, `run`), not the message that task handed back."""
        world = World(sso_failing=True)
        world.trigger()
        halted = world.run().job
        world.jobs.save(attrs.evolve(halted, not_resent_at=halted.updated_at))
        world.sso.failing = False
        assert world.trigger(restart=RESUME).not_resent_at is None

    @pytest.mark.parametrize("backend", ["in_memory", "mongomock"])
    def test_resume_is_refused_while_a_cancelled_runner_still_holds_its_lease(self, backend: str) -> None:
        """A runner cancelled mid-batch keeps its lease until its next progress write: --resume then is
        LEASE_HELD and leaves that lease as it is, so the rollback after a second cancel is still
        refused and the runner's batch cannot land behind a rolled-back job. Once the runner hands its
        lease back, the resume goes through. (It cleared the lease: the rollback deleted nothing and
        the runner's batch landed after it.)"""
        world = World()
        if backend == "mongomock":
            db = mongomock.MongoClient(tz_aware=True)["cdp"]
            world.jobs = MongoJobStore.in_database(db, clock=world.clock)  # type: ignore[assignment]
        job = world.trigger()
        running = world.jobs.acquire_lease(job.job_id, "runner-A", dt.timedelta(seconds=120))
        cancel(world.company, jobs=world.jobs, clock=world.clock)
        with pytest.raises(LeaseHeld, match="has not stopped yet") as raised:
            world.trigger(restart=RESUME)
        assert raised.value.code == "LEASE_HELD"
        stored = world.jobs.latest(world.company)
        assert stored is not None
        assert (stored.status, stored.lease_owner) == (CANCELLED, "runner-A")
        rollback_ports = RollbackPorts(world.jobs, world.logs, world.clock)
        with pytest.raises(LeaseHeld):
            rollback(world.company, rollback_ports)
        # The runner reaches its next progress write: it sees the cancel and hands its lease back.
        world.jobs.save_progress(running, "runner-A", dt.timedelta(seconds=120))
        resumed = world.trigger(restart=RESUME)
        assert (resumed.job_id, resumed.status, resumed.lease_owner) == (job.job_id, IN_PROGRESS, None)

    @pytest.mark.parametrize("backend", ["in_memory", "mongomock"])
    def test_resume_after_a_runner_died_waits_for_its_lease_to_expire(self, backend: str) -> None:
        """A runner killed after the cancel never hands its lease back: --resume is refused until the
        lease has expired on the store's clock, then clears it and resumes."""
        world = World()
        if backend == "mongomock":
            db = mongomock.MongoClient(tz_aware=True)["cdp"]
            world.jobs = MongoJobStore.in_database(db, clock=world.clock)  # type: ignore[assignment]
        job = world.trigger()
        world.jobs.acquire_lease(job.job_id, "runner-A", dt.timedelta(seconds=120))
        cancel(world.company, jobs=world.jobs, clock=world.clock)
        world.clock.advance(119)
        with pytest.raises(LeaseHeld):
            world.trigger(restart=RESUME)
        world.clock.advance(2)
        resumed = world.trigger(restart=RESUME)
        assert (resumed.status, resumed.lease_owner, resumed.lease_expires_at) == (IN_PROGRESS, None, None)

    @pytest.mark.parametrize("backend", ["in_memory", "mongomock"])
    def test_resume_counts_from_a_repair_saved_between_its_read_and_its_write(self, backend: str) -> None:
        """A repair (lease taken and handed back) saves its count after --resume read the halted job:
        the resume keeps that count and starts the halt rule's basis from it. (It wrote back the
        tally it read, undoing the repair's count, and took its basis from that read.)"""
        world = World(sso_failing=True)
        if backend == "mongomock":
            db = mongomock.MongoClient(tz_aware=True)["cdp"]
            world.jobs = MongoJobStore.in_database(db, clock=world.clock)  # type: ignore[assignment]
        world.trigger()
        halted = world.run().job
        assert halted.status == HALTED
        repaired = attrs.evolve(halted.tally, migrated=halted.tally.migrated + 1)
        jobs = world.jobs

        class RepairFirst:
            """The job store, with a repair's count saved between the resume's read and its write."""

            saved = False

            def __getattr__(self, name: str) -> Any:
                return getattr(jobs, name)

            def transition(self, job: MigrationJob, expected: Any, **mode: Any) -> MigrationJob | None:
                if mode.get("resumed") and not self.saved:
                    self.saved = True
                    held = jobs.acquire_lease(job.job_id, "repair-1", dt.timedelta(seconds=60))
                    done = attrs.evolve(held, tally=repaired, lease_owner=None, lease_expires_at=None)
                    assert jobs.transition(done, {HALTED}, leased_to="repair-1") is not None
                return jobs.transition(job, expected, **mode)

        world.jobs = RepairFirst()  # type: ignore[assignment]
        resumed = world.trigger(restart=RESUME)
        assert (resumed.status, resumed.tally, resumed.halt_basis) == (IN_PROGRESS, repaired, repaired)
        assert jobs.latest(world.company) == resumed

    def test_fresh_rolls_back_then_starts_a_new_job(self) -> None:
        """--fresh deletes the old job's logs, marks it rolled back and starts a new job from the start."""
        world = World(sso_failing=True)
        old = world.trigger()
        world.run()
        assert world.logs.count_migrated(world.company) > 0
        world.clock.advance(1)
        new = world.trigger(restart=FRESH)
        assert new.job_id != old.job_id
        assert world.logs.count_migrated(world.company) == 0
        assert [j.status for j in world.jobs.jobs] == [ROLLED_BACK, IN_PROGRESS]

    def test_fresh_also_re_migrates_a_completed_account(self) -> None:
        """A completed account re-triggered with --fresh is rolled back and migrated again."""
        world = World()
        world.trigger()
        world.run(settings=RunSettings(halt_threshold=1.0))
        world.clock.advance(1)
        new = world.trigger(restart=FRESH)
        assert new.status == IN_PROGRESS
        assert world.logs.count_migrated(world.company) == 0

    def test_resume_without_a_stopped_job_is_refused(self) -> None:
        """Nothing halted or cancelled: --resume has nothing to resume (JOB_NOT_FOUND)."""
        with pytest.raises(JobNotFound):
            World().trigger(restart=RESUME)

    def test_every_guard_error_is_a_guard_error(self) -> None:
        """Callers can catch the whole family at once."""
        for kind in (FlagDisabled, ContactsNotMigrated, JobAlreadyRunning, AlreadyCompleted):
            assert issubclass(kind, GuardError)

    def test_concurrent_create_loses_to_the_store_with_job_already_running(self) -> None:
        """A race past the read is still stopped by the one-in-progress rule of the store."""
        world = World()
        world.trigger()
        job = world.jobs.latest(world.company)
        assert job is not None
        with pytest.raises(JobAlreadyRunning):
            world.jobs.create(attrs.evolve(job, job_id="other"))


class TestNewJob:
    def test_cutoff_defaults_to_the_oldest_in_scope_audit(self) -> None:
        """Without a date range the job starts at the tenant's oldest in-scope row."""
        world = World()
        job = world.trigger()
        assert job.cutoff == dt.datetime(2019, 1, 4, 5, 44, 28, 125496, tzinfo=dt.UTC)
        assert (job.first_audit_id, job.max_audit_id, job.last_audit_id) == (1, 759, 0)
        assert job.progress_pct == 0.0

    def test_date_range_start_becomes_the_cutoff_and_narrows_the_id_range(self) -> None:
        """--date-range-start moves the cutoff and the first in-scope id."""
        world = World()
        start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
        job = world.trigger(date_range_start=start)
        assert job.cutoff == start
        assert job.date_range_start == start
        assert job.first_audit_id > 1

    def test_a_date_range_start_in_the_future_is_refused_before_any_job(self) -> None:
        """Nothing would be in scope: the job would complete with no row and close the account."""
        world = World()
        later = world.clock.now() + dt.timedelta(seconds=1)
        with pytest.raises(ValueError, match="in the future"):
            world.trigger(date_range_start=later)
        assert world.jobs.jobs == ()
        assert world.trigger(date_range_start=world.clock.now()).date_range_start is not None

    def test_a_sub_millisecond_date_range_start_is_taken_to_its_millisecond(self) -> None:
        """A job store keeps whole milliseconds, so the cutoff and the scope are the floored instant's:
        audit 592 (05:17:01.630067) is in the scope of a start at 05:17:01.630500."""
        world = World()
        start = dt.datetime(2024, 2, 10, 5, 17, 1, 630500, tzinfo=dt.UTC)
        floored = start.replace(microsecond=630000)
        job = world.trigger(date_range_start=start)
        assert (job.cutoff, job.date_range_start) == (floored, floored)
        bounds = world.source.scope_bounds(world.tenant, world.transformer.scope, floored)
        assert bounds is not None
        assert job.first_audit_id == bounds.min_id == 592

    def test_a_sub_millisecond_start_runs_and_verifies_clean_with_a_mongodb_job(self) -> None:
        """Trigger, run and verify read one scope when the job's cutoff goes through BSON: before, the
        run left audit 592 out (scope from the exact start) and verify, from the stored (floored)
        cutoff, found it missing, and ``--repair`` would write it."""
        world = World()
        world.jobs = MongoJobStore.in_database(mongomock.MongoClient(tz_aware=True)["cdp"])  # type: ignore[assignment]
        world.trigger(date_range_start=dt.datetime(2024, 2, 10, 5, 17, 1, 630500, tzinfo=dt.UTC))
        assert world.run(settings=RunSettings(halt_threshold=1.0)).job.status == COMPLETED
        ports = world.verify_ports(repair=False)
        report = verify_account(world.company, ports, world.transformer)
        assert report.outstanding == {}
        assert report.job is not None
        assert report.job.mismatches == ()
        assert report.clean

    def test_a_job_over_every_row_asks_a_source_that_knows_its_ends_only_for_them(self) -> None:
        """every_row: an AuditEnds source gives the id range, the cutoff keeps any time, no scope pass."""
        world = World()
        now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        scope = ("Crm::Deal",)
        bounds = world.source.scope_bounds(world.tenant, scope, None)
        assert bounds is not None

        class Ends(InMemoryAuditSource):
            def scope_bounds(self, *args: object) -> None:
                raise AssertionError("scope_bounds was asked")

            def scope_ends(self, tenant: str, scope: Sequence[str]) -> tuple[int, int]:
                return 5, 90

        job = new_job(world.company, world.tenant, source=Ends(), scope=scope, now=now, every_row=True)
        assert (job.cutoff, job.first_audit_id, job.max_audit_id, job.last_audit_id) == (ANY_TIME, 5, 90, 4)
        plain = new_job(
            world.company, world.tenant, source=world.source, scope=scope, now=now, every_row=True
        )
        usual = new_job(world.company, world.tenant, source=world.source, scope=scope, now=now)
        assert plain == usual
        assert (usual.cutoff, usual.first_audit_id) == (bounds.oldest_created_at, bounds.min_id)

    def test_no_people_counts_as_full_coverage(self) -> None:
        """A tenant with no people has nothing Phase A could miss."""
        world = World()
        world.people = InMemoryPeopleCounter({})
        assert contact_coverage(world.company, world.tenant, world.contacts, world.people) == 1.0
