"""MongoJobStore against a hostile server: answers lost after the write stood, write concerns never
confirmed, a writer that lands between a write and its retry, a duplicate key on a job's insert.

Each ends as the write stood (the job as stored, counted once) or typed (``StoreUnavailable``,
``JobAlreadyRunning``), and the job's next write goes on from what is stored.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import attrs
import mongomock
import pytest
from pymongo.errors import AutoReconnect, WriteConcernError

from crm_audit_adapters.mongo import MongoActivityLogStore, MongoJobStore, apply_migration
from crm_audit_transform.errors import JobAlreadyRunning, StoreUnavailable
from crm_audit_transform.jobs import (
    CANCELLED,
    COMPLETED,
    IN_PROGRESS,
    ROLLED_BACK,
    ROLLING_BACK,
    MigrationJob,
)
from crm_audit_transform.tally import Tally
from crm_audit_transform.testing import FixedClock
from crm_audit_transform.usecases import RunSettings
from support.corpus_account import World, audit_rows
from support.final_status import final_status
from support.job_stores import NO_WAIT, sharded_job, store_over
from support.mongo import T0, FirstAnswerLost, migration_job

TTL = dt.timedelta(minutes=2)
UNCONFIRMED = WriteConcernError("waiting for replication timed out", 64)


@pytest.fixture
def jobs(mongo_db: Any) -> Any:
    apply_migration(mongo_db, "up")
    return mongo_db.crm_activity_log_migration_jobs


class NeverConfirmed:
    """A collection whose every ``method`` call stands and then answers an unconfirmed write concern."""

    def __init__(self, inner: Any, method: str) -> None:
        self._inner, self._method, self.calls = inner, method, 0

    def __getattr__(self, name: str) -> Any:
        call = getattr(self._inner, name)
        if name != self._method:
            return call

        def unconfirmed(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            call(*args, **kwargs)
            raise UNCONFIRMED

        return unconfirmed


class AnotherWriterFirst:
    """A collection whose first ``method`` call stands, then ``meanwhile`` runs (another process's
    write), then its answer is lost: the retry meets both writes."""

    def __init__(self, inner: Any, method: str, meanwhile: Callable[[], object]) -> None:
        self._inner, self._method, self._meanwhile, self.calls = inner, method, meanwhile, 0

    def __getattr__(self, name: str) -> Any:
        call = getattr(self._inner, name)
        if name != self._method:
            return call

        def then_lost(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            result = call(*args, **kwargs)
            if self.calls == 1:
                self._meanwhile()
                raise AutoReconnect("connection reset by peer")
            return result

        return then_lost


def _leased(jobs: Any) -> MigrationJob:
    store_over(jobs, jobs).create(migration_job())
    return store_over(jobs, jobs).acquire_lease("job-1", "runner-1", TTL)


class TestALeaseRenewal:
    def test_whose_write_concern_is_never_confirmed_is_store_unavailable_and_the_next_one_goes_on(
        self, jobs: Any
    ) -> None:
        """Every attempt stood and none was confirmed: ``StoreUnavailable`` saying so, the progress
        stored once (the retries matched their own write id), and the runner's next renewal, on a
        sound connection, is answered under the lease it still holds."""
        job = _leased(jobs)
        hostile = NeverConfirmed(jobs, "find_one_and_update")
        moved = attrs.evolve(job, last_audit_id=40, tally=Tally(processed=40, migrated=40))
        with pytest.raises(StoreUnavailable, match="did not confirm the write"):
            store_over(hostile, jobs).save_progress(moved, "runner-1", TTL)
        assert hostile.calls == NO_WAIT.attempts
        stored = store_over(jobs, jobs).get("job-1")
        assert stored is not None
        assert (stored.last_audit_id, stored.tally.processed, stored.lease_owner) == (40, 40, "runner-1")
        after = store_over(jobs, jobs).save_progress(attrs.evolve(moved, last_audit_id=80), "runner-1", TTL)
        assert (after.last_audit_id, after.lease_owner) == (80, "runner-1")

    def test_a_lease_taken_whose_answer_was_lost_is_the_runner_s(self, jobs: Any) -> None:
        """The take stood and its answer was lost: the retry matches the runner's own lease and
        answers it (not ``LeaseHeld`` by the runner itself)."""
        store_over(jobs, jobs).create(migration_job())
        flaky = FirstAnswerLost(jobs, "find_one_and_update", UNCONFIRMED)
        leased = store_over(flaky, jobs).acquire_lease("job-1", "runner-1", TTL)
        assert (flaky.calls, leased.lease_owner) == (2, "runner-1")
        assert store_over(jobs, jobs).get("job-1") == leased


class TestAShardClaim:
    def test_whose_answer_was_lost_is_the_claimant_s_and_its_first_batch_is_saved(self, jobs: Any) -> None:
        """The claim stood and its answer was lost: the retry answers the shard leased to its
        claimant, and the claimant's first progress write is taken under that lease."""
        job = sharded_job()
        store_over(jobs, jobs).create(job)
        flaky = FirstAnswerLost(jobs, "find_one_and_update")
        claimed = store_over(flaky, jobs).acquire_shard_lease(job.job_id, 1, "b", TTL)
        assert (flaky.calls, claimed.shards[1].lease_owner, claimed.shards[0].lease_owner) == (2, "b", None)
        moved = attrs.evolve(claimed.shards[1], last_audit_id=250, tally=Tally(processed=50, migrated=50))
        saved = store_over(jobs, jobs).save_shard_progress(job.job_id, moved, "b", TTL)
        assert (saved.shards[1].last_audit_id, saved.shards[1].lease_owner) == (250, "b")


class TestACancel:
    def test_whose_answer_was_lost_while_the_runner_handed_its_lease_back_is_the_cancelled_job(
        self, jobs: Any
    ) -> None:
        """The cancel stood; before its retry the runner met the job cancelled and handed its lease
        back. The retry reads its own cancel back: the hand-back keeps its id apart (``release_id``),
        so the cancel is answered cancelled, not None ("the status was another")."""
        job = _leased(jobs)

        def runner_hands_back() -> None:
            back = store_over(jobs, jobs).save_progress(attrs.evolve(job, last_audit_id=40), "runner-1", TTL)
            assert (back.status, back.lease_owner) == (CANCELLED, None)

        hostile = AnotherWriterFirst(jobs, "find_one_and_update", runner_hands_back)
        cancelled = store_over(hostile, jobs).transition(
            attrs.evolve(job, status=CANCELLED), {IN_PROGRESS}, status_only=True
        )
        assert hostile.calls == 2
        assert cancelled is not None
        assert (cancelled.status, cancelled.lease_owner) == (CANCELLED, None)
        assert store_over(jobs, jobs).get("job-1") == cancelled


class TestAStatusChangeWithAnotherBetweenItAndItsRetry:
    def test_a_cancel_whose_answer_was_lost_is_not_applied_again_over_a_resume(self, jobs: Any) -> None:
        """The cancel stood; before its retry an operator resumed the job (a whole replacement with
        its own write id). The retry must find its own cancel among the job's recent writes and
        answer the job as stored: with one ``write_id`` it met the resume's id, matched
        ``in_progress`` again and cancelled the resumed job a second time."""
        store_over(jobs, jobs).create(migration_job())
        job = store_over(jobs, jobs).get("job-1")
        assert job is not None

        def operator_resumes() -> None:
            cancelled = store_over(jobs, jobs).get("job-1")
            assert cancelled is not None
            assert cancelled.status == CANCELLED
            resumed = store_over(jobs, jobs).transition(
                attrs.evolve(cancelled, status=IN_PROGRESS), {CANCELLED}, unleased=True, resumed=True
            )
            assert resumed is not None
            assert resumed.status == IN_PROGRESS

        hostile = AnotherWriterFirst(jobs, "find_one_and_update", operator_resumes)
        answered = store_over(hostile, jobs).transition(
            attrs.evolve(job, status=CANCELLED), {IN_PROGRESS}, status_only=True
        )
        assert hostile.calls == 2
        stored = store_over(jobs, jobs).get("job-1")
        assert stored is not None
        assert stored.status == IN_PROGRESS
        assert answered == stored

    def test_a_give_back_whose_answer_was_lost_is_read_back_after_another_hold(self, jobs: Any) -> None:
        """A rollback's hold given back stood; before its retry a second rollback held the job (a
        status change with its own write id). The retry reads its give-back among the job's recent
        writes and answers the job as stored (held by the second), not None ("not held by this
        rollback: nothing written") for a write that stood."""
        held = _held(jobs)

        def another_rollback_holds() -> None:
            read = store_over(jobs, jobs).get("job-1")
            assert read is not None
            assert read.status == COMPLETED
            again = store_over(jobs, jobs).hold_rollback(
                attrs.evolve(read, status=ROLLING_BACK), {COMPLETED}, owner="rollback:b", ttl=TTL
            )
            assert again is not None

        hostile = AnotherWriterFirst(jobs, "find_one_and_update", another_rollback_holds)
        answered = store_over(hostile, jobs).give_back_rollback(
            attrs.evolve(held, status=COMPLETED), owner="rollback:a"
        )
        assert hostile.calls == 2
        stored = store_over(jobs, jobs).get("job-1")
        assert stored is not None
        assert (stored.status, stored.lease_owner) == (ROLLING_BACK, "rollback:b")
        assert answered == stored


def _held(jobs: Any) -> MigrationJob:
    """job-1 completed, then held for a rollback by ``rollback:a``."""
    store_over(jobs, jobs).create(migration_job(status=COMPLETED))
    read = store_over(jobs, jobs).get("job-1")
    assert read is not None
    held = store_over(jobs, jobs).hold_rollback(
        attrs.evolve(read, status=ROLLING_BACK), {COMPLETED}, owner="rollback:a", ttl=TTL
    )
    assert held is not None
    return held


class TestARollback:
    def test_a_renewal_whose_answer_was_lost_counts_its_chunk_once(self, jobs: Any) -> None:
        """The renewal (the chunk's deleted logs added, the hold renewed) stood and its answer was
        lost: the retry finds its chunk's marker and renews alone; ``logs_deleted`` counts 5 once."""
        _held(jobs)
        flaky = FirstAnswerLost(jobs, "find_one_and_update", UNCONFIRMED)
        renewed = store_over(flaky, jobs).renew_rollback(
            "job-1", owner="rollback:a", ttl=TTL, deleted=5, chunk=1, sending=["a1"]
        )
        assert (renewed.logs_deleted, renewed.lease_owner) == (5, "rollback:a")
        assert jobs.find_one({"_id": "job-1"})["logs_deleted"] == 5

    def test_an_end_whose_answer_was_lost_is_the_rolled_back_job_counted_once(self, jobs: Any) -> None:
        """The end (the last count, ``rolled_back``, the hold cleared) stood and its answer was lost:
        the retry finds its token counted and answers the job as stored, counted once."""
        held = _held(jobs)
        flaky = FirstAnswerLost(jobs, "find_one_and_update")
        ended = store_over(flaky, jobs).finish_rollback(
            attrs.evolve(held, status=ROLLED_BACK), 3, token="rollback:a"
        )
        assert ended is not None
        assert (ended.status, ended.logs_deleted, ended.lease_owner) == (ROLLED_BACK, 3, None)
        assert store_over(jobs, jobs).get("job-1") == ended


class TestARollbackOfAShardedJob:
    def test_the_hold_carries_the_summary_and_an_end_whose_answer_was_lost_keeps_it(self, jobs: Any) -> None:
        """A shard's batch is not summarised; the hold sums it in its own write (no second write a
        killed process could miss). A job held with an older summary (by a version that summed in
        a second write, killed between the two): the end's answer is lost, and its read-back sets
        the summary too, so the stored figures are the ones ``status`` shows (the shards' sums)."""
        clock = FixedClock(T0)
        store = MongoJobStore(jobs, retry=NO_WAIT, clock=clock)
        job = sharded_job()
        store.create(job)
        shard = store.acquire_shard_lease(job.job_id, 0, "a", TTL).shards[0]
        moved = attrs.evolve(shard, last_audit_id=150, tally=Tally(processed=50, migrated=50))
        store.save_shard_progress(job.job_id, moved, "a", TTL)
        assert jobs.find_one({"_id": job.job_id})["records_processed"] == 0  # one write: not summarised
        clock.advance(TTL.total_seconds() + 1)
        read = store.get(job.job_id)
        assert read is not None
        updates = FirstAnswerLost(jobs, "update_one")
        held = MongoJobStore(updates, retry=NO_WAIT, clock=clock).hold_rollback(
            attrs.evolve(read, status=ROLLING_BACK), {IN_PROGRESS}, owner="rollback:a", ttl=TTL
        )
        assert held is not None
        assert updates.calls == 0
        assert jobs.find_one({"_id": job.job_id})["records_processed"] == 50
        older = {"records_processed": 0, "records_migrated": 0, "tally.processed": 0, "tally.migrated": 0}
        jobs.update_one({"_id": job.job_id}, {"$set": older})
        flaky = FirstAnswerLost(jobs, "find_one_and_update")
        ended = MongoJobStore(flaky, retry=NO_WAIT, clock=clock).finish_rollback(
            attrs.evolve(held, status=ROLLED_BACK), 0, token="rollback:a"
        )
        assert ended is not None
        assert (ended.status, ended.tally.processed) == (ROLLED_BACK, 50)
        doc = jobs.find_one({"_id": job.job_id})
        assert (doc["records_processed"], doc["records_migrated"], doc["tally"]["processed"]) == (50, 50, 50)
        assert doc["progress_pct"] == ended.progress_pct


class TestAJobInsert:
    def test_whose_write_concern_was_not_confirmed_is_created_once(self, jobs: Any) -> None:
        """The insert stood and its write concern was not confirmed: the retry's duplicate key is the
        job's own document, taken as created; one document."""
        flaky = FirstAnswerLost(jobs, "insert_one", UNCONFIRMED)
        store_over(flaky, jobs).create(migration_job())
        assert (flaky.calls, jobs.count_documents({})) == (2, 1)

    def test_a_duplicate_key_of_another_job_with_that_id_is_job_already_running(self, jobs: Any) -> None:
        """A retried insert whose id another account's job holds is not taken for its own: the
        account and creation time differ. ``JobAlreadyRunning``, the other job untouched."""
        other = migration_job(company="company-b", created_at=T0 - dt.timedelta(days=1))
        store_over(jobs, jobs).create(other)
        flaky = FirstAnswerLost(jobs, "insert_one")  # the first attempt's own duplicate key, lost
        with pytest.raises(JobAlreadyRunning):
            store_over(flaky, jobs).create(migration_job())
        assert store_over(jobs, jobs).get("job-1") == other


class Dropping:
    """A collection whose ``method`` loses its connection from its ``at``-th call for ``attempts``
    calls (every attempt of one store call), each after the write stood when ``stood``, else
    before it; then the connection is back."""

    def __init__(self, inner: Any, method: str, at: int, *, stood: bool) -> None:
        self._inner, self._method, self._at, self._stood, self.calls = inner, method, at, stood, 0

    def __getattr__(self, name: str) -> Any:
        call = getattr(self._inner, name)
        if name != self._method:
            return call

        def dropping(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            if not self._at <= self.calls < self._at + NO_WAIT.attempts:
                return call(*args, **kwargs)
            if self._stood:
                call(*args, **kwargs)
            raise AutoReconnect("connection closed")

        return dropping


SETTINGS = RunSettings(page_size=40, halt_threshold=1.0, lease_seconds=60)


def _mongo_world(jobs: Callable[[Any], Any] = lambda collection: collection) -> tuple[World, Any]:
    """An account (corpus tenant ``acme``, ids ≤ 120) whose logs and job are in MongoDB (mongomock,
    expiries on the world's clock), triggered; ``jobs`` wraps the job collection after the trigger."""
    db = mongomock.MongoClient()["crm_audit_hostile"]
    apply_migration(db, "up")
    world = World(rows=[r for r in audit_rows("acme") if r.id <= 120])
    world.logs = MongoActivityLogStore.in_database(db)  # type: ignore[assignment]
    world.jobs = MongoJobStore(db.jobs, retry=NO_WAIT, clock=world.clock)  # type: ignore[assignment]
    world.trigger()
    world.jobs = MongoJobStore(jobs(db.jobs), retry=NO_WAIT, clock=world.clock)  # type: ignore[assignment]
    return world, db


def _end(world: World, db: Any) -> tuple[Any, ...]:
    """The job's final status and the logs as stored (without their ``_id``), by external id."""
    logs = sorted(db.activity_logs.find({}, {"_id": 0}), key=lambda doc: doc["external_id"])
    return final_status(world.jobs.latest(world.company)), repr(logs)


class TestAConnectionDroppedBetweenABatchAndItsCursorSave:
    @pytest.mark.parametrize("stood", [False, True], ids=["lost-before-the-write", "lost-after-it-stood"])
    @pytest.mark.parametrize("at", [2, 3, 4])
    def test_is_store_unavailable_and_the_rerun_ends_as_a_clean_run(self, at: int, stood: bool) -> None:
        """The ``at``-th job write (the lease, then each step's progress) loses its connection on
        every attempt, before the write or after it stood: the run ends ``StoreUnavailable`` with its
        batch inserted and its cursor saved or not; a rerun (once the lease expired) replays what
        it must and ends with the clean run's final status and logs, each stored once."""
        clean, clean_db = _mongo_world()
        assert clean.run(owner="runner-0", settings=SETTINGS).job.status == COMPLETED
        expected = _end(clean, clean_db)

        dropping: list[Dropping] = []

        def drop(collection: Any) -> Any:
            dropping.append(Dropping(collection, "find_one_and_update", at, stood=stood))
            return dropping[0]

        world, db = _mongo_world(drop)
        with pytest.raises(StoreUnavailable, match="unreachable"):
            world.run(owner="runner-0", settings=SETTINGS)
        assert dropping[0].calls >= at + NO_WAIT.attempts - 1
        world.clock.advance(SETTINGS.lease_seconds + 1)
        assert world.run(owner="runner-1", settings=SETTINGS).job.status == COMPLETED
        assert _end(world, db) == expected
