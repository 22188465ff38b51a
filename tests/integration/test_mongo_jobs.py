"""MongoJobStore: durable jobs, one in progress per account (by the index), atomic leases."""

from __future__ import annotations

import datetime as dt
from typing import Any

import attrs
import pytest
from pymongo.errors import AutoReconnect

from crm_audit_adapters.mongo import MongoJobStore, RetryPolicy, apply_migration
from crm_audit_transform.errors import JobAlreadyRunning, JobNotFound, LeaseHeld
from crm_audit_transform.jobs import COMPLETED, HALTED, IN_PROGRESS, MigrationJob
from crm_audit_transform.tally import Tally
from support.mongo import T0, migration_job

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

        class LostInsertAck:
            def __init__(self, inner: Any) -> None:
                self._inner, self.calls = inner, 0

            def __getattr__(self, name: str) -> Any:
                return getattr(self._inner, name)

            def insert_one(self, doc: dict[str, Any]) -> Any:
                self.calls += 1
                result = self._inner.insert_one(doc)
                if self.calls == 1:
                    raise AutoReconnect("connection reset by peer")
                return result

        _store(LostInsertAck(jobs)).create(migration_job())
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


class TestAcquireLease:
    def test_a_free_lease_is_taken(self, jobs: Any) -> None:
        """No owner yet: the lease goes to the caller until expires_at."""
        _store(jobs).create(migration_job())
        leased = _store(jobs).acquire_lease("job-1", "runner-1", T0, LATER)
        assert (leased.lease_owner, leased.lease_expires_at) == ("runner-1", LATER)

    def test_a_held_lease_is_refused(self, jobs: Any) -> None:
        """Another runner's unexpired lease raises LeaseHeld and stays as it was."""
        _store(jobs).create(migration_job())
        _store(jobs).acquire_lease("job-1", "runner-1", T0, LATER)
        with pytest.raises(LeaseHeld):
            _store(jobs).acquire_lease("job-1", "runner-2", T0 + dt.timedelta(minutes=1), LATER)
        latest = _store(jobs).latest("company-a")
        assert latest is not None
        assert latest.lease_owner == "runner-1"

    def test_an_expired_lease_is_taken_over(self, jobs: Any) -> None:
        """At or after expires_at another runner may take it."""
        _store(jobs).create(migration_job())
        _store(jobs).acquire_lease("job-1", "runner-1", T0, LATER)
        later_still = LATER + dt.timedelta(minutes=5)
        leased = _store(jobs).acquire_lease("job-1", "runner-2", LATER, later_still)
        assert (leased.lease_owner, leased.lease_expires_at) == ("runner-2", later_still)

    def test_the_owner_renews_its_own_lease(self, jobs: Any) -> None:
        """Re-acquiring one's own lease extends it."""
        _store(jobs).create(migration_job())
        _store(jobs).acquire_lease("job-1", "runner-1", T0, LATER)
        renewed = _store(jobs).acquire_lease("job-1", "runner-1", T0, LATER + dt.timedelta(minutes=1))
        assert renewed.lease_expires_at == LATER + dt.timedelta(minutes=1)

    def test_an_unknown_job_is_job_not_found(self, jobs: Any) -> None:
        """There is no lease on a job that does not exist."""
        with pytest.raises(JobNotFound):
            _store(jobs).acquire_lease("job-ghost", "runner-1", T0, LATER)


def _leased(jobs: Any) -> MigrationJob:
    """job-1 created and leased to runner-1 from T0 until LATER."""
    _store(jobs).create(migration_job())
    return _store(jobs).acquire_lease("job-1", "runner-1", T0, LATER)


class TestSaveProgress:
    def test_the_owner_saves_progress_and_renews_its_lease_in_one_write(self, jobs: Any) -> None:
        """The cursor, counts and the new expiry land together; latest reads back what it returned."""
        job = _leased(jobs)
        renewed = LATER + dt.timedelta(minutes=1)
        moved = attrs.evolve(job, last_audit_id=40, tally=Tally(processed=40, migrated=39, failed={"x": 1}))
        stored = _store(jobs).save_progress(moved, "runner-1", renewed)
        assert stored == attrs.evolve(moved, lease_expires_at=renewed)
        assert _store(jobs).latest("company-a") == stored
        assert jobs.find_one({"_id": "job-1"})["records_processed"] == 40

    def test_the_owner_may_still_write_after_its_lease_expired_untaken(self, jobs: Any) -> None:
        """Expiry alone takes nothing away: until another runner takes the lease, it is still ours."""
        job = _leased(jobs)
        later_still = LATER + dt.timedelta(hours=1)
        stored = _store(jobs).save_progress(attrs.evolve(job, last_audit_id=7), "runner-1", later_still)
        assert stored.last_audit_id == 7
        assert (stored.lease_owner, stored.lease_expires_at) == ("runner-1", later_still)

    def test_a_runner_whose_lease_was_taken_over_writes_nothing(self, jobs: Any) -> None:
        """After a takeover the old runner gets LeaseHeld and the document stays as it was."""
        job = _leased(jobs)
        _store(jobs).acquire_lease("job-1", "runner-2", LATER, LATER + dt.timedelta(minutes=5))
        before = jobs.find_one({"_id": "job-1"})
        with pytest.raises(LeaseHeld, match="runner-2"):
            _store(jobs).save_progress(attrs.evolve(job, last_audit_id=99), "runner-1", LATER)
        assert jobs.find_one({"_id": "job-1"}) == before

    def test_a_released_lease_is_not_ours_any_more(self, jobs: Any) -> None:
        """A lease that another runner took and then handed back still refuses the stale runner."""
        job = _leased(jobs)
        other = _store(jobs).acquire_lease("job-1", "runner-2", LATER, LATER + dt.timedelta(minutes=5))
        finished = attrs.evolve(
            other, status=COMPLETED, last_audit_id=120, lease_owner=None, lease_expires_at=None
        )
        _store(jobs).save(finished)
        with pytest.raises(LeaseHeld):
            _store(jobs).save_progress(attrs.evolve(job, last_audit_id=40), "runner-1", LATER)
        assert _store(jobs).latest("company-a") == finished

    def test_an_unknown_job_is_job_not_found(self, jobs: Any) -> None:
        """save_progress never creates a job."""
        with pytest.raises(JobNotFound):
            _store(jobs).save_progress(migration_job("job-ghost"), "runner-1", LATER)
        assert jobs.count_documents({}) == 0

    def test_a_retry_after_a_lost_reply_matches_its_own_write(self, jobs: Any) -> None:
        """The replace landed but its reply was lost: the retry finds the guard still ours and succeeds."""

        class LostReplaceAck:
            def __init__(self, inner: Any) -> None:
                self._inner, self.calls = inner, 0

            def __getattr__(self, name: str) -> Any:
                return getattr(self._inner, name)

            def find_one_and_replace(self, *args: Any, **kwargs: Any) -> Any:
                self.calls += 1
                result = self._inner.find_one_and_replace(*args, **kwargs)
                if self.calls == 1:
                    raise AutoReconnect("connection reset by peer")
                return result

        job = _leased(jobs)
        flaky = LostReplaceAck(jobs)
        stored = _store(flaky).save_progress(attrs.evolve(job, last_audit_id=40), "runner-1", LATER)
        assert (flaky.calls, stored.last_audit_id) == (2, 40)
        assert _store(jobs).latest("company-a") == stored
