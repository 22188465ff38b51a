"""MongoJobStore's shards: each shard's lease and progress are one entry's atomic update."""

from __future__ import annotations

import datetime as dt
from typing import Any

import attrs
import pytest
from pymongo.errors import WriteConcernError

from crm_audit_adapters.mongo import MongoJobStore, RetryPolicy, apply_migration
from crm_audit_transform.domain import ScopeBounds
from crm_audit_transform.errors import LeaseHeld
from crm_audit_transform.jobs import CANCELLED, COMPLETED, IN_PROGRESS, MigrationJob
from crm_audit_transform.tally import Tally
from crm_audit_transform.testing import FixedClock
from crm_audit_transform.usecases.shards import split_shards
from support.mongo import T0, FirstAnswerLost, migration_job

TTL = dt.timedelta(minutes=2)
NO_WAIT = RetryPolicy(attempts=3, sleep=lambda _: None)


@pytest.fixture
def store(mongo_db: Any) -> MongoJobStore:
    """mongomock with expiries on a clock; the emulator (or a real server) computing them with $$NOW."""
    apply_migration(mongo_db, "up")
    clock = FixedClock(T0) if type(mongo_db).__module__.startswith("mongomock") else None
    return MongoJobStore(mongo_db.jobs, retry=NO_WAIT, clock=clock)


def sharded_job() -> MigrationJob:
    shards = split_shards(ScopeBounds(1, 400, T0, 400), 2)
    return attrs.evolve(migration_job(), first_audit_id=1, max_audit_id=400, last_audit_id=0, shards=shards)


class TestShardEntries:
    def test_a_sharded_job_reads_back_as_written(self, store: MongoJobStore) -> None:
        """Shards round-trip through the document; the top-level counts are their sum."""
        job = sharded_job()
        store.create(job)
        assert store.latest(job.company_sso_id) == job
        assert [s.until_id for s in job.shards] == [200, None]

    def test_each_shard_has_its_own_lease(self, store: MongoJobStore) -> None:
        """Shard 0 held by a refuses b; b takes shard 1."""
        job = sharded_job()
        store.create(job)
        store.acquire_shard_lease(job.job_id, 0, "a", TTL)
        with pytest.raises(LeaseHeld):
            store.acquire_shard_lease(job.job_id, 0, "b", TTL)
        both = store.acquire_shard_lease(job.job_id, 1, "b", TTL)
        assert [s.lease_owner for s in both.shards] == ["a", "b"]
        assert all(s.lease_expires_at is not None for s in both.shards)

    def test_a_shard_write_touches_its_entry_only_and_needs_its_lease(self, store: MongoJobStore) -> None:
        """a's progress on shard 0 leaves b's shard 1 alone; b cannot write shard 0."""
        job = sharded_job()
        store.create(job)
        store.acquire_shard_lease(job.job_id, 0, "a", TTL)
        store.acquire_shard_lease(job.job_id, 1, "b", TTL)
        moved = attrs.evolve(job.shards[0], last_audit_id=50, tally=Tally(processed=50, migrated=40))
        saved = store.save_shard_progress(job.job_id, moved, "a", TTL)
        assert (saved.shards[0].last_audit_id, saved.shards[0].lease_owner) == (50, "a")
        assert (saved.shards[1].last_audit_id, saved.shards[1].lease_owner) == (200, "b")
        assert (saved.tally.processed, saved.last_audit_id) == (50, 50)
        with pytest.raises(LeaseHeld):
            store.save_shard_progress(job.job_id, moved, "b", TTL)

    def test_a_cancel_keeps_the_shards_progress_and_stops_their_writes(self, store: MongoJobStore) -> None:
        """A cancel from a stale read does not undo a shard's later batch; the next shard write is refused."""
        job = sharded_job()
        store.create(job)
        stale = store.acquire_shard_lease(job.job_id, 0, "a", TTL)
        moved = attrs.evolve(job.shards[0], last_audit_id=80, tally=Tally(processed=80, migrated=80))
        store.save_shard_progress(job.job_id, moved, "a", TTL)
        cancelled = store.transition(attrs.evolve(stale, status=CANCELLED), {IN_PROGRESS})
        assert cancelled is not None
        assert (cancelled.status, cancelled.shards[0].last_audit_id) == (CANCELLED, 80)
        further = attrs.evolve(moved, last_audit_id=120)
        answer = store.save_shard_progress(job.job_id, further, "a", TTL)
        assert (answer.status, answer.shards[0].last_audit_id) == (CANCELLED, 80)

    def test_a_shard_s_hand_back_whose_answer_was_lost_is_the_job_as_stored(
        self, store: MongoJobStore, mongo_db: Any
    ) -> None:
        """The shard's runner met the job cancelled and handed its lease back; that write stood and
        its answer was lost. The retry no longer matched the lease, and the job came back as read
        before the hand-back, the shard's lease still the runner's."""
        job = sharded_job()
        store.create(job)
        store.acquire_shard_lease(job.job_id, 0, "a", TTL)
        assert store.transition(attrs.evolve(job, status=CANCELLED), {IN_PROGRESS}) is not None
        flaky = FirstAnswerLost(mongo_db.jobs, "find_one_and_update", lost=2)
        clock = FixedClock(T0) if type(mongo_db).__module__.startswith("mongomock") else None
        moved = attrs.evolve(job.shards[0], last_audit_id=50)
        back = MongoJobStore(flaky, retry=NO_WAIT, clock=clock).save_shard_progress(
            job.job_id, moved, "a", TTL
        )
        assert flaky.calls == 3
        assert (back.status, back.shards[0].lease_owner, back.shards[0].lease_expires_at) == (
            CANCELLED,
            None,
            None,
        )
        assert store.get(job.job_id) == back


class TestStoredSummary:
    def test_the_document_s_top_level_figures_sum_the_shards_every_tenth_write(
        self, store: MongoJobStore, mongo_db: Any
    ) -> None:
        """Readers of the raw document see records_* and progress_pct summed over both running shards,
        as of the 10th shard write, before the next one is summarised."""
        job = sharded_job()
        store.create(job)
        store.acquire_shard_lease(job.job_id, 0, "a", TTL)
        store.acquire_shard_lease(job.job_id, 1, "b", TTL)
        for step in range(1, 6):
            store.save_shard_progress(
                job.job_id,
                attrs.evolve(job.shards[0], last_audit_id=10 * step, tally=Tally(processed=10 * step)),
                "a",
                TTL,
            )
            store.save_shard_progress(
                job.job_id,
                attrs.evolve(
                    job.shards[1],
                    last_audit_id=200 + 6 * step,
                    tally=Tally(processed=6 * step, migrated=6 * step),
                ),
                "b",
                TTL,
            )
        doc = mongo_db.jobs.find_one({"_id": job.job_id})
        assert (doc["shard_writes"], doc["summary_of"]) == (10, 10)
        assert (doc["records_processed"], doc["records_migrated"]) == (80, 30)
        assert doc["progress_pct"] == 20.0
        assert doc["last_audit_id"] == 50

    def test_the_summary_is_at_most_nine_writes_behind_while_running_and_exact_at_the_end(
        self, store: MongoJobStore, mongo_db: Any
    ) -> None:
        """Shard writes 1-9 after a summary leave it as stored; a shard's completion and the job's end
        set it at once, so the ended job's document holds the exact sums."""
        job = sharded_job()
        store.create(job)
        store.acquire_shard_lease(job.job_id, 0, "a", TTL)
        store.acquire_shard_lease(job.job_id, 1, "b", TTL)
        for write in range(1, 24):
            shard, owner = (job.shards[0], "a") if write % 2 else (job.shards[1], "b")
            count = (write + 1) // 2 if write % 2 else write // 2
            store.save_shard_progress(
                job.job_id,
                attrs.evolve(shard, last_audit_id=shard.after_id + count, tally=Tally(processed=count)),
                owner,
                TTL,
            )
            doc = mongo_db.jobs.find_one({"_id": job.job_id})
            summarised = write - write % 10
            assert doc["shard_writes"] == write
            assert doc.get("summary_of", 0) == summarised
            assert doc["records_processed"] == summarised  # each write adds one row to one shard
        first = store.latest(job.company_sso_id)
        assert first is not None
        store.save_shard_progress(
            job.job_id, attrs.evolve(first.shards[0], last_audit_id=200, status=COMPLETED), "a", None
        )
        doc = mongo_db.jobs.find_one({"_id": job.job_id})
        assert (doc["summary_of"], doc["records_processed"]) == (24, 23)
        store.save_shard_progress(
            job.job_id, attrs.evolve(first.shards[1], last_audit_id=400, status=COMPLETED), "b", None
        )
        whole = store.latest(job.company_sso_id)
        assert whole is not None
        ended = store.transition(attrs.evolve(whole, status=COMPLETED), {IN_PROGRESS})
        assert ended is not None
        doc = mongo_db.jobs.find_one({"_id": job.job_id})
        assert (doc["status"], doc["summary_of"], doc["shard_writes"]) == (COMPLETED, 26, 26)
        assert (doc["records_processed"], doc["last_audit_id"], doc["progress_pct"]) == (
            ended.tally.processed,
            ended.last_audit_id,
            ended.progress_pct,
        )
        assert (doc["records_processed"], doc["progress_pct"]) == (23, 100.0)

    def test_a_cancel_from_a_stale_read_keeps_the_newer_summary(
        self, store: MongoJobStore, mongo_db: Any
    ) -> None:
        """A status change read before a shard's batch leaves that batch in the stored counts."""
        job = sharded_job()
        store.create(job)
        stale = store.acquire_shard_lease(job.job_id, 0, "a", TTL)
        moved = attrs.evolve(job.shards[0], last_audit_id=80, tally=Tally(processed=80, migrated=80))
        store.save_shard_progress(job.job_id, moved, "a", TTL)
        store.transition(attrs.evolve(stale, status=CANCELLED), {IN_PROGRESS})
        doc = mongo_db.jobs.find_one({"_id": job.job_id})
        assert (doc["status"], doc["records_processed"], doc["last_audit_id"]) == (CANCELLED, 80, 80)


class TestACountedWriteRetried:
    """A write that counts ``shard_writes`` up and stood before its retry counts once."""

    def _retrying(self, store: MongoJobStore, mongo_db: Any) -> tuple[MongoJobStore, FirstAnswerLost]:
        flaky = FirstAnswerLost(
            mongo_db.jobs, "find_one_and_update", WriteConcernError("waiting for replication timed out", 64)
        )
        clock = FixedClock(T0) if type(mongo_db).__module__.startswith("mongomock") else None
        return MongoJobStore(flaky, retry=NO_WAIT, clock=clock), flaky

    def test_a_shard_write_whose_write_concern_was_not_confirmed_counts_once(
        self, store: MongoJobStore, mongo_db: Any
    ) -> None:
        """The retry counted it again (``shard_writes`` 2 for one write; the summary then fell on
        the wrong writes)."""
        job = sharded_job()
        store.create(job)
        store.acquire_shard_lease(job.job_id, 0, "a", TTL)
        retrying, flaky = self._retrying(store, mongo_db)
        moved = attrs.evolve(job.shards[0], last_audit_id=50, tally=Tally(processed=50, migrated=50))
        saved = retrying.save_shard_progress(job.job_id, moved, "a", TTL)
        assert flaky.calls == 2
        assert (saved.shards[0].last_audit_id, saved.shards[0].lease_owner) == (50, "a")
        assert mongo_db.jobs.find_one({"_id": job.job_id})["shard_writes"] == 1
        store.save_shard_progress(job.job_id, attrs.evolve(moved, last_audit_id=60), "a", TTL)
        assert mongo_db.jobs.find_one({"_id": job.job_id})["shard_writes"] == 2

    def test_a_shard_that_ends_with_its_write_unconfirmed_is_answered_as_stored(
        self, store: MongoJobStore, mongo_db: Any
    ) -> None:
        """The shard's last write hands its lease back: its retry no longer matches the lease and
        reads the write it made, counted once (it raised ``LeaseHeld``, "lost to nobody")."""
        job = sharded_job()
        store.create(job)
        store.acquire_shard_lease(job.job_id, 0, "a", TTL)
        retrying, _ = self._retrying(store, mongo_db)
        done = attrs.evolve(job.shards[0], last_audit_id=200, status=COMPLETED, tally=Tally(processed=200))
        saved = retrying.save_shard_progress(job.job_id, done, "a", None)
        assert (saved.shards[0].status, saved.shards[0].lease_owner) == (COMPLETED, None)
        assert mongo_db.jobs.find_one({"_id": job.job_id})["shard_writes"] == 1

    def test_a_cancel_whose_write_concern_was_not_confirmed_is_the_cancelled_job(
        self, store: MongoJobStore, mongo_db: Any
    ) -> None:
        """The cancel stood; its retry met ``cancelled`` where it expected ``in_progress`` and answered
        None ("the status was another"), and a status change counted twice where it matched again."""
        job = sharded_job()
        store.create(job)
        retrying, flaky = self._retrying(store, mongo_db)
        cancelled = retrying.transition(attrs.evolve(job, status=CANCELLED), {IN_PROGRESS}, status_only=True)
        assert flaky.calls == 2
        assert cancelled is not None
        assert cancelled.status == CANCELLED
        assert mongo_db.jobs.find_one({"_id": job.job_id})["shard_writes"] == 1
