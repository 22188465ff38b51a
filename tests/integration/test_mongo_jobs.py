"""MongoJobStore: durable jobs, one in progress per account (by the index), atomic leases."""

from __future__ import annotations

import datetime as dt
from typing import Any

import attrs
import pytest
from pymongo.errors import AutoReconnect, WriteConcernError

from crm_audit_adapters.mongo import MongoJobStore, RetryPolicy, apply_migration
from crm_audit_transform.errors import JobAlreadyRunning, JobNotFound, JobUnreadable, LeaseHeld
from crm_audit_transform.jobs import CANCELLED, COMPLETED, HALTED, IN_PROGRESS, ROLLING_BACK, MigrationJob
from crm_audit_transform.tally import Tally
from crm_audit_transform.testing import FixedClock
from support.mongo import T0, FirstAnswerLost, migration_job

NO_WAIT = RetryPolicy(attempts=3, sleep=lambda _: None)
LATER = T0 + dt.timedelta(minutes=5)


@pytest.fixture
def jobs(mongo_db: Any) -> Any:
    apply_migration(mongo_db, "up")
    return mongo_db.crm_activity_log_migration_jobs


def _store(collection: Any) -> MongoJobStore:
    return MongoJobStore(collection, retry=NO_WAIT)


class TestCreate:
    def test_a_created_job_is_the_latest(self, jobs: Any) -> None:
        """create then latest gives the same job back."""
        job = migration_job()
        _store(jobs).create(job)
        assert _store(jobs).latest("company-a") == job

    def test_a_second_in_progress_job_is_refused_by_the_database(self, jobs: Any) -> None:
        """JobAlreadyRunning comes from the partial unique index: without it, the insert succeeds."""
        _store(jobs).create(migration_job("job-1"))
        with pytest.raises(JobAlreadyRunning):
            _store(jobs).create(migration_job("job-2"))
        jobs.drop_index("idx_company_status")
        _store(jobs).create(migration_job("job-2"))
        assert jobs.count_documents({"status": IN_PROGRESS}) == 2

    def test_another_account_may_run_at_the_same_time(self, jobs: Any) -> None:
        """The rule is per account."""
        _store(jobs).create(migration_job("job-1", company="company-a"))
        _store(jobs).create(migration_job("job-2", company="company-b"))
        assert jobs.count_documents({}) == 2

    @pytest.mark.parametrize("status", [HALTED, COMPLETED, "rolled_back"])
    def test_a_finished_or_halted_job_does_not_block_a_new_one(self, jobs: Any, status: str) -> None:
        """Only in_progress is under the unique index."""
        _store(jobs).create(migration_job("job-1", status=status))
        _store(jobs).create(migration_job("job-2", created_at=LATER))
        latest = _store(jobs).latest("company-a")
        assert latest is not None
        assert latest.job_id == "job-2"

    def test_a_retried_create_accepts_its_own_insert(self, jobs: Any) -> None:
        """The insert landed but its reply was lost: the retry finds its own document and succeeds."""

        _store(FirstAnswerLost(jobs, "insert_one")).create(migration_job())
        assert jobs.count_documents({}) == 1

    def test_the_document_carries_figures_for_readers(self, jobs: Any) -> None:
        """progress_pct, failure_rate and records_* are stored for readers outside this library."""
        job = migration_job(
            last_audit_id=50, tally=Tally(processed=20, migrated=18, failed={"write_error": 2})
        )
        _store(jobs).create(job)
        doc = jobs.find_one({"_id": "job-1"})
        assert (doc["progress_pct"], doc["failure_rate"]) == (25.0, 0.1)
        assert (doc["records_processed"], doc["records_failed"]) == (20, 2)


class TestLatestAndSave:
    def test_latest_is_the_newest_by_creation_time(self, jobs: Any) -> None:
        """Jobs inserted out of order: the newest created_at wins."""
        _store(jobs).create(migration_job("job-new", status=COMPLETED, created_at=LATER))
        _store(jobs).create(migration_job("job-old", status=COMPLETED))
        latest = _store(jobs).latest("company-a")
        assert latest is not None
        assert latest.job_id == "job-new"

    def test_no_job_means_none(self, jobs: Any) -> None:
        """An account that never ran has no latest job."""
        assert _store(jobs).latest("company-z") is None

    def test_save_replaces_cursor_counts_and_status(self, jobs: Any) -> None:
        """Progress written by save is what latest reads back."""
        job = migration_job()
        _store(jobs).create(job)
        moved = attrs.evolve(
            job, last_audit_id=120, status=HALTED, tally=Tally(processed=9, failed={"write_error": 1})
        )
        _store(jobs).save(moved)
        assert _store(jobs).latest("company-a") == moved

    def test_save_of_an_unknown_job_is_job_not_found(self, jobs: Any) -> None:
        """save never creates a job."""
        with pytest.raises(JobNotFound):
            _store(jobs).save(migration_job("job-ghost"))
        assert jobs.count_documents({}) == 0

    def test_resuming_a_halted_job_beside_a_running_one_is_refused(self, jobs: Any) -> None:
        """Turning a job back to in_progress hits the same index as create."""
        halted = migration_job("job-1", status=HALTED)
        _store(jobs).create(halted)
        _store(jobs).create(migration_job("job-2", created_at=LATER))
        with pytest.raises(JobAlreadyRunning):
            _store(jobs).save(attrs.evolve(halted, status=IN_PROGRESS))


TTL = LATER - T0


def _clocked(collection: Any, clock: FixedClock) -> MongoJobStore:
    """The store with expiries on ``clock`` (the path the composition root takes for mongomock)."""
    return MongoJobStore(collection, retry=NO_WAIT, clock=clock)


class TestAcquireLease:
    def test_a_free_lease_is_taken(self, jobs: Any) -> None:
        """No owner yet: the lease goes to the caller for one TTL from the store's now."""
        _store(jobs).create(migration_job())
        leased = _clocked(jobs, FixedClock(T0)).acquire_lease("job-1", "runner-1", TTL)
        assert (leased.lease_owner, leased.lease_expires_at) == ("runner-1", LATER)

    def test_a_held_lease_is_refused(self, jobs: Any) -> None:
        """Another runner's unexpired lease raises LeaseHeld and stays as it was."""
        clock = FixedClock(T0)
        _store(jobs).create(migration_job())
        _clocked(jobs, clock).acquire_lease("job-1", "runner-1", TTL)
        clock.advance(60)
        with pytest.raises(LeaseHeld):
            _clocked(jobs, clock).acquire_lease("job-1", "runner-2", TTL)
        latest = _store(jobs).latest("company-a")
        assert latest is not None
        assert latest.lease_owner == "runner-1"

    def test_an_expired_lease_is_taken_over(self, jobs: Any) -> None:
        """At or after its expiry another runner may take it."""
        clock = FixedClock(T0)
        _store(jobs).create(migration_job())
        _clocked(jobs, clock).acquire_lease("job-1", "runner-1", TTL)
        clock.set(LATER)
        leased = _clocked(jobs, clock).acquire_lease("job-1", "runner-2", TTL)
        assert (leased.lease_owner, leased.lease_expires_at) == ("runner-2", LATER + TTL)

    def test_the_owner_renews_its_own_lease(self, jobs: Any) -> None:
        """Re-acquiring one's own lease extends it."""
        clock = FixedClock(T0)
        _store(jobs).create(migration_job())
        _clocked(jobs, clock).acquire_lease("job-1", "runner-1", TTL)
        clock.advance(60)
        renewed = _clocked(jobs, clock).acquire_lease("job-1", "runner-1", TTL)
        assert renewed.lease_expires_at == LATER + dt.timedelta(minutes=1)

    def test_an_unknown_job_is_job_not_found(self, jobs: Any) -> None:
        """There is no lease on a job that does not exist."""
        with pytest.raises(JobNotFound):
            _clocked(jobs, FixedClock(T0)).acquire_lease("job-ghost", "runner-1", TTL)


class TestServerClockLeases:
    """Without a clock the store computes expiries with the server's ``$$NOW``."""

    def test_expiries_follow_the_server_clock_not_the_runner_clock(self, jobs: Any) -> None:
        """A lease taken with $$NOW expires one TTL after the server's time, not the host's."""
        _store(jobs).create(migration_job())
        if _is_mongomock(jobs):
            # mongomock does not evaluate $$NOW in update pipelines: it leaves the expiry unset.
            # This pins the limitation (docs/mongodb.md) so that a mongomock that learns $$NOW shows up.
            leased = _store(jobs).acquire_lease("job-1", "runner-1", TTL)
            assert leased.lease_expires_at is None
            return
        before = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=30)
        leased = _store(jobs).acquire_lease("job-1", "runner-1", TTL)
        after = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)
        assert leased.lease_expires_at is not None
        assert before + TTL <= leased.lease_expires_at <= after + TTL
        with pytest.raises(LeaseHeld):
            _store(jobs).acquire_lease("job-1", "runner-2", TTL)
        moved = _store(jobs).save_progress(attrs.evolve(leased, last_audit_id=9), "runner-1", TTL)
        assert moved.last_audit_id == 9
        assert moved.lease_expires_at is not None
        assert moved.lease_expires_at >= leased.lease_expires_at

    def test_a_lease_expired_by_the_server_clock_is_taken_over(self, jobs: Any) -> None:
        """A lease whose expiry is behind the server's now is free to take, whatever the runner's clock."""
        if _is_mongomock(jobs):
            return _assert_mongomock_ignores_now(jobs)
        past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
        _store(jobs).create(migration_job(lease_owner="dead", lease_expires_at=past))
        leased = _store(jobs).acquire_lease("job-1", "runner-2", TTL)
        assert leased.lease_owner == "runner-2"
        return None


def _is_mongomock(collection: Any) -> bool:
    return type(collection).__module__.startswith("mongomock")


def _assert_mongomock_ignores_now(jobs: Any) -> None:
    jobs.insert_one({"_id": "probe"})
    jobs.update_one({"_id": "probe"}, [{"$set": {"t": {"$add": ["$$NOW", 1000]}}}])
    assert jobs.find_one({"_id": "probe"}).get("t") is None


def _leased(jobs: Any, clock: FixedClock | None = None) -> MigrationJob:
    """job-1 created and leased to runner-1 from T0 until LATER."""
    _store(jobs).create(migration_job())
    return _clocked(jobs, clock or FixedClock(T0)).acquire_lease("job-1", "runner-1", TTL)


class TestSaveProgress:
    def test_the_owner_saves_progress_and_renews_its_lease_in_one_write(self, jobs: Any) -> None:
        """The cursor, counts and the new expiry land together; latest reads back what it returned."""
        clock = FixedClock(T0)
        job = _leased(jobs, clock)
        clock.advance(60)
        moved = attrs.evolve(job, last_audit_id=40, tally=Tally(processed=40, migrated=39, failed={"x": 1}))
        stored = _clocked(jobs, clock).save_progress(moved, "runner-1", TTL)
        assert stored == attrs.evolve(moved, lease_expires_at=LATER + dt.timedelta(minutes=1))
        assert _store(jobs).latest("company-a") == stored
        assert jobs.find_one({"_id": "job-1"})["records_processed"] == 40

    def test_the_owner_may_still_write_after_its_lease_expired_untaken(self, jobs: Any) -> None:
        """Expiry alone takes nothing away: until another runner takes the lease, it is still ours."""
        clock = FixedClock(T0)
        job = _leased(jobs, clock)
        clock.advance(dt.timedelta(hours=1))
        stored = _clocked(jobs, clock).save_progress(attrs.evolve(job, last_audit_id=7), "runner-1", TTL)
        assert stored.last_audit_id == 7
        assert (stored.lease_owner, stored.lease_expires_at) == ("runner-1", clock.now() + TTL)

    def test_a_runner_whose_lease_was_taken_over_writes_nothing(self, jobs: Any) -> None:
        """After a takeover the old runner gets LeaseHeld and the document stays as it was."""
        clock = FixedClock(T0)
        job = _leased(jobs, clock)
        clock.set(LATER)
        _clocked(jobs, clock).acquire_lease("job-1", "runner-2", TTL)
        before = jobs.find_one({"_id": "job-1"})
        with pytest.raises(LeaseHeld, match="runner-2"):
            _clocked(jobs, clock).save_progress(attrs.evolve(job, last_audit_id=99), "runner-1", TTL)
        assert jobs.find_one({"_id": "job-1"}) == before

    def test_a_released_lease_is_not_ours_any_more(self, jobs: Any) -> None:
        """A lease that another runner took and then handed back still refuses the stale runner."""
        clock = FixedClock(T0)
        job = _leased(jobs, clock)
        clock.set(LATER)
        other = _clocked(jobs, clock).acquire_lease("job-1", "runner-2", TTL)
        finished = attrs.evolve(
            other, status=COMPLETED, last_audit_id=120, lease_owner=None, lease_expires_at=None
        )
        _store(jobs).save(finished)
        with pytest.raises(LeaseHeld):
            _clocked(jobs, clock).save_progress(attrs.evolve(job, last_audit_id=40), "runner-1", TTL)
        assert _store(jobs).latest("company-a") == finished

    def test_a_cancelled_job_is_returned_as_stored_and_nothing_is_written(self, jobs: Any) -> None:
        """A job cancelled meanwhile comes back cancelled to its runner; its progress write is dropped,
        and the lease the runner held is handed back (it stops: nothing is left to fence)."""
        job = _leased(jobs)
        cancelled = _store(jobs).transition(attrs.evolve(job, status=CANCELLED), {IN_PROGRESS})
        assert cancelled is not None
        back = _clocked(jobs, FixedClock(T0)).save_progress(
            attrs.evolve(job, last_audit_id=40), "runner-1", TTL
        )
        assert back == attrs.evolve(cancelled, lease_owner=None, lease_expires_at=None)
        assert _store(jobs).latest("company-a") == back

    def test_a_hand_back_whose_answer_was_lost_is_the_job_as_stored(self, jobs: Any) -> None:
        """The runner met its job cancelled and handed its lease back; that write stood and its answer
        was lost. The retry no longer matched the lease, and the job came back as read before the
        hand-back: the lease still the runner's, while the stored job had none."""
        job = _leased(jobs)
        cancelled = _store(jobs).transition(attrs.evolve(job, status=CANCELLED), {IN_PROGRESS})
        assert cancelled is not None
        flaky = FirstAnswerLost(jobs, "find_one_and_update", lost=2)  # the progress write, the hand-back
        back = MongoJobStore(flaky, retry=NO_WAIT, clock=FixedClock(T0)).save_progress(
            attrs.evolve(job, last_audit_id=40), "runner-1", TTL
        )
        assert flaky.calls == 3
        assert back == attrs.evolve(cancelled, lease_owner=None, lease_expires_at=None)
        assert _store(jobs).get("job-1") == back

    def test_an_unknown_job_is_job_not_found(self, jobs: Any) -> None:
        """save_progress never creates a job."""
        with pytest.raises(JobNotFound):
            _store(jobs).save_progress(migration_job("job-ghost"), "runner-1", TTL)
        assert jobs.count_documents({}) == 0


class TestTransition:
    def test_changes_the_job_only_from_an_expected_status(self, jobs: Any) -> None:
        """A compare-and-set on the status: from another status nothing is written and None comes back."""
        job = migration_job(status=HALTED)
        _store(jobs).create(job)
        assert _store(jobs).transition(attrs.evolve(job, status=CANCELLED), {IN_PROGRESS}) is None
        resumed = _store(jobs).transition(attrs.evolve(job, status=IN_PROGRESS), {HALTED, CANCELLED})
        assert resumed is not None
        assert resumed.status == IN_PROGRESS
        assert _store(jobs).latest("company-a") == resumed

    def test_resuming_beside_a_running_job_is_refused_by_the_index(self, jobs: Any) -> None:
        """Back to in_progress while another job of the account runs: JobAlreadyRunning."""
        halted = migration_job("job-1", status=HALTED)
        _store(jobs).create(halted)
        _store(jobs).create(migration_job("job-2", created_at=LATER))
        with pytest.raises(JobAlreadyRunning):
            _store(jobs).transition(attrs.evolve(halted, status=IN_PROGRESS), {HALTED})

    def test_the_rolling_back_job_is_found(self, jobs: Any) -> None:
        """rollback_under_way names the account's job whose rollback has not finished."""
        _store(jobs).create(migration_job("job-1", status=ROLLING_BACK))
        _store(jobs).create(migration_job("job-2", company="company-b", status=HALTED))
        held = _store(jobs).rollback_under_way("company-a")
        assert held is not None
        assert held.job_id == "job-1"
        assert _store(jobs).rollback_under_way("company-b") is None

    def test_a_retry_after_a_lost_reply_matches_its_own_write(self, jobs: Any) -> None:
        """The replace landed but its reply was lost: the retry finds the guard still ours and succeeds."""

        job = _leased(jobs)
        flaky = FirstAnswerLost(jobs, "find_one_and_update")
        stored = MongoJobStore(flaky, retry=NO_WAIT, clock=FixedClock(T0)).save_progress(
            attrs.evolve(job, last_audit_id=40), "runner-1", TTL
        )
        assert (flaky.calls, stored.last_audit_id) == (2, 40)
        assert _store(jobs).latest("company-a") == stored

    @pytest.mark.parametrize(
        "error", [AutoReconnect("connection reset by peer"), WriteConcernError("wtimeout", 64)]
    )
    def test_the_last_write_whose_answer_was_lost_is_the_completed_job(
        self, jobs: Any, error: Exception
    ) -> None:
        """The run's last write (completed, lease handed back) stood, its answer lost or its write
        concern unconfirmed: the retry matched neither the lease nor ``in_progress`` any more and
        raised ``LeaseHeld`` ("taken over by nobody") for a job that had completed."""

        job = _leased(jobs)
        flaky = FirstAnswerLost(jobs, "find_one_and_update", error)
        done = attrs.evolve(job, last_audit_id=90, status=COMPLETED, tally=Tally(processed=90, migrated=90))
        stored = MongoJobStore(flaky, retry=NO_WAIT, clock=FixedClock(T0)).save_progress(
            done, "runner-1", None
        )
        assert (stored.status, stored.last_audit_id, stored.lease_owner) == (COMPLETED, 90, None)
        assert _store(jobs).latest("company-a") == stored

    def test_a_job_keeps_the_ids_of_its_last_sixteen_status_changes(self, jobs: Any) -> None:
        """Nine resumes (the whole document) and nine cancels (``$set``): ``status_write_ids`` holds
        the last 16 ids, the newest last and also at ``write_id``; the list stays bounded."""
        _store(jobs).create(migration_job(status=CANCELLED))
        for _ in range(9):
            read = _store(jobs).get("job-1")
            assert read is not None
            resumed = _store(jobs).transition(attrs.evolve(read, status=IN_PROGRESS), {CANCELLED})
            assert resumed is not None
            cancelled = _store(jobs).transition(
                attrs.evolve(resumed, status=CANCELLED), {IN_PROGRESS}, status_only=True
            )
            assert cancelled is not None
        doc = jobs.find_one({"_id": "job-1"})
        ids = doc["status_write_ids"]
        assert (len(ids), len(set(ids)), ids[-1]) == (16, 16, doc["write_id"])

    def test_a_resume_whose_answer_was_lost_is_the_resumed_job(self, jobs: Any) -> None:
        """The resume (the whole document written, from ``halted``) stood and its answer was lost:
        the retry met ``in_progress`` where it expected ``halted`` and answered None, so ``trigger
        --resume`` took the job it had just resumed for one changed under it."""

        _store(jobs).create(migration_job(status=HALTED, last_audit_id=50, tally=Tally(processed=50)))
        read = _store(jobs).latest("company-a")
        assert read is not None
        flaky = FirstAnswerLost(jobs, "find_one_and_update")
        resumed = MongoJobStore(flaky, retry=NO_WAIT, clock=FixedClock(T0)).transition(
            attrs.evolve(read, status=IN_PROGRESS, halt_basis=read.tally),
            {HALTED},
            unleased=True,
            resumed=True,
        )
        assert flaky.calls == 2
        assert resumed is not None
        assert (resumed.status, resumed.last_audit_id) == (IN_PROGRESS, 50)


JUNK = {"_id": "junk-1", "company_sso_id": "zzz-other", "status": "completed", "created_at": "2026-01-01"}
"""A hand-made job document: no job_id, tenant or cutoff, a text created_at."""


class TestUnreadableJobs:
    def test_an_undecodable_document_is_job_unreadable_naming_it(self, jobs: Any) -> None:
        """It was an untyped cattrs error (INTERNAL, HTTP 500 INTERNAL); now the typed error names the
        document, its account and the fields that are wrong."""
        jobs.insert_one(dict(JUNK))
        with pytest.raises(JobUnreadable) as caught:
            _store(jobs).latest("zzz-other")
        assert (caught.value.job_id, caught.value.company_sso_id, caught.value.code) == (
            "junk-1",
            "zzz-other",
            "JOB_UNREADABLE",
        )
        assert "$.tenant" in caught.value.problem
        with pytest.raises(JobUnreadable):
            _store(jobs).get("junk-1")

    @pytest.mark.parametrize(
        ("field", "value"),
        [("job_id", {"x": "y"}), ("job_id", 5), ("tenant", 7), ("lease_owner", 5), ("halted_reason", ["x"])],
    )
    def test_a_text_field_of_another_type_is_job_unreadable(
        self, jobs: Any, field: str, value: object
    ) -> None:
        """A job_id stored as {"x": "y"} was served as the text "{'x': 'y'}" (cattrs made text of
        anything): status showed it, run and cancel named no such job, rollback said cancel first.
        Now every command's read is JOB_UNREADABLE naming the field, as for the other fields."""
        _store(jobs).create(migration_job())
        jobs.update_one({"_id": "job-1"}, {"$set": {field: value}})
        with pytest.raises(JobUnreadable, match=field) as caught:
            _store(jobs).latest("company-a")
        assert caught.value.job_id == "job-1"

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("last_audit_id", "12"),
            ("last_audit_id", 12.7),
            ("max_audit_id", "1_000"),
            ("logs_deleted", True),
            ("tally.processed", "7"),
            ("tally.skipped.contact_not_found", 2.0),
            ("rows_at_cursor", False),
        ],
    )
    def test_an_integer_field_of_another_type_is_job_unreadable(
        self, jobs: Any, field: str, value: object
    ) -> None:
        """A cursor stored as the text "12" or the double 12.7 was served as 12, a count stored as
        true as 1 (cattrs' int(value)): a job document no run wrote read as one. Now it is
        JOB_UNREADABLE naming the field, as a text field of another type is."""
        _store(jobs).create(migration_job())
        jobs.update_one({"_id": "job-1"}, {"$set": {field: value}})
        with pytest.raises(JobUnreadable, match=field.split(".")[0]) as caught:
            _store(jobs).latest("company-a")
        assert caught.value.job_id == "job-1"

    def test_integers_as_a_run_stores_them_are_read(self, jobs: Any) -> None:
        """A run's own integers (BSON int32 and int64) still read as they were written."""
        _store(jobs).create(migration_job(last_audit_id=2**40, tally=Tally(processed=5, skipped={"x": 2})))
        read = _store(jobs).latest("company-a")
        assert read is not None
        assert (read.last_audit_id, read.tally.processed, read.tally.skipped) == (2**40, 5, {"x": 2})

    @pytest.mark.parametrize("status", ["Halted", "paused", ""])
    def test_a_status_outside_the_enum_is_never_served(self, jobs: Any, status: str) -> None:
        """A copied document with status "Halted" was served as is, outside the declared enum."""
        _store(jobs).create(migration_job(status=HALTED))
        jobs.update_one({"_id": "job-1"}, {"$set": {"status": status}})
        with pytest.raises(JobUnreadable, match="status"):
            _store(jobs).latest("company-a")

    def test_every_other_account_is_still_listed(self, jobs: Any) -> None:
        """One bad document made status --all fail for every account: the others are listed, and the
        bad account's place holds its error. An older readable job never hides a newer bad one."""
        _store(jobs).create(migration_job("job-a", status=COMPLETED))
        _store(jobs).create(migration_job("job-b", company="company-b", status=COMPLETED))
        _store(jobs).create(migration_job("job-z", company="zzz-other", status=COMPLETED))
        jobs.insert_one({**JUNK, "created_at": LATER})
        listed = _store(jobs).latest_per_account()
        assert [x.job_id for x in listed] == ["job-a", "job-b", "junk-1"]
        assert isinstance(listed[2], JobUnreadable)
