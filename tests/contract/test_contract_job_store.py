"""``ports.JobStore``: one contract that every implementation passes.

Implementations: ``InMemoryJobStore`` and the MongoDB store on mongomock, on the wire-protocol
emulator and on a real server when configured (with migration 035's indexes applied, which is what
makes a second in-progress job of one account impossible there). Leases run on the store's clock:
a ``FixedClock`` in memory and on mongomock (which does not evaluate ``$$NOW``), the server's own
``$$NOW`` on the emulator and a real server; so an expired lease is made with a negative ttl.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import attrs
import pytest
from pymongo.errors import AutoReconnect

from crm_audit_adapters.files import JsonlActivityLogSink
from crm_audit_adapters.mongo import CollectionNames, MongoJobStore, RetryPolicy
from crm_audit_transform.domain import ScopeBounds
from crm_audit_transform.enrichment_tally import EnrichmentTally
from crm_audit_transform.errors import (
    JobAlreadyRunning,
    JobNotFound,
    JobNotRunnable,
    LeaseHeld,
    RollbackHoldLost,
    StoreUnavailable,
)
from crm_audit_transform.jobs import (
    CANCELLED,
    COMPLETED,
    HALTED,
    IN_PROGRESS,
    ROLLED_BACK,
    ROLLING_BACK,
    MigrationJob,
)
from crm_audit_transform.ports import JobStore, MigratedLogs
from crm_audit_transform.tally import Tally
from crm_audit_transform.testing import FixedClock, InMemoryActivityLogStore, InMemoryJobStore
from crm_audit_transform.usecases.cancel import cancel
from crm_audit_transform.usecases.rollback import RollbackPorts, RollbackResult, rollback
from crm_audit_transform.usecases.settings import RunSettings
from crm_audit_transform.usecases.shards import settle, split_shards
from support.job_stores import DATABASE, STORE_PARAMS, empty_job_store
from support.mongo import T0, activity_log, migration_job

LATER = T0 + dt.timedelta(minutes=5)
LEASE = dt.timedelta(minutes=2)


@pytest.fixture(params=STORE_PARAMS)
def store(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[JobStore]:
    """An empty job store of each implementation (``answer_lost`` builds a second one over its database)."""
    yield from empty_job_store(request, monkeypatch)


LostAnswer = Callable[[Callable[[], object]], JobStore]


@pytest.fixture
def answer_lost(request: pytest.FixtureRequest, store: JobStore) -> LostAnswer:
    """``answer_lost(meanwhile)``: ``store`` whose next write that stands is followed by ``meanwhile``
    (another process's write) before its answer comes back. On MongoDB the answer is lost
    (``_StoodThenLost``) and the store's retry comes after ``meanwhile``; in memory, where a write is
    one step with no retry, ``meanwhile`` runs after the call."""
    db = request.node.stash.get(DATABASE, None)
    if db is None:
        return lambda meanwhile: cast("JobStore", _ThenMeanwhile(store, meanwhile))
    clock = FixedClock(T0) if type(db).__module__.startswith("mongomock") else None
    no_wait = RetryPolicy(attempts=3, sleep=lambda _: None)
    return lambda meanwhile: MongoJobStore(
        _StoodThenLost(db[CollectionNames().jobs], meanwhile), retry=no_wait, clock=clock
    )


class _StoodThenLost:
    """A job collection whose first ``find_one_and_update`` that matches stands on the server, then
    ``meanwhile`` runs, then the call raises ``AutoReconnect`` instead of its answer."""

    def __init__(self, inner: Any, meanwhile: Callable[[], object]) -> None:
        self._inner, self._meanwhile, self.lost = inner, meanwhile, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def find_one_and_update(self, *args: Any, **kwargs: Any) -> Any:
        stored = self._inner.find_one_and_update(*args, **kwargs)
        if stored is not None and not self.lost:
            self.lost = True
            self._meanwhile()
            raise AutoReconnect("connection reset by peer")
        return stored


class _ThenMeanwhile:
    """An in-memory store whose next call is followed by ``meanwhile``."""

    def __init__(self, inner: JobStore, meanwhile: Callable[[], object]) -> None:
        self._inner, self._meanwhile = inner, meanwhile

    def __getattr__(self, name: str) -> Any:
        call = getattr(self._inner, name)

        def then_meanwhile(*args: Any, **kwargs: Any) -> Any:
            answer = call(*args, **kwargs)
            self._meanwhile()
            return answer

        return then_meanwhile


class TestJobs:
    def test_a_created_job_is_the_latest_and_comes_back_equal(self, store: JobStore) -> None:
        """create then latest round-trips every field."""
        job = migration_job(tally=Tally(processed=3, migrated=2, skipped={"contact_not_found": 1}))
        store.create(job)
        assert store.latest("company-a") == job
        assert store.latest("company-b") is None

    def test_a_second_in_progress_job_of_one_account_is_refused(self, store: JobStore) -> None:
        """At most one in-progress job per account; another account is not affected."""
        store.create(migration_job("job-1"))
        with pytest.raises(JobAlreadyRunning):
            store.create(migration_job("job-2", created_at=LATER))
        store.create(migration_job("job-3", company="company-b"))
        latest = store.latest("company-a")
        assert latest is not None
        assert latest.job_id == "job-1"

    def test_latest_is_the_most_recently_created(self, store: JobStore) -> None:
        """A finished job does not block a new one, and the new one is the latest."""
        store.create(migration_job("job-1", status=COMPLETED))
        store.create(migration_job("job-2", created_at=LATER))
        latest = store.latest("company-a")
        assert latest is not None
        assert latest.job_id == "job-2"

    def test_save_replaces_the_job_and_an_unknown_job_is_not_found(self, store: JobStore) -> None:
        """save writes the cursor and counts; saving a job never created is JobNotFound."""
        job = migration_job()
        store.create(job)
        moved = attrs.evolve(job, last_audit_id=42, tally=Tally(processed=42, migrated=40))
        store.save(moved)
        assert store.latest("company-a") == moved
        with pytest.raises(JobNotFound):
            store.save(migration_job("never-created", company="company-z"))


class TestLeases:
    def test_a_free_lease_is_taken_and_a_held_one_refused_until_it_expires(self, store: JobStore) -> None:
        """acquire_lease: free → taken; held by another and unexpired → LeaseHeld; expired → taken over."""
        store.create(migration_job())
        first = store.acquire_lease("job-1", "runner-1", LEASE)
        assert first.lease_owner == "runner-1"
        assert first.lease_expires_at is not None
        with pytest.raises(LeaseHeld):
            store.acquire_lease("job-1", "runner-2", LEASE)
        again = store.acquire_lease("job-1", "runner-1", -LEASE)  # ours to renew; now already expired
        assert again.lease_owner == "runner-1"
        taken = store.acquire_lease("job-1", "runner-2", LEASE)
        assert taken.lease_owner == "runner-2"

    def test_a_lease_on_an_unknown_job_is_not_found(self, store: JobStore) -> None:
        """No job, no lease."""
        with pytest.raises(JobNotFound):
            store.acquire_lease("nope", "runner-1", LEASE)

    @pytest.mark.parametrize("status", [CANCELLED, ROLLING_BACK, ROLLED_BACK])
    def test_a_job_that_must_not_be_written_again_is_never_leased(self, store: JobStore, status: str) -> None:
        """A cancelled or rolled-back job comes back as stored, its lease untouched, free or expired."""
        store.create(migration_job(status=status))
        assert store.acquire_lease("job-1", "runner-1", LEASE) == store.latest("company-a")
        stored = store.latest("company-a")
        assert stored is not None
        assert (stored.lease_owner, stored.lease_expires_at) == (None, None)

    def test_a_lease_held_when_the_job_was_cancelled_is_not_renewed(self, store: JobStore) -> None:
        """A cancel keeps the runner's lease as it was (status shows it); taking it again changes nothing."""
        store.create(migration_job())
        held = store.acquire_lease("job-1", "runner-1", LEASE)
        cancelled = attrs.evolve(held, status=CANCELLED)
        assert store.transition(cancelled, {IN_PROGRESS}) is not None
        before = store.latest("company-a")
        again = store.acquire_lease("job-1", "runner-1", -LEASE)
        assert again == before == store.latest("company-a")
        assert again.status == CANCELLED

    @pytest.mark.parametrize("status", [HALTED, COMPLETED])
    def test_a_halted_or_completed_job_is_leased_for_a_repair(self, store: JobStore, status: str) -> None:
        """verify --repair writes into halted and completed jobs: their lease is taken as usual."""
        store.create(migration_job(status=status))
        assert store.acquire_lease("job-1", "verify", LEASE).lease_owner == "verify"

    def test_progress_is_saved_only_by_the_lease_holder(self, store: JobStore) -> None:
        """A runner whose lease was taken over gets LeaseHeld and writes nothing."""
        store.create(migration_job())
        job = store.acquire_lease("job-1", "runner-1", -LEASE)
        store.acquire_lease("job-1", "runner-2", LEASE)
        with pytest.raises(LeaseHeld):
            store.save_progress(attrs.evolve(job, last_audit_id=99), "runner-1", LEASE)
        latest = store.latest("company-a")
        assert latest is not None
        assert (latest.last_audit_id, latest.lease_owner) == (0, "runner-2")

    @pytest.mark.parametrize("status", [ROLLING_BACK, ROLLED_BACK])
    def test_a_job_rolled_back_under_its_runner_is_not_runnable_not_a_lost_lease(
        self, store: JobStore, status: str
    ) -> None:
        """The runner still holds the lease but the job was rolled back (its lease had expired): the
        write says so (JOB_NOT_RUNNABLE), not "no longer leased to runner-1: held by runner-1"."""
        store.create(migration_job())
        held = store.acquire_lease("job-1", "runner-1", LEASE)
        assert store.transition(attrs.evolve(held, status=status), {IN_PROGRESS}) is not None
        with pytest.raises(JobNotRunnable, match=f"job job-1 is {status}") as raised:
            store.save_progress(attrs.evolve(held, last_audit_id=99), "runner-1", LEASE)
        assert "held by" not in str(raised.value)
        latest = store.latest("company-a")
        assert latest is not None
        assert (latest.status, latest.last_audit_id) == (status, 0)

    def test_a_lease_taken_over_and_released_says_so_not_held_by_none(self, store: JobStore) -> None:
        """runner-2 took the lease over and handed it back: runner-1's write is LeaseHeld saying another
        runner took it over, not "held by None until None"."""
        store.create(migration_job())
        job = store.acquire_lease("job-1", "runner-1", -LEASE)
        taken = store.acquire_lease("job-1", "runner-2", LEASE)
        store.save_progress(taken, "runner-2", None)
        with pytest.raises(LeaseHeld) as raised:
            store.save_progress(attrs.evolve(job, last_audit_id=99), "runner-1", LEASE)
        assert str(raised.value) == "job job-1 is no longer leased to runner-1: another runner took it over"

    def test_save_progress_renews_and_a_finish_releases_the_lease(self, store: JobStore) -> None:
        """A ttl renews the lease in the same write; None hands it back."""
        store.create(migration_job())
        job = store.acquire_lease("job-1", "runner-1", LEASE)
        saved = store.save_progress(attrs.evolve(job, last_audit_id=10), "runner-1", LEASE)
        assert (saved.last_audit_id, saved.lease_owner) == (10, "runner-1")
        done = store.save_progress(attrs.evolve(saved, status=COMPLETED), "runner-1", None)
        assert (done.status, done.lease_owner, done.lease_expires_at) == (COMPLETED, None, None)
        assert store.latest("company-a") == done
        assert done.status != IN_PROGRESS

    def test_save_progress_writes_the_runs_fields_and_keeps_the_scope_as_stored(
        self, store: JobStore
    ) -> None:
        """Cursor (with the rows of its id counted), counts, status and end are saved; identity, scope
        and halt basis stay as stored."""
        store.create(migration_job())
        job = store.acquire_lease("job-1", "runner-1", LEASE)
        moved = attrs.evolve(
            job,
            last_audit_id=40,
            rows_at_cursor=3,
            tally=Tally(processed=40, migrated=39),
            updated_at=LATER,
            max_audit_id=job.max_audit_id + 1000,
            tenant="another",
            halt_basis=Tally(processed=7),
        )
        saved = store.save_progress(moved, "runner-1", LEASE)
        expected = attrs.evolve(
            job, last_audit_id=40, rows_at_cursor=3, tally=Tally(processed=40, migrated=39), updated_at=LATER
        )
        assert attrs.evolve(saved, lease_expires_at=None) == attrs.evolve(expected, lease_expires_at=None)
        assert store.latest("company-a") == saved

    def test_the_source_mark_is_the_triggers_and_no_run_write_changes_it(self, store: JobStore) -> None:
        """``source_mark`` round-trips, and stays as created through a lease, a progress write that
        carries another (a run never moves it), a shard's progress and a fenced resume."""
        mark, other = "sha256:10:" + "a" * 64, "sha256:20:" + "b" * 64
        job = attrs.evolve(sharded_job(), source_mark=mark)
        store.create(job)
        assert store.latest("company-a") == job
        held = store.acquire_shard_lease(job.job_id, 1, "runner-1", LEASE)
        moved = attrs.evolve(held.shards[1], last_audit_id=250, tally=Tally(processed=50, migrated=50))
        assert store.save_shard_progress(job.job_id, moved, "runner-1", None).source_mark == mark
        unsharded = attrs.evolve(migration_job("job-2", company="company-b"), source_mark=mark)
        store.create(unsharded)
        leased = store.acquire_lease("job-2", "runner-1", LEASE)
        assert leased.source_mark == mark
        saved = store.save_progress(
            attrs.evolve(leased, last_audit_id=9, source_mark=other), "runner-1", None
        )
        assert saved.source_mark == mark
        halted = store.transition(attrs.evolve(saved, status=HALTED), {IN_PROGRESS})
        assert halted is not None
        resumed = store.transition(
            attrs.evolve(halted, status=IN_PROGRESS), {HALTED}, unleased=True, resumed=True
        )
        assert resumed is not None
        assert (resumed.source_mark, store.latest("company-b")) == (mark, resumed)

    def test_a_runner_grows_the_source_mark_under_its_lease_where_it_is_still_the_one_it_read(
        self, store: JobStore
    ) -> None:
        """``grow_source_mark``: written where the stored mark is still ``previous`` and the lease
        the runner's; another mark (grown by another shard's run) or another status comes back as
        stored, nothing written; another's lease is ``LeaseHeld``. The same write again (a retry)
        finds its mark in place."""
        mark, grown, further = (f"sha256:{n}:" + c * 64 for n, c in ((10, "a"), (20, "b"), (30, "c")))
        job = attrs.evolve(migration_job(), source_mark=mark)
        store.create(job)
        with pytest.raises(LeaseHeld):
            store.grow_source_mark(job.job_id, "runner-1", grown, previous=mark)
        assert store.latest("company-a") == job
        store.acquire_lease(job.job_id, "runner-1", LEASE)
        stored = store.grow_source_mark(job.job_id, "runner-1", grown, previous=mark)
        assert stored.source_mark == grown
        assert store.latest("company-a") == stored
        assert store.grow_source_mark(job.job_id, "runner-1", grown, previous=mark) == stored
        assert store.grow_source_mark(job.job_id, "runner-1", further, previous=mark) == stored
        with pytest.raises(LeaseHeld):
            store.grow_source_mark(job.job_id, "runner-2", further, previous=grown)
        cancelled = store.transition(attrs.evolve(stored, status=CANCELLED), {IN_PROGRESS}, status_only=True)
        assert cancelled is not None
        assert store.grow_source_mark(job.job_id, "runner-1", further, previous=grown) == cancelled
        assert store.latest("company-a") == cancelled
        with pytest.raises(JobNotFound):
            store.grow_source_mark("no-such-job", "runner-1", further, previous=grown)

    def test_a_shards_runner_grows_the_jobs_source_mark_under_its_shards_lease(self, store: JobStore) -> None:
        """A shard's run grows the job's one mark, guarded on that shard's lease: the job's own
        lease, or another shard's, does not let it."""
        mark, grown = "sha256:10:" + "a" * 64, "sha256:20:" + "b" * 64
        job = attrs.evolve(sharded_job(), source_mark=mark)
        store.create(job)
        held = store.acquire_shard_lease(job.job_id, 1, "runner-1", LEASE)
        with pytest.raises(LeaseHeld):
            store.grow_source_mark(job.job_id, "runner-2", grown, previous=mark, shard=1)
        with pytest.raises(LeaseHeld):
            store.grow_source_mark(job.job_id, "runner-1", grown, previous=mark)
        assert store.latest("company-a") == held
        stored = store.grow_source_mark(job.job_id, "runner-1", grown, previous=mark, shard=1)
        assert stored == attrs.evolve(held, source_mark=grown)
        assert store.latest("company-a") == stored

    def test_the_mapping_mark_is_the_triggers_and_no_run_write_changes_it(self, store: JobStore) -> None:
        """``mapping_mark`` round-trips, and stays as created through a lease, a progress write that
        carries another (a run never moves it), a shard's progress and a fenced resume."""
        mark, other = "mapping-sha256:" + "a" * 64, "mapping-sha256:" + "b" * 64
        job = attrs.evolve(sharded_job(), mapping_mark=mark)
        store.create(job)
        assert store.latest("company-a") == job
        held = store.acquire_shard_lease(job.job_id, 1, "runner-1", LEASE)
        moved = attrs.evolve(held.shards[1], last_audit_id=250, tally=Tally(processed=50, migrated=50))
        assert store.save_shard_progress(job.job_id, moved, "runner-1", None).mapping_mark == mark
        unsharded = attrs.evolve(migration_job("job-2", company="company-b"), mapping_mark=mark)
        store.create(unsharded)
        leased = store.acquire_lease("job-2", "runner-1", LEASE)
        assert leased.mapping_mark == mark
        saved = store.save_progress(
            attrs.evolve(leased, last_audit_id=9, mapping_mark=other), "runner-1", None
        )
        assert saved.mapping_mark == mark
        halted = store.transition(attrs.evolve(saved, status=HALTED), {IN_PROGRESS})
        assert halted is not None
        resumed = store.transition(
            attrs.evolve(halted, status=IN_PROGRESS), {HALTED}, unleased=True, resumed=True
        )
        assert resumed is not None
        assert (resumed.mapping_mark, store.latest("company-b")) == (mark, resumed)


class TestNotResent:
    def test_a_task_not_re_sent_is_noted_on_the_job_in_progress_until_a_lease_is_taken(
        self, store: JobStore
    ) -> None:
        """``note_not_resent`` stamps the account's job in progress on the store's clock; a job not in
        progress, or no job, is left alone (None); the next lease taken clears the stamp."""
        assert store.note_not_resent("company-a") is None
        store.create(migration_job("job-0", company="company-b", status=HALTED))
        assert store.note_not_resent("company-b") is None
        store.create(migration_job())
        noted = store.note_not_resent("company-a")
        assert noted is not None
        assert noted.not_resent_at is not None
        assert store.latest("company-a") == noted
        assert store.latest("company-b").not_resent_at is None  # type: ignore[union-attr]
        leased = store.acquire_lease("job-1", "runner-1", LEASE)
        assert leased.not_resent_at is None
        assert store.latest("company-a") == leased

    def test_a_shards_task_not_re_sent_is_noted_on_that_unfinished_shard_alone(self, store: JobStore) -> None:
        """A shard's stamp is its entry's; a completed shard or one the job lacks is not stamped; the
        shard's lease taken clears its stamp only, and a progress write keeps a stamp as stored."""
        job = sharded_job()
        store.create(job)
        assert store.note_not_resent("company-a", 0) is None  # completed
        assert store.note_not_resent("company-a", 7) is None
        noted = store.note_not_resent("company-a", 1)
        assert noted is not None
        assert noted.shards[1].not_resent_at is not None
        assert (noted.not_resent_at, noted.shards[0].not_resent_at) == (None, None)
        both = store.note_not_resent("company-a")
        assert both is not None
        assert both.not_resent_at is not None
        taken = store.acquire_shard_lease(job.job_id, 1, "runner-1", LEASE)
        assert taken.shards[1].not_resent_at is None
        assert taken.not_resent_at == both.not_resent_at
        moved = attrs.evolve(taken.shards[1], last_audit_id=250)
        assert (
            store.save_shard_progress(job.job_id, moved, "runner-1", None).not_resent_at == both.not_resent_at
        )


class TestFencedTransitions:
    def test_an_unleased_transition_is_refused_while_the_jobs_lease_is_live(self, store: JobStore) -> None:
        """transition(unleased=True): LeaseHeld naming the holder, nothing written, while the lease
        is live on the store's clock; once it has expired (a negative ttl), it goes through."""
        store.create(migration_job(status=COMPLETED))
        held = store.acquire_lease("job-1", "repair-1", LEASE)
        with pytest.raises(LeaseHeld, match="repair-1"):
            store.transition(attrs.evolve(held, status=ROLLING_BACK), {COMPLETED}, unleased=True)
        assert store.latest("company-a") == held
        expired = store.acquire_lease("job-1", "repair-1", -LEASE)
        moved = store.transition(attrs.evolve(expired, status=ROLLING_BACK), {COMPLETED}, unleased=True)
        assert moved is not None
        assert moved.status == ROLLING_BACK

    def test_an_unleased_transition_keeps_the_lease_fields_as_stored(self, store: JobStore) -> None:
        """The runner handed its lease back after the rollback read the job: the hold does not write the
        lease it read back (a phantom live lease would refuse the next rollback)."""
        store.create(migration_job())
        held = store.acquire_lease("job-1", "runner-1", LEASE)
        read = store.transition(attrs.evolve(held, status=CANCELLED), {IN_PROGRESS})
        assert read is not None
        store.save_progress(read, "runner-1", LEASE)  # sees the cancel: hands the lease back
        moved = store.transition(attrs.evolve(read, status=ROLLING_BACK), {CANCELLED}, unleased=True)
        assert moved is not None
        assert (moved.status, moved.lease_owner, moved.lease_expires_at) == (ROLLING_BACK, None, None)
        assert store.latest("company-a") == moved

    def test_an_unleased_transition_keeps_the_counts_saved_since_the_job_was_read(
        self, store: JobStore
    ) -> None:
        """rollback's hold read the job, then a repair (its lease expired) saved its count: the hold
        changes the status and keeps the stored counts and cursor, so the rolled-back job counts what
        the repair wrote. MongoDB's $set kept them; the in-memory store wrote back the ones it read."""
        store.create(
            migration_job(status=COMPLETED, last_audit_id=200, tally=Tally(processed=200, migrated=190))
        )
        read = store.latest("company-a")
        assert read is not None
        repaired = attrs.evolve(
            read, tally=Tally(processed=200, migrated=195), last_audit_id=201, rows_at_cursor=2
        )
        store.save(repaired)
        moved = store.transition(attrs.evolve(read, status=ROLLING_BACK), {COMPLETED}, unleased=True)
        assert moved is not None
        assert (moved.status, moved.tally, moved.last_audit_id, moved.rows_at_cursor) == (
            ROLLING_BACK,
            Tally(processed=200, migrated=195),
            201,
            2,
        )
        assert store.latest("company-a") == moved

    def test_an_unleased_transition_is_refused_while_a_shards_lease_is_live(self, store: JobStore) -> None:
        """A live lease on any shard refuses it too; a status that does not match is None, not LeaseHeld.
        (A cancel keeps a running shard's lease: its runner hands it back at its next write.)"""
        job = sharded_job()
        store.create(job)
        running = store.acquire_shard_lease(job.job_id, 1, "shard-runner", LEASE)
        held = store.transition(attrs.evolve(running, status=CANCELLED), {IN_PROGRESS})
        assert held is not None
        assert held.shards[1].lease_owner == "shard-runner"
        with pytest.raises(LeaseHeld, match="shard-runner"):
            store.transition(attrs.evolve(held, status=ROLLING_BACK), {CANCELLED}, unleased=True)
        assert store.transition(attrs.evolve(held, status=ROLLING_BACK), {HALTED}, unleased=True) is None
        assert store.latest("company-a") == held

    def test_a_resumed_transition_is_fenced_and_then_writes_the_whole_job(self, store: JobStore) -> None:
        """transition(unleased=True, resumed=True) (``trigger --resume``): LeaseHeld while a shard's
        lease is live, nothing written; once its runner has handed it back, the whole job is written
        in the same fenced write — its shards' entries too, and the expired lease left by a runner
        that died cleared."""
        job = sharded_job()
        store.create(job)
        store.acquire_lease(job.job_id, "runner-0", -LEASE)  # a runner that died: its lease expired
        running = store.acquire_shard_lease(job.job_id, 1, "shard-runner", LEASE)
        cancelled = store.transition(attrs.evolve(running, status=CANCELLED), {IN_PROGRESS})
        assert cancelled is not None
        basis = Tally(processed=7, migrated=7)
        back = attrs.evolve(
            cancelled,
            status=IN_PROGRESS,
            lease_owner=None,
            lease_expires_at=None,
            shards=(
                cancelled.shards[0],
                attrs.evolve(cancelled.shards[1], halt_basis=basis, lease_owner=None, lease_expires_at=None),
            ),
        )
        with pytest.raises(LeaseHeld, match="shard-runner"):
            store.transition(back, {CANCELLED}, unleased=True, resumed=True)
        assert store.latest("company-a") == cancelled
        store.save_shard_progress(job.job_id, cancelled.shards[1], "shard-runner", LEASE)  # hands it back
        resumed = store.transition(back, {CANCELLED}, unleased=True, resumed=True)
        assert resumed is not None
        assert (resumed.status, resumed.lease_owner, resumed.shards[1].halt_basis) == (
            IN_PROGRESS,
            None,
            basis,
        )
        assert [s.lease_owner for s in resumed.shards] == [None, None]
        assert store.latest("company-a") == resumed

    def test_a_transition_leased_to_its_holder_writes_the_shards_too(self, store: JobStore) -> None:
        """leased_to: only while the job's lease (and every shard's) is that owner's; the whole
        document is written, shards included, even from in_progress; another owner gets None. A
        lease left on a completed shard does not count (no runner writes that entry again)."""
        job = sharded_job()
        left = attrs.evolve(job.shards[0], lease_owner="vm:1:celery", lease_expires_at=LATER)
        job = attrs.evolve(job, shards=(left, job.shards[1]))
        store.create(job)
        store.acquire_shard_lease(job.job_id, 1, "verify", LEASE)
        held = store.acquire_lease(job.job_id, "verify", LEASE)
        counted = attrs.evolve(held.shards[1], tally=Tally(processed=5, migrated=5))
        done = attrs.evolve(held, shards=(held.shards[0], counted), lease_owner=None, lease_expires_at=None)
        assert store.transition(done, {IN_PROGRESS}, leased_to="runner-9") is None
        assert store.latest("company-a") == held
        stored = store.transition(done, {IN_PROGRESS}, leased_to="verify")
        assert stored is not None
        assert (stored.shards[1].tally, stored.lease_owner) == (Tally(processed=5, migrated=5), None)
        assert store.transition(done, {IN_PROGRESS}, leased_to="verify") is None  # no longer its lease

    def test_a_transition_leased_to_is_refused_while_a_shard_is_anothers(self, store: JobStore) -> None:
        """A shard runner that took its shard's lease: the whole document is not written over it."""
        job = sharded_job()
        store.create(job)
        store.acquire_shard_lease(job.job_id, 1, "shard-runner", LEASE)
        held = store.acquire_lease(job.job_id, "verify", LEASE)
        assert (
            store.transition(attrs.evolve(held, lease_owner=None), {IN_PROGRESS}, leased_to="verify") is None
        )
        assert store.latest("company-a") == held


class TestHandBackOnCancel:
    def test_a_runner_that_finds_its_job_cancelled_hands_its_lease_back(self, store: JobStore) -> None:
        """save_progress with a ttl on a cancelled job: the job as stored, nothing written but the
        release of the runner's lease (it stops), so a rollback need not wait for the expiry."""
        store.create(migration_job())
        held = store.acquire_lease("job-1", "runner-1", LEASE)
        assert store.transition(attrs.evolve(held, status=CANCELLED), {IN_PROGRESS}) is not None
        back = store.save_progress(attrs.evolve(held, last_audit_id=99), "runner-1", LEASE)
        assert (back.status, back.last_audit_id, back.lease_owner, back.lease_expires_at) == (
            CANCELLED,
            0,
            None,
            None,
        )
        assert store.latest("company-a") == back

    def test_a_runner_whose_job_was_rolled_back_hands_its_lease_back_too(self, store: JobStore) -> None:
        """JobNotRunnable, nothing written but the release of the lease; the status stays."""
        store.create(migration_job())
        held = store.acquire_lease("job-1", "runner-1", LEASE)
        assert store.transition(attrs.evolve(held, status=ROLLED_BACK), {IN_PROGRESS}) is not None
        with pytest.raises(JobNotRunnable):
            store.save_progress(attrs.evolve(held, last_audit_id=99), "runner-1", None)
        latest = store.latest("company-a")
        assert latest is not None
        assert (latest.status, latest.last_audit_id, latest.lease_owner) == (ROLLED_BACK, 0, None)

    def test_a_shard_runner_that_finds_the_job_cancelled_hands_its_lease_back(self, store: JobStore) -> None:
        """save_shard_progress with a ttl on a cancelled job releases that shard's lease, nothing else."""
        job = sharded_job()
        store.create(job)
        held = store.acquire_shard_lease(job.job_id, 1, "runner-1", LEASE)
        assert store.transition(attrs.evolve(held, status=CANCELLED), {IN_PROGRESS}) is not None
        moved = attrs.evolve(held.shards[1], last_audit_id=300)
        back = store.save_shard_progress(job.job_id, moved, "runner-1", LEASE)
        entry = back.shards[1]
        assert (back.status, entry.lease_owner, entry.lease_expires_at, entry.last_audit_id) == (
            CANCELLED,
            None,
            None,
            200,
        )
        assert store.latest("company-a") == back


def sharded_job() -> MigrationJob:
    """A two-shard job over ids 1..400, shard 0 already completed."""
    shards = split_shards(ScopeBounds(1, 400, T0, 400), 2)
    done = attrs.evolve(shards[0], status=COMPLETED, last_audit_id=200)
    return attrs.evolve(
        migration_job(), first_audit_id=1, max_audit_id=400, last_audit_id=0, shards=(done, shards[1])
    )


class ProgressBeforeTheWrite:
    """A job store whose runner saves a batch's progress between the cancel's read and its write."""

    def __init__(self, inner: JobStore) -> None:
        self.inner = inner
        self.saved: MigrationJob | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def transition(self, job: MigrationJob, expected: Collection[str], **mode: Any) -> MigrationJob | None:
        stored = self.inner.latest(job.company_sso_id)
        assert stored is not None
        batch = attrs.evolve(
            stored,
            last_audit_id=stored.last_audit_id + 50,
            tally=stored.tally + Tally(processed=50, migrated=49, skipped={"contact_not_found": 1}),
            enrichment=EnrichmentTally(logs=4, complete=4),
            updated_at=LATER,
        )
        self.saved = self.inner.save_progress(batch, "runner-1", LEASE)
        return self.inner.transition(job, expected, **mode)


class TestCancelKeepsTheRunnersProgress:
    def test_a_status_only_transition_writes_the_status_and_its_end_alone(self, store: JobStore) -> None:
        """Every other field of the copy given (cursor, counts, lease, scope) is left as stored."""
        store.create(migration_job(last_audit_id=10, tally=Tally(processed=10, migrated=10)))
        held = store.acquire_lease("job-1", "runner-1", LEASE)
        stale = attrs.evolve(
            migration_job(),
            status=CANCELLED,
            updated_at=LATER,
            finished_at=LATER,
            halted_reason="operator",
            max_audit_id=150,
        )
        changed = store.transition(stale, {IN_PROGRESS}, status_only=True)
        expected = attrs.evolve(
            held, status=CANCELLED, updated_at=LATER, finished_at=LATER, halted_reason="operator"
        )
        assert changed == expected == store.latest("company-a")
        assert store.transition(stale, {IN_PROGRESS}, status_only=True) is None

    def test_progress_saved_between_the_cancels_read_and_its_write_is_kept(self, store: JobStore) -> None:
        """The runner's batch lands after the cancel read the job: the stored cursor, counts,
        enrichment and lease are the runner's, not the cancel's older copy; only the status and its
        end change (a resume then starts behind that batch, not before it, and counts it once)."""
        store.create(migration_job(last_audit_id=10, tally=Tally(processed=10, migrated=10)))
        store.acquire_lease("job-1", "runner-1", LEASE)
        racing = ProgressBeforeTheWrite(store)
        now = FixedClock(LATER + dt.timedelta(minutes=1))
        cancelled = cancel("company-a", jobs=cast(JobStore, racing), clock=now, reason="flag_disabled")
        saved = racing.saved
        assert saved is not None
        assert saved.last_audit_id == 60
        assert store.latest("company-a") == cancelled
        assert (cancelled.last_audit_id, cancelled.tally, cancelled.enrichment, cancelled.halt_basis) == (
            saved.last_audit_id,
            saved.tally,
            saved.enrichment,
            saved.halt_basis,
        )
        assert (cancelled.lease_owner, cancelled.lease_expires_at) == (
            saved.lease_owner,
            saved.lease_expires_at,
        )
        assert (cancelled.status, cancelled.halted_reason, cancelled.finished_at, cancelled.updated_at) == (
            CANCELLED,
            "flag_disabled",
            now.now(),
            now.now(),
        )
        assert cancelled == attrs.evolve(
            saved,
            status=CANCELLED,
            halted_reason="flag_disabled",
            finished_at=now.now(),
            updated_at=now.now(),
        )


class TestShardLeases:
    def test_a_completed_shards_lease_is_never_taken(self, store: JobStore) -> None:
        """acquire_shard_lease on a completed shard returns the job as stored, its lease still free."""
        job = sharded_job()
        store.create(job)
        got = store.acquire_shard_lease(job.job_id, 0, "vm:1:celery", LEASE)
        assert (got.shards[0].lease_owner, got.shards[0].lease_expires_at) == (None, None)
        assert store.latest("company-a") == job
        running = store.acquire_shard_lease(job.job_id, 1, "vm:1:celery", LEASE)
        assert running.shards[1].lease_owner == "vm:1:celery"

    @pytest.mark.parametrize("status", [CANCELLED, ROLLING_BACK, ROLLED_BACK])
    def test_a_shard_of_a_job_that_must_not_be_written_again_is_never_leased(
        self, store: JobStore, status: str
    ) -> None:
        """The job's status is part of the shard lease's write: a cancelled, rolling-back or rolled-back
        job is JobNotRunnable (as a run of it is) and the shard's lease stays free. Before, the lease
        was taken and the run loop handed it back at once."""
        job = attrs.evolve(sharded_job(), status=status)
        store.create(job)
        with pytest.raises(JobNotRunnable, match=f"job job-1 is {status}: shard 1's lease is not taken"):
            store.acquire_shard_lease(job.job_id, 1, "runner-1", LEASE)
        assert store.latest("company-a") == job

    @pytest.mark.parametrize("status", [HALTED, COMPLETED])
    def test_a_shard_of_a_halted_or_completed_job_is_leased_for_a_repair(
        self, store: JobStore, status: str
    ) -> None:
        """verify --repair takes every shard's lease of an ended job: LEASABLE, as the job's own lease."""
        job = attrs.evolve(sharded_job(), status=status)
        store.create(job)
        assert store.acquire_shard_lease(job.job_id, 1, "verify", LEASE).shards[1].lease_owner == "verify"

    @pytest.mark.parametrize("shard", [-1, 2])
    def test_a_shard_the_job_does_not_have_is_not_found(self, store: JobStore, shard: int) -> None:
        """A shard number outside the job's shards is JobNotFound and nothing is written — shard -1
        included, which MongoDB read as the job's last shard (a Python index) when its write missed."""
        job = sharded_job()
        store.create(job)
        with pytest.raises(JobNotFound):
            store.acquire_shard_lease(job.job_id, shard, "runner-1", LEASE)
        with pytest.raises(JobNotFound):
            store.save_shard_progress(job.job_id, attrs.evolve(job.shards[1], shard=shard), "runner-1", LEASE)
        assert store.latest("company-a") == job

    def test_a_hand_back_after_the_job_ended_releases_the_shard_lease_only(self, store: JobStore) -> None:
        """A ttl-None shard write on a cancelled job clears the owner's lease and writes nothing else."""
        job = sharded_job()
        store.create(job)
        held = store.acquire_shard_lease(job.job_id, 1, "runner-1", LEASE)
        assert store.transition(attrs.evolve(held, status=CANCELLED), {IN_PROGRESS}) is not None
        moved = attrs.evolve(held.shards[1], last_audit_id=300)
        back = store.save_shard_progress(job.job_id, moved, "runner-1", None)
        entry = back.shards[1]
        assert (back.status, entry.lease_owner, entry.last_audit_id) == (CANCELLED, None, 200)
        assert store.latest("company-a") == back

    def test_a_shard_write_saves_the_runs_fields_and_keeps_the_range_as_stored(self, store: JobStore) -> None:
        """A shard's cursor (with the rows of its id counted), counts and status are saved; its range
        and halt basis stay as stored; read back, the job has the same shard."""
        job = sharded_job()
        store.create(job)
        held = store.acquire_shard_lease(job.job_id, 1, "runner-1", LEASE)
        entry = held.shards[1]
        moved = attrs.evolve(
            entry,
            last_audit_id=260,
            rows_at_cursor=4,
            tally=Tally(processed=60, migrated=60),
            after_id=0,
            until_id=5,
        )
        moved = attrs.evolve(moved, halt_basis=Tally(processed=3))
        stored = store.save_shard_progress(job.job_id, moved, "runner-1", LEASE)
        saved = stored.shards[1]
        expected = attrs.evolve(
            entry, last_audit_id=260, rows_at_cursor=4, tally=Tally(processed=60, migrated=60)
        )
        assert attrs.evolve(saved, lease_expires_at=None) == attrs.evolve(expected, lease_expires_at=None)
        assert saved.lease_owner == "runner-1"
        assert store.latest(job.company_sso_id) == stored

    def test_a_shards_count_at_its_cursor_is_kept_by_an_unleased_transition(self, store: JobStore) -> None:
        """A shard saved among its cursor id's rows, then the job cancelled and held for a rollback:
        the shard keeps ``rows_at_cursor`` (a resume passes over that many rows of the id)."""
        job = sharded_job()
        store.create(job)
        held = store.acquire_shard_lease(job.job_id, 1, "runner-1", LEASE)
        moved = attrs.evolve(held.shards[1], last_audit_id=260, rows_at_cursor=4)
        saved = store.save_shard_progress(job.job_id, moved, "runner-1", None)
        cancelled = store.transition(attrs.evolve(saved, status=CANCELLED), {IN_PROGRESS})
        assert cancelled is not None
        rolling = store.transition(attrs.evolve(cancelled, status=ROLLING_BACK), {CANCELLED}, unleased=True)
        assert rolling is not None
        assert (rolling.shards[1].last_audit_id, rolling.shards[1].rows_at_cursor) == (260, 4)
        assert store.latest(job.company_sso_id) == rolling


class _DeletedBeside:
    """An account's migrated logs whose first delete has a second rollback tried in the middle of
    it: two rollbacks alive at once (an operator's retry, ``trigger --fresh``). The first delete
    removes ``deleted`` logs; what the second rollback did (its result or its error) is kept."""

    def __init__(self, deleted: int, ports: Any) -> None:
        self.deleted = deleted
        self.ports = ports
        self.second: list[RollbackResult | LeaseHeld] = []
        self.status_meanwhile: list[str] = []
        self.calls = 0

    def delete_migrated(self, company_sso_id: str) -> int:
        self.calls += 1
        if self.calls > 1:
            return 0
        try:
            self.second.append(rollback(company_sso_id, self.ports()))
        except LeaseHeld as exc:
            self.second.append(exc)
        stored = self.ports().jobs.latest(company_sso_id)
        self.status_meanwhile.append(stored.status)
        return self.deleted

    def count_migrated(self, company_sso_id: str) -> int:
        return 0


class _Killed(BaseException):
    """Stands for ``kill -9``: nothing of the process runs after it (a rollback lets go of its hold
    on the errors it survives, ``Exception`` and ``KeyboardInterrupt``, never on this)."""


class _DiesAfterTheHold:
    """Migrated logs whose delete never returns: the rollback process died (``kill -9``) holding the job."""

    def delete_migrated(self, company_sso_id: str) -> int:
        raise _Killed

    def count_migrated(self, company_sso_id: str) -> int:
        return 0


class _Counted:
    def __init__(self, deleted: int) -> None:
        self.deleted = deleted

    def delete_migrated(self, company_sso_id: str) -> int:
        return self.deleted

    def count_migrated(self, company_sso_id: str) -> int:
        return 0


class TestOneRollbackAtATime:
    """A rollback run again while the first still deletes is ``LeaseHeld``: the job stays
    ``rolling_back`` (no new job can start) until the rollback that holds it has finished."""

    def test_a_second_rollback_is_refused_while_the_first_still_deletes(self, store: JobStore) -> None:
        """Before: the second held the job too, deleted and made it ``rolled_back`` inside the
        first's delete, so a new job could start while the first still deleted its logs."""
        store.create(migration_job(status=COMPLETED, logs_deleted=1))
        clock = FixedClock(T0)
        logs = _DeletedBeside(5, lambda: RollbackPorts(store, logs, clock, LEASE))
        first = rollback("company-a", RollbackPorts(store, logs, clock, LEASE))
        assert first.deleted == 5
        assert len(logs.second) == 1
        assert isinstance(logs.second[0], LeaseHeld)
        assert "being rolled back" in str(logs.second[0])
        assert (logs.calls, logs.status_meanwhile) == (1, [ROLLING_BACK])
        stored = store.latest("company-a")
        assert stored is not None
        assert (stored.status, stored.logs_deleted) == (ROLLED_BACK, 6)
        assert (stored.lease_owner, stored.lease_expires_at) == (None, None)

    def test_a_rollback_that_died_is_finished_by_the_next_once_its_hold_expired(
        self, store: JobStore
    ) -> None:
        """kill -9 while deleting: the account stays held; ``rollback`` again is ``LeaseHeld``
        until that hold expires, then takes it over and ends the job (a hold made already expired
        stands for the time passing: the emulator's clock is its own)."""
        store.create(migration_job(status=COMPLETED))
        clock = FixedClock(T0)
        with pytest.raises(_Killed):
            rollback("company-a", RollbackPorts(store, _DiesAfterTheHold(), clock, LEASE))
        held = store.latest("company-a")
        assert held is not None
        assert held.status == ROLLING_BACK
        assert held.lease_owner is not None
        assert held.lease_owner.startswith("rollback:")
        with pytest.raises(LeaseHeld):
            rollback("company-a", RollbackPorts(store, _Counted(4), clock, LEASE))
        assert store.latest("company-a") == held
        store.create(migration_job("job-2", status=COMPLETED, company="company-b"))
        with pytest.raises(_Killed):
            rollback("company-b", RollbackPorts(store, _DiesAfterTheHold(), clock, -LEASE))
        done = rollback("company-b", RollbackPorts(store, _Counted(4), clock, LEASE))
        stored = store.latest("company-b")
        assert stored is not None
        assert (done.deleted, stored.status, stored.logs_deleted, stored.lease_owner) == (
            4,
            ROLLED_BACK,
            4,
            None,
        )

    def test_a_finish_whose_hold_was_taken_over_counts_and_leaves_the_status(self, store: JobStore) -> None:
        """A rollback past its hold, taken over by another: its finish adds its count, the job
        stays ``rolling_back`` under the other's hold, which ends it."""
        store.create(migration_job(status=COMPLETED))
        read = store.latest("company-a")
        assert read is not None
        rolling = attrs.evolve(read, status=ROLLING_BACK, updated_at=LATER)
        first = store.hold_rollback(rolling, {COMPLETED}, owner="rollback:a", ttl=-LEASE)
        assert first is not None
        second = store.hold_rollback(rolling, {ROLLING_BACK}, owner="rollback:b", ttl=LEASE)
        assert second is not None
        assert second.lease_owner == "rollback:b"
        after_first = store.finish_rollback(attrs.evolve(first, status=ROLLED_BACK), 3, token="rollback:a")
        assert after_first is not None
        assert (after_first.status, after_first.logs_deleted, after_first.lease_owner) == (
            ROLLING_BACK,
            3,
            "rollback:b",
        )
        assert store.rollback_under_way("company-a") is not None
        after_second = store.finish_rollback(attrs.evolve(second, status=ROLLED_BACK), 2, token="rollback:b")
        assert after_second is not None
        assert (after_second.status, after_second.logs_deleted, after_second.lease_owner) == (
            ROLLED_BACK,
            5,
            None,
        )

    def test_a_chunk_in_flight_is_unfinished_until_a_rollback_counts_it(self, store: JobStore) -> None:
        """A chunk recorded in flight reads as ``rollback_unfinished`` (its size) while no rollback
        counted it: after its rollback died, and after another adopted it; once counted, it is in
        ``logs_deleted`` only. A chunk whose delete returned (recorded empty) is not unfinished."""
        store.create(migration_job(status=COMPLETED))
        read = store.latest("company-a")
        assert read is not None
        assert read.rollback_unfinished is None
        rolling = attrs.evolve(read, status=ROLLING_BACK, updated_at=LATER)
        assert store.hold_rollback(rolling, {COMPLETED}, owner="rollback:a", ttl=-LEASE) is not None
        store.renew_rollback(
            "job-1", owner="rollback:a", ttl=-LEASE, deleted=0, chunk=1, sending=["a1", "a2"]
        )
        store.renew_rollback("job-1", owner="rollback:a", ttl=-LEASE, deleted=2, chunk=2, sending=["a3"])
        killed = store.latest("company-a")
        assert killed is not None
        assert (killed.logs_deleted, killed.rollback_unfinished) == (2, 1)
        under_way = store.rollback_under_way("company-a")
        assert under_way is not None
        assert under_way.rollback_unfinished == 1
        second = store.hold_rollback(rolling, {ROLLING_BACK}, owner="rollback:b", ttl=LEASE)
        assert second is not None
        assert list(store.adopt_rollback_chunk("job-1", owner="rollback:b")) == ["a3"]
        adopted = store.latest("company-a")
        assert adopted is not None
        assert (adopted.logs_deleted, adopted.rollback_unfinished) == (2, 1)
        store.renew_rollback("job-1", owner="rollback:b", ttl=LEASE, deleted=1, chunk=1, sending=())
        counted = store.latest("company-a")
        assert counted is not None
        assert (counted.logs_deleted, counted.rollback_unfinished) == (3, None)
        assert (
            store.finish_rollback(attrs.evolve(second, status=ROLLED_BACK), 0, token="rollback:b") is not None
        )
        done = store.latest("company-a")
        assert done is not None
        assert (done.status, done.logs_deleted, done.rollback_unfinished) == (ROLLED_BACK, 3, None)

    def test_a_finished_rollback_leaves_nothing_unfinished(self, store: JobStore) -> None:
        """The last chunk's count goes in with the job's end: nothing unfinished once rolled back."""
        store.create(migration_job(status=COMPLETED))
        read = store.latest("company-a")
        assert read is not None
        rolling = attrs.evolve(read, status=ROLLING_BACK, updated_at=LATER)
        held = store.hold_rollback(rolling, {COMPLETED}, owner="rollback:a", ttl=LEASE)
        assert held is not None
        store.renew_rollback("job-1", owner="rollback:a", ttl=LEASE, deleted=0, chunk=1, sending=["a1", "a2"])
        deleting = store.latest("company-a")
        assert deleting is not None
        assert deleting.rollback_unfinished == 2  # in flight: up to 2 more than logs_deleted
        store.finish_rollback(attrs.evolve(held, status=ROLLED_BACK), 2, token="rollback:a")
        done = store.latest("company-a")
        assert done is not None
        assert (done.status, done.logs_deleted, done.rollback_unfinished) == (ROLLED_BACK, 2, None)

    def test_a_runner_whose_expired_lease_a_rollback_took_is_not_runnable(self, store: JobStore) -> None:
        """A runner past its lease, the job cancelled and held by a rollback: its next write is
        ``JobNotRunnable`` (rolled back under it), not "another runner took it over"; nothing written."""
        store.create(migration_job())
        store.acquire_lease("job-1", "runner-1", -LEASE)
        read = store.latest("company-a")
        assert read is not None
        store.transition(attrs.evolve(read, status=CANCELLED), {IN_PROGRESS}, status_only=True)
        held = store.hold_rollback(
            attrs.evolve(read, status=ROLLING_BACK), {CANCELLED}, owner="rollback:a", ttl=LEASE
        )
        assert held is not None
        with pytest.raises(JobNotRunnable, match="rolled back while runner-1 ran it"):
            store.save_progress(attrs.evolve(read, last_audit_id=9), "runner-1", LEASE)
        assert store.latest("company-a") == held

    def test_a_hold_given_back_clears_its_lease_and_writes_nothing_else(self, store: JobStore) -> None:
        """A newer job appeared after the hold: the status goes back, the lease with it."""
        store.create(migration_job(status=COMPLETED, last_audit_id=7, tally=Tally(processed=7, migrated=7)))
        read = store.latest("company-a")
        assert read is not None
        held = store.hold_rollback(
            attrs.evolve(read, status=ROLLING_BACK), {COMPLETED}, owner="rollback:a", ttl=LEASE
        )
        assert held is not None
        assert store.give_back_rollback(attrs.evolve(held, status=COMPLETED), owner="rollback:b") is None
        back = store.give_back_rollback(
            attrs.evolve(held, status=COMPLETED, updated_at=LATER), owner="rollback:a"
        )
        assert back is not None
        assert (back.status, back.updated_at, back.lease_owner, back.lease_expires_at) == (
            COMPLETED,
            LATER,
            None,
            None,
        )
        assert attrs.evolve(back, updated_at=read.updated_at) == read
        assert store.latest("company-a") == back


class _LeaseBeforeTheWrite:
    """A job store where the job's top-level lease is taken between a reader's read and its write."""

    def __init__(self, inner: JobStore) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def transition(self, job: MigrationJob, expected: Collection[str], **mode: Any) -> MigrationJob | None:
        self.inner.acquire_lease(job.job_id, "other-1", LEASE)
        return self.inner.transition(job, expected, **mode)


class TestSettleWritesWhatItDecides:
    def test_settle_keeps_the_top_level_lease_taken_since_its_read(self, store: JobStore) -> None:
        """The last shard done, settle decides the job's status from its read: it writes that status
        and its end alone. (It wrote back the whole read, the job's top-level lease fields with it.)"""
        job = sharded_job()
        last = attrs.evolve(job.shards[1], status=COMPLETED, last_audit_id=400)
        store.create(attrs.evolve(job, shards=(job.shards[0], last)))
        settled = settle(
            "job-1",
            "company-a",
            cast(JobStore, _LeaseBeforeTheWrite(store)),
            FixedClock(LATER),
            RunSettings(),
        )
        assert settled.status == COMPLETED
        assert (settled.finished_at, settled.lease_owner) == (LATER, "other-1")
        assert store.latest("company-a") == settled


class TestFinishRollback:
    def test_it_adds_to_the_stored_count_once_per_token_and_writes_nothing_else(
        self, store: JobStore
    ) -> None:
        """rolling_back → rolled_back with the count added; a second rollback's finish adds its own
        even once the job is rolled back; the same token again (a retried write) adds nothing."""
        store.create(
            migration_job(status=ROLLING_BACK, last_audit_id=7, tally=Tally(processed=7, migrated=7))
        )
        read = store.latest("company-a")
        assert read is not None
        assert store.hold_rollback(read, {ROLLING_BACK}, owner="first", ttl=LEASE) is not None
        stale = attrs.evolve(read, updated_at=LATER, last_audit_id=1, tally=Tally())
        first = store.finish_rollback(stale, 3, token="first")
        assert first is not None
        assert (first.status, first.logs_deleted, first.updated_at) == (ROLLED_BACK, 3, LATER)
        assert (first.last_audit_id, first.tally) == (7, Tally(processed=7, migrated=7))
        assert store.finish_rollback(stale, 3, token="first") == first
        second = store.finish_rollback(stale, 2, token="second")
        assert second is not None
        assert (second.status, second.logs_deleted) == (ROLLED_BACK, 5)
        assert store.latest("company-a") == second

    def test_a_lease_that_is_nobodys_does_not_end_the_job(self, store: JobStore) -> None:
        """A rollback past its hold, taken over by another that then let go (an error it survived:
        its lease cleared, the job left ``rolling_back`` with logs left): the first one's late
        finish adds its count and leaves the job ``rolling_back``. Before, a lease that was nobody's
        let it end the job ``rolled_back`` over the logs still there. A job written before
        rollbacks held a lease (``rolling_back``, no lease) is not ended by a finish either: the
        next ``rollback`` takes the hold and ends it."""
        store.create(migration_job(status=COMPLETED))
        read = _job(store, "job-1")
        rolling = attrs.evolve(read, status=ROLLING_BACK, updated_at=LATER)
        first = store.hold_rollback(rolling, {COMPLETED}, owner="rollback:a", ttl=-LEASE)
        assert first is not None
        second = store.hold_rollback(rolling, {ROLLING_BACK}, owner="rollback:b", ttl=LEASE)
        assert second is not None
        assert store.give_back_rollback(second, owner="rollback:b") is not None
        late = store.finish_rollback(attrs.evolve(first, status=ROLLED_BACK), 3, token="rollback:a")
        assert late is not None
        assert (late.status, late.logs_deleted, late.lease_owner) == (ROLLING_BACK, 3, None)
        store.create(migration_job("job-2", status=ROLLING_BACK, company="company-b"))
        legacy = store.finish_rollback(attrs.evolve(_job(store, "job-2"), status=ROLLED_BACK), 1, token="t")
        assert legacy is not None
        assert (legacy.status, legacy.logs_deleted) == (ROLLING_BACK, 1)
        ended = rollback("company-b", RollbackPorts(store, InMemoryActivityLogStore(), FixedClock(T0), LEASE))
        assert (ended.deleted, _job(store, "job-2").status, _job(store, "job-2").logs_deleted) == (
            0,
            ROLLED_BACK,
            1,
        )

    @pytest.mark.parametrize("status", [IN_PROGRESS, COMPLETED, HALTED, CANCELLED])
    def test_a_job_neither_rolling_back_nor_rolled_back_is_not_written(
        self, store: JobStore, status: str
    ) -> None:
        store.create(migration_job(status=status))
        read = store.latest("company-a")
        assert read is not None
        assert store.finish_rollback(attrs.evolve(read, updated_at=LATER), 3, token="t") is None
        assert store.latest("company-a") == read


class TestResumedTransition:
    def test_a_resume_whose_counts_moved_since_its_read_writes_nothing(self, store: JobStore) -> None:
        """A repair saved its count after the resume read the job: None, the repair's count kept."""
        store.create(migration_job(status=HALTED, last_audit_id=50, tally=Tally(processed=50, migrated=40)))
        read = store.latest("company-a")
        assert read is not None
        repaired = attrs.evolve(read, tally=Tally(processed=50, migrated=45))
        store.save(repaired)
        resumed = attrs.evolve(read, status=IN_PROGRESS, halt_basis=read.tally)
        assert store.transition(resumed, {HALTED}, unleased=True, resumed=True) is None
        assert store.latest("company-a") == repaired
        again = attrs.evolve(repaired, status=IN_PROGRESS, halt_basis=repaired.tally)
        assert store.transition(again, {HALTED}, unleased=True, resumed=True) == again

    def test_a_sharded_resume_fences_on_each_shards_counts(self, store: JobStore) -> None:
        """A shard's count moved since the read (its sums on the job may lag): None, nothing written."""
        job = attrs.evolve(sharded_job(), status=CANCELLED)
        store.create(job)
        moved = attrs.evolve(job.shards[1], tally=Tally(processed=3, migrated=3), last_audit_id=203)
        store.save(attrs.evolve(job, shards=(job.shards[0], moved)))
        stored = store.latest("company-a")
        resumed = attrs.evolve(job, status=IN_PROGRESS, halt_basis=job.tally)
        assert store.transition(resumed, {CANCELLED}, unleased=True, resumed=True) is None
        assert store.latest("company-a") == stored


class TestAWriteRetriedAfterAWholeReplacement:
    """A resume or a repair writes the whole job document. A write whose answer was lost before it
    (a dropped connection, an unconfirmed write concern) is retried after it: the retry must find
    its own id still there, else it is applied a second time or read as never written."""

    def test_a_shard_write_retried_after_a_repairs_write_is_not_applied_again(
        self, store: JobStore, answer_lost: LostAnswer
    ) -> None:
        """The repair's count of the shard (280) stands; the retry wrote the shard's batch (250) back
        over it, the repair's count undone, as the replacement had dropped the shard's write id."""
        job = sharded_job()
        store.create(job)
        store.acquire_shard_lease(job.job_id, 1, "verify", LEASE)
        held = store.acquire_lease(job.job_id, "verify", LEASE)
        counted = attrs.evolve(held.shards[1], last_audit_id=280, tally=Tally(processed=80, migrated=80))
        repaired = attrs.evolve(held, shards=(held.shards[0], counted))

        def repair() -> None:
            assert store.transition(repaired, {IN_PROGRESS}, leased_to="verify") is not None

        batch = attrs.evolve(held.shards[1], last_audit_id=250, tally=Tally(processed=50, migrated=50))
        answer_lost(repair).save_shard_progress(job.job_id, batch, "verify", LEASE)
        stored = _job(store, job.job_id).shards[1]
        assert (stored.last_audit_id, stored.tally) == (280, Tally(processed=80, migrated=80))

    def test_a_shards_hand_back_retried_after_a_resume_reads_as_written(
        self, store: JobStore, answer_lost: LostAnswer
    ) -> None:
        """A shard's runner meets its job cancelled and hands its lease back; a resume comes before
        the answer. The retry found no id of its own and answered the job as read before the hand-back:
        the runner's lease still on it, which the store no longer held."""
        job = sharded_job()
        store.create(job)
        held = store.acquire_shard_lease(job.job_id, 1, "runner-1", LEASE)
        assert store.transition(attrs.evolve(held, status=CANCELLED), {IN_PROGRESS}, status_only=True)

        def resume() -> None:
            stopped = _job(store, job.job_id)
            back = attrs.evolve(stopped, status=IN_PROGRESS, finished_at=None, halt_basis=stopped.tally)
            assert store.transition(back, {CANCELLED}, unleased=True, resumed=True) is not None

        moved = attrs.evolve(held.shards[1], last_audit_id=300)
        answer = answer_lost(resume).save_shard_progress(job.job_id, moved, "runner-1", LEASE)
        assert (answer.shards[1].lease_owner, answer.shards[1].last_audit_id) == (None, 200)
        stored = _job(store, job.job_id)
        assert (stored.status, stored.shards[1].lease_owner) == (IN_PROGRESS, None)

    def test_a_jobs_hand_back_retried_after_a_resume_reads_as_written(
        self, store: JobStore, answer_lost: LostAnswer
    ) -> None:
        """The same for an unsharded job's runner: the replacement had dropped the hand-back's id."""
        store.create(migration_job())
        held = store.acquire_lease("job-1", "runner-1", LEASE)
        assert store.transition(attrs.evolve(held, status=CANCELLED), {IN_PROGRESS}, status_only=True)

        def resume() -> None:
            stopped = _job(store, "job-1")
            back = attrs.evolve(stopped, status=IN_PROGRESS, finished_at=None, halt_basis=stopped.tally)
            assert store.transition(back, {CANCELLED}, unleased=True, resumed=True) is not None

        answer = answer_lost(resume).save_progress(attrs.evolve(held, last_audit_id=99), "runner-1", LEASE)
        assert (answer.lease_owner, answer.last_audit_id) == (None, 0)
        assert _job(store, "job-1").status == IN_PROGRESS


class _Chunks:
    """An account's migrated logs deleted in chunks (``MigratedLogsInChunks``) over an in-memory
    store; ``after_delete`` runs after each chunk's delete (its number, from 1). ``sent``: every
    delete sent, a whole-account ``delete_migrated`` as ``"all"``."""

    def __init__(self, logs: InMemoryActivityLogStore, after_delete: Callable[[int], None]) -> None:
        self.logs = logs
        self.after_delete = after_delete
        self.sent: list[object] = []

    def migrated_chunk(self, company_sso_id: str, limit: int) -> Sequence[object]:
        return self.logs.migrated_chunk(company_sso_id, limit)

    def delete_migrated_chunk(self, company_sso_id: str, chunk: Sequence[object]) -> int:
        self.sent.append(list(chunk))
        deleted = self.logs.delete_migrated_chunk(company_sso_id, chunk)
        self.after_delete(len(self.sent))
        return deleted

    def delete_migrated(self, company_sso_id: str) -> int:
        self.sent.append("all")
        deleted = self.logs.delete_migrated(company_sso_id)
        self.after_delete(len(self.sent))
        return deleted

    def count_migrated(self, company_sso_id: str) -> int:
        return self.logs.count_migrated(company_sso_id)


def _five_logs(store: JobStore) -> tuple[InMemoryActivityLogStore, FixedClock]:
    """A completed job of company-a in ``store`` and its 5 migrated logs; the clock at ``T0``."""
    store.create(migration_job(status=COMPLETED))
    memory = InMemoryActivityLogStore()
    memory.insert_batch([activity_log(i) for i in range(1, 6)])
    return memory, FixedClock(T0)


def _raise_after_delete(number: int, error: BaseException) -> Callable[[int], None]:
    """A ``_Chunks.after_delete`` that raises ``error`` once delete ``number`` was applied (its
    answer never seen)."""

    def after_delete(sent: int) -> None:
        if sent == number:
            raise error

    return after_delete


class _InterruptedInThe(_Chunks):
    """``_Chunks`` whose delete number ``number`` raises ``error`` before it is applied (once)."""

    def __init__(self, number: int, error: BaseException, logs: InMemoryActivityLogStore) -> None:
        super().__init__(logs, lambda _: None)
        self.number = number
        self.error: BaseException | None = error

    def delete_migrated_chunk(self, company_sso_id: str, chunk: Sequence[object]) -> int:
        if len(self.sent) + 1 == self.number and self.error is not None:
            self.sent.append(list(chunk))
            error, self.error = self.error, None
            raise error
        return super().delete_migrated_chunk(company_sso_id, chunk)


def _killed_after_the_third_delete(
    store: JobStore, memory: InMemoryActivityLogStore, clock: FixedClock
) -> _Chunks:
    """A rollback of ``_five_logs`` in chunks of 2, its hold already expired, killed (``_Killed``)
    right after its third delete returned: 4 logs counted, that chunk left in flight."""
    chunks = _Chunks(memory, _raise_after_delete(3, _Killed()))
    with pytest.raises(_Killed):
        rollback("company-a", RollbackPorts(store, chunks, clock, -LEASE, chunk=2))
    return chunks


class TestRollbackInChunks:
    """A rollback deletes chunk by chunk and renews its hold before each: once another rollback
    took the hold over, it sends no further delete, so a job started after that one ends keeps its
    fresh logs; ``logs_deleted`` counts each chunk once."""

    def test_a_rollback_taken_over_between_chunks_sends_no_further_delete(self, store: JobStore) -> None:
        """The first rollback's hold expires after its first chunk (made already expired: the
        emulator's clock is its own); a second takes it over, deletes the rest and ends the job; a
        new job writes fresh logs. The first then stops (``LeaseHeld``) before its next delete: the
        fresh logs stay, and ``logs_deleted`` is the 5 logs the account had. Before, the first's one
        delete of the whole account ran on beside the second (and, slower, took the fresh logs)."""
        memory, clock = _five_logs(store)
        second: list[RollbackResult] = []

        def take_over(number: int) -> None:
            if number != 1:
                return
            second.append(rollback("company-a", RollbackPorts(store, memory, clock, LEASE, chunk=2)))
            store.create(migration_job("job-2", created_at=LATER))
            memory.insert_batch([activity_log(i) for i in (1, 2)])  # the new job's fresh logs

        first = _Chunks(memory, take_over)
        with pytest.raises(LeaseHeld, match="lost its hold"):
            rollback("company-a", RollbackPorts(store, first, clock, -LEASE, chunk=2))
        assert len(first.sent) == 1
        assert [r.deleted for r in second] == [3]
        assert memory.count_migrated("company-a") == 2
        job = _job(store, "job-1")
        assert (job.status, job.logs_deleted, job.lease_owner) == (ROLLED_BACK, 5, None)

    def test_a_rollback_paused_after_a_chunk_that_deleted_nothing_leaves_a_new_jobs_logs(
        self, store: JobStore
    ) -> None:
        """The first chunk's logs are deleted by another meanwhile, so its delete removes none; the
        rollback then pauses past its hold before its next delete, while a second takes the hold
        over, ends the job, and a new job writes fresh logs. Its next delete names a chunk read
        under its hold (by the store's ids): the fresh logs stay, and it stops at its renewal
        (``LeaseHeld``). Before, a chunk that deleted nothing was followed by one delete of the
        whole account, which took the new job's 2 logs."""
        memory, clock = _five_logs(store)
        second: list[RollbackResult] = []

        def take_over() -> None:
            second.append(rollback("company-a", RollbackPorts(store, memory, clock, LEASE, chunk=2)))
            store.create(migration_job("job-2", created_at=LATER))
            memory.insert_batch([activity_log(i) for i in (6, 7)])  # the new job's fresh logs

        class _Paused(_Chunks):
            def delete_migrated_chunk(self, company_sso_id: str, chunk: Sequence[object]) -> int:
                if not self.sent:  # another delete took this chunk's logs just before
                    self.logs.delete_migrated_chunk(company_sso_id, chunk)
                elif not second:  # paused past the hold before this delete went out
                    take_over()
                return super().delete_migrated_chunk(company_sso_id, chunk)

            def delete_migrated(self, company_sso_id: str) -> int:
                if not second:
                    take_over()
                return super().delete_migrated(company_sso_id)

        first = _Paused(memory, lambda _: None)
        with pytest.raises(LeaseHeld, match="lost its hold"):
            rollback("company-a", RollbackPorts(store, first, clock, -LEASE, chunk=2))
        assert "all" not in first.sent
        assert memory.count_migrated("company-a") == 2
        assert [r.deleted for r in second] == [3]
        job = _job(store, "job-1")
        assert (job.status, job.logs_deleted, job.lease_owner) == (ROLLED_BACK, 3, None)

    def test_a_stale_rollback_whose_taker_let_go_does_not_end_the_job(self, store: JobStore) -> None:
        """The first rollback freezes before its first chunk, past its hold; a second takes the hold
        over, deletes a chunk and is cut off (Ctrl-C): it counts and lets go, the job left
        ``rolling_back`` with nobody's lease. The first wakes, finds its hold lost at its renewal and
        stops with ``RollbackHoldLost`` saying nobody holds the job: the job stays
        ``rolling_back`` with 3 logs left, and ``rollback`` run again ends it, 5 of 5 counted.
        Before, the first one's finish made the job ``rolled_back`` over the 3 logs left."""
        memory, clock = _five_logs(store)
        cut_off: list[BaseException] = []

        class _FrozenFirst(_Chunks):
            def migrated_chunk(self, company_sso_id: str, limit: int) -> Sequence[object]:
                if not cut_off:  # the first read: the process froze before it, past its hold
                    second = _Chunks(memory, _raise_after_delete(1, KeyboardInterrupt()))
                    with pytest.raises(KeyboardInterrupt) as caught:
                        rollback("company-a", RollbackPorts(store, second, clock, LEASE, chunk=2))
                    cut_off.append(caught.value)
                return super().migrated_chunk(company_sso_id, limit)

        first = _FrozenFirst(memory, lambda _: None)
        with pytest.raises(RollbackHoldLost, match="no rollback holds the job now") as lost:
            rollback("company-a", RollbackPorts(store, first, clock, -LEASE, chunk=2))
        assert (lost.value.taken, lost.value.by_rollback, first.sent) == (False, True, [])
        held = _job(store, "job-1")
        assert (held.status, held.lease_owner, memory.count_migrated("company-a")) == (ROLLING_BACK, None, 3)
        done = rollback("company-a", RollbackPorts(store, memory, clock, LEASE, chunk=2))
        job = _job(store, "job-1")
        assert (done.deleted, job.status, job.logs_deleted, memory.count_migrated("company-a")) == (
            3,
            ROLLED_BACK,
            5,
            0,
        )

    def test_a_rollback_killed_between_chunks_is_finished_by_the_next_and_counted_once(
        self, store: JobStore
    ) -> None:
        """kill -9 in its third delete: two chunks deleted and counted, the job held. The next
        rollback, once that hold expired, deletes the rest; the job ends ``rolled_back`` with the
        account's 5 logs counted."""
        memory, clock = _five_logs(store)

        class _Dies(_Chunks):
            def delete_migrated_chunk(self, company_sso_id: str, chunk: Sequence[object]) -> int:
                if len(self.sent) == 2:
                    raise _Killed
                return super().delete_migrated_chunk(company_sso_id, chunk)

        with pytest.raises(_Killed):
            rollback("company-a", RollbackPorts(store, _Dies(memory, lambda _: None), clock, -LEASE, chunk=2))
        held = _job(store, "job-1")
        assert (held.status, held.logs_deleted, memory.count_migrated("company-a")) == (ROLLING_BACK, 4, 1)
        done = rollback("company-a", RollbackPorts(store, memory, clock, LEASE, chunk=2))
        job = _job(store, "job-1")
        assert (done.deleted, job.status, job.logs_deleted, job.lease_owner) == (1, ROLLED_BACK, 5, None)
        assert memory.count_migrated("company-a") == 0

    def test_a_rollback_ended_by_a_store_error_lets_go_of_its_hold(self, store: JobStore) -> None:
        """The store gone in its third delete (before it was applied): the two chunks deleted are
        counted and the hold is cleared, the job left ``rolling_back``; ``rollback`` run again goes
        on at once (its hold not yet expired: before, it was ``LeaseHeld`` for up to
        ``lease_seconds``). The chunk stays the next one's: no delete is sent again to a store that
        has just failed."""
        memory, clock = _five_logs(store)
        interrupted = _InterruptedInThe(3, StoreUnavailable("gone"), memory)
        with pytest.raises(StoreUnavailable):
            rollback("company-a", RollbackPorts(store, interrupted, clock, LEASE, chunk=2))
        held = _job(store, "job-1")
        assert (held.status, held.logs_deleted, held.lease_owner) == (ROLLING_BACK, 4, None)
        assert len(interrupted.sent) == 3  # nothing sent again
        done = rollback("company-a", RollbackPorts(store, memory, clock, LEASE, chunk=2))
        job = _job(store, "job-1")
        assert (done.deleted, job.status, job.logs_deleted, job.lease_owner) == (1, ROLLED_BACK, 5, None)
        assert memory.count_migrated("company-a") == 0

    def test_a_ctrl_c_in_a_chunks_delete_sends_it_again_and_counts_it_as_it_lets_go(
        self, store: JobStore
    ) -> None:
        """Ctrl-C in its second delete, before it was applied: letting go sends that chunk's delete
        again and counts it in the same write, so the job shows the 4 logs deleted at once, as the
        ``INTERRUPTED`` line says (before: 2 until the next rollback adopted the chunk); the next
        rollback deletes the last log and counts 5, not 7."""
        memory, clock = _five_logs(store)
        interrupted = _InterruptedInThe(2, KeyboardInterrupt(), memory)
        with pytest.raises(KeyboardInterrupt):
            rollback("company-a", RollbackPorts(store, interrupted, clock, LEASE, chunk=2))
        held = _job(store, "job-1")
        assert (held.status, held.logs_deleted, held.lease_owner) == (ROLLING_BACK, 4, None)
        assert (interrupted.sent[1], memory.count_migrated("company-a")) == (interrupted.sent[2], 1)
        again = _Chunks(memory, lambda _: None)
        done = rollback("company-a", RollbackPorts(store, again, clock, LEASE, chunk=2))
        job = _job(store, "job-1")
        assert (done.deleted, job.status, job.logs_deleted, job.lease_owner) == (1, ROLLED_BACK, 5, None)
        assert len(again.sent) == 1  # nothing left in flight to adopt: the chunk was settled
        assert memory.count_migrated("company-a") == 0

    def test_a_ctrl_c_after_the_renewal_before_the_delete_is_sent_deletes_that_chunk_once(
        self, store: JobStore
    ) -> None:
        """Ctrl-C after the renewal recorded the second chunk, before its delete went out: letting go
        sends it (the chunk was the rollback's to delete) and counts it; 4 counted, 1 log left."""
        memory, clock = _five_logs(store)

        class _BeforeTheSend(_Chunks):
            def delete_migrated_chunk(self, company_sso_id: str, chunk: Sequence[object]) -> int:
                if len(self.sent) == 1 and not getattr(self, "cut", False):
                    self.cut = True
                    raise KeyboardInterrupt
                return super().delete_migrated_chunk(company_sso_id, chunk)

        first = _BeforeTheSend(memory, lambda _: None)
        with pytest.raises(KeyboardInterrupt):
            rollback("company-a", RollbackPorts(store, first, clock, LEASE, chunk=2))
        held = _job(store, "job-1")
        assert (held.status, held.logs_deleted, len(first.sent), memory.count_migrated("company-a")) == (
            ROLLING_BACK,
            4,
            2,
            1,
        )

    def test_a_rollback_killed_while_it_sends_the_chunk_again_leaves_it_for_the_next(
        self, store: JobStore
    ) -> None:
        """kill -9 during the delete a Ctrl-C's letting go sends again: nothing more written, the chunk
        recorded in flight; the next rollback (the hold expired) adopts it: 5 of 5, counted once."""
        memory, clock = _five_logs(store)

        class _KilledInTheResend(_InterruptedInThe):
            def delete_migrated_chunk(self, company_sso_id: str, chunk: Sequence[object]) -> int:
                if len(self.sent) == 3:  # the third delete was cut off; this is it sent again
                    raise _Killed
                return super().delete_migrated_chunk(company_sso_id, chunk)

        killed = _KilledInTheResend(3, KeyboardInterrupt(), memory)
        with pytest.raises(_Killed):
            rollback("company-a", RollbackPorts(store, killed, clock, -LEASE, chunk=2))
        held = _job(store, "job-1")
        assert (held.status, held.logs_deleted) == (ROLLING_BACK, 4)
        assert held.lease_owner is not None  # killed: the hold was not given back
        done = rollback("company-a", RollbackPorts(store, memory, clock, LEASE, chunk=2))
        job = _job(store, "job-1")
        assert (done.deleted, job.status, job.logs_deleted, memory.count_migrated("company-a")) == (
            1,
            ROLLED_BACK,
            5,
            0,
        )

    def test_a_renewal_cut_off_before_its_answer_is_counted_once(self, store: JobStore) -> None:
        """Ctrl-C inside the second renewal, after the store applied it (its answer lost): letting
        go sends it again under its own marker, so the first chunk is counted once, not twice."""
        memory, clock = _five_logs(store)
        renewals: list[int] = []

        class _CutOff:
            def __getattr__(self, name: str) -> Any:
                return getattr(store, name)

            def renew_rollback(self, job_id: str, **kwargs: Any) -> Any:
                renewed = store.renew_rollback(job_id, **kwargs)
                renewals.append(kwargs["chunk"])
                if len(renewals) == 2:
                    raise KeyboardInterrupt
                return renewed

        with pytest.raises(KeyboardInterrupt):
            rollback("company-a", RollbackPorts(_CutOff(), memory, clock, LEASE, chunk=2))  # type: ignore[arg-type]
        held = _job(store, "job-1")
        assert (held.status, held.logs_deleted, held.lease_owner) == (ROLLING_BACK, 2, None)
        done = rollback("company-a", RollbackPorts(store, memory, clock, LEASE, chunk=2))
        job = _job(store, "job-1")
        assert (done.deleted, job.status, job.logs_deleted) == (3, ROLLED_BACK, 5)

    def test_a_hold_half_spent_before_its_delete_is_renewed_again(self, store: JobStore) -> None:
        """Half the lease gone between a renewal and its chunk's delete (a stall, on the ports'
        clock): the hold is renewed again before the delete is sent, and every chunk counted once."""
        memory, clock = _five_logs(store)
        renewals: list[int] = []

        class _Stalls:
            def __getattr__(self, name: str) -> Any:
                return getattr(store, name)

            def renew_rollback(self, job_id: str, **kwargs: Any) -> Any:
                renewed = store.renew_rollback(job_id, **kwargs)
                renewals.append(kwargs["chunk"])
                if len(renewals) == 1:
                    clock.advance(LEASE * 0.6)  # the process stalls after its first renewal
                return renewed

        done = rollback("company-a", RollbackPorts(_Stalls(), memory, clock, LEASE, chunk=2))  # type: ignore[arg-type]
        job = _job(store, "job-1")
        assert renewals == [1, 2, 3, 4]  # chunk 1's delete waited for a second renewal
        assert (done.deleted, job.status, job.logs_deleted) == (5, ROLLED_BACK, 5)

    def test_a_hold_half_spent_while_the_wall_clock_stepped_back_is_renewed_again(
        self, store: JobStore
    ) -> None:
        """As above, and during the stall the host's wall clock is set back by as long (NTP, an
        operator): the duration is on its monotonic clock, so the hold is renewed again before the
        delete all the same. On the wall clock the stall measured nothing and the delete went out
        on a hold with less than half of it left (renewals [1, 2, 3])."""
        memory, clock = _five_logs(store)
        host = FixedClock(clock.now())
        renewals: list[int] = []

        class _Stalls:
            def __getattr__(self, name: str) -> Any:
                return getattr(store, name)

            def renew_rollback(self, job_id: str, **kwargs: Any) -> Any:
                renewed = store.renew_rollback(job_id, **kwargs)
                renewals.append(kwargs["chunk"])
                if len(renewals) == 1:
                    clock.advance(LEASE * 0.6)  # the process stalls after its first renewal
                    host.advance(LEASE * 0.6)
                    host.set(host.now() - LEASE * 0.6)  # and its wall clock is set back as long
                return renewed

        done = rollback("company-a", RollbackPorts(_Stalls(), memory, host, LEASE, chunk=2))  # type: ignore[arg-type]
        job = _job(store, "job-1")
        assert renewals == [1, 2, 3, 4]  # chunk 1's delete waited for a second renewal
        assert (done.deleted, job.status, job.logs_deleted) == (5, ROLLED_BACK, 5)

    def test_a_renewal_counts_its_chunk_once_and_only_for_the_holder(self, store: JobStore) -> None:
        """``renew_rollback``: retried (a lost acknowledgement) it adds nothing again; another
        owner, or a job no longer rolling back, is ``LeaseHeld`` with nothing written."""
        store.create(migration_job(status=COMPLETED, logs_deleted=1))
        read = _job(store, "job-1")
        held = store.hold_rollback(
            attrs.evolve(read, status=ROLLING_BACK), {COMPLETED}, owner="rollback:a", ttl=LEASE
        )
        assert held is not None
        for _ in range(2):
            renewed = store.renew_rollback("job-1", owner="rollback:a", ttl=LEASE, deleted=3, chunk=1)
            assert (renewed.logs_deleted, renewed.lease_owner) == (4, "rollback:a")
        renewed = store.renew_rollback("job-1", owner="rollback:a", ttl=LEASE, deleted=2, chunk=2)
        assert renewed.logs_deleted == 6
        with pytest.raises(LeaseHeld):
            store.renew_rollback("job-1", owner="rollback:b", ttl=LEASE, deleted=9, chunk=3)
        assert _job(store, "job-1").logs_deleted == 6
        with pytest.raises(JobNotFound):
            store.renew_rollback("job-9", owner="rollback:a", ttl=LEASE, deleted=1, chunk=1)


class TestTheChunkInFlight:
    """A rollback killed (or frozen) between recording a chunk and counting it leaves the chunk in
    flight; the rollback that takes the hold over adopts it, sends its delete again and counts all
    of it, and the first one's count is closed: ``logs_deleted`` is exact whichever way it ended."""

    def test_a_rollback_killed_after_a_chunks_delete_is_counted_exactly_by_the_next(
        self, store: JobStore
    ) -> None:
        """kill -9 right after its third delete returned, before the renewal that would count it:
        the next rollback, once the hold expired, adopts that chunk and counts its log. Before,
        ``logs_deleted`` stayed 4 of the account's 5 logs."""
        memory, clock = _five_logs(store)
        first = _killed_after_the_third_delete(store, memory, clock)
        held = _job(store, "job-1")
        assert (held.status, held.logs_deleted, memory.count_migrated("company-a")) == (ROLLING_BACK, 4, 0)
        second = _Chunks(memory, lambda _: None)
        done = rollback("company-a", RollbackPorts(store, second, clock, LEASE, chunk=2))
        job = _job(store, "job-1")
        assert second.sent == [first.sent[-1]]  # the chunk in flight sent again, nothing else left
        assert (done.deleted, job.status, job.logs_deleted, job.lease_owner) == (0, ROLLED_BACK, 5, None)
        again = rollback("company-a", RollbackPorts(store, memory, clock, LEASE, chunk=2))
        assert (again.deleted, _job(store, "job-1").logs_deleted) == (0, 5)  # adopted once only

    def test_a_delete_whose_answer_is_lost_to_a_store_error_is_counted_by_the_next(
        self, store: JobStore
    ) -> None:
        """The store gone after the third delete was applied, its answer not seen: the rollback lets
        go of its hold with that chunk left in flight, uncounted; the next adopts it. Before, the
        chunk's log was deleted and never counted (4 of 5)."""
        memory, clock = _five_logs(store)

        answer_lost = _Chunks(memory, _raise_after_delete(3, StoreUnavailable("interrupted")))
        with pytest.raises(StoreUnavailable):
            rollback("company-a", RollbackPorts(store, answer_lost, clock, LEASE, chunk=2))
        held = _job(store, "job-1")
        assert (held.status, held.logs_deleted, held.lease_owner) == (ROLLING_BACK, 4, None)
        done = rollback("company-a", RollbackPorts(store, memory, clock, LEASE, chunk=2))
        job = _job(store, "job-1")
        assert (done.deleted, job.status, job.logs_deleted) == (0, ROLLED_BACK, 5)

    def test_a_delete_whose_answer_is_lost_to_a_ctrl_c_is_counted_at_once(self, store: JobStore) -> None:
        """Ctrl-C after the third delete was applied, its answer not seen: letting go sends it again
        (it finds nothing) and counts the whole chunk: 5 while the job is still ``rolling_back``; the
        next rollback has nothing to adopt and keeps 5."""
        memory, clock = _five_logs(store)
        answer_lost = _Chunks(memory, _raise_after_delete(3, KeyboardInterrupt()))
        with pytest.raises(KeyboardInterrupt):
            rollback("company-a", RollbackPorts(store, answer_lost, clock, LEASE, chunk=2))
        held = _job(store, "job-1")
        assert (held.status, held.logs_deleted, held.lease_owner) == (ROLLING_BACK, 5, None)
        assert answer_lost.sent[-1] == answer_lost.sent[-2]  # the same chunk sent again
        done = rollback("company-a", RollbackPorts(store, memory, clock, LEASE, chunk=2))
        job = _job(store, "job-1")
        assert (done.deleted, job.status, job.logs_deleted) == (0, ROLLED_BACK, 5)

    def test_a_rollback_frozen_before_its_delete_and_taken_over_is_counted_once(
        self, store: JobStore
    ) -> None:
        """Frozen after the renewal that recorded its second chunk, before sending its delete; its
        hold expires and a second rollback takes it over, adopts that chunk (deletes and counts it),
        deletes the rest and ends the job. The first then sends its late delete (it finds nothing)
        and reads no log left; its finish adds nothing and, the job ended by the second, it ends as
        a success (``usecases.rollback``): 5 of 5, not 7."""
        memory, clock = _five_logs(store)
        second: list[RollbackResult] = []

        class _FrozenBeforeTheSend(_Chunks):
            def delete_migrated_chunk(self, company_sso_id: str, chunk: Sequence[object]) -> int:
                if len(self.sent) == 1:  # the second delete: the process froze before sending it
                    second.append(rollback("company-a", RollbackPorts(store, memory, clock, LEASE, chunk=2)))
                return super().delete_migrated_chunk(company_sso_id, chunk)

        first = _FrozenBeforeTheSend(memory, lambda _: None)
        late = rollback("company-a", RollbackPorts(store, first, clock, -LEASE, chunk=2))
        job = _job(store, "job-1")
        assert late.deleted == 2  # its first chunk: the second's delete took the other
        assert [r.deleted for r in second] == [3]  # the adopted chunk's 2, then the last log
        assert (job.status, job.logs_deleted, job.lease_owner) == (ROLLED_BACK, 5, None)
        assert memory.count_migrated("company-a") == 0

    def test_adopting_takes_another_rollbacks_chunk_once_and_closes_its_count(self, store: JobStore) -> None:
        """``adopt_rollback_chunk``: nothing while none is recorded; another's chunk in flight once
        (a retry gets it again, nothing added twice); that one's ``finish_rollback`` then adds
        nothing; a chunk whose rollback already counted itself is not adopted."""
        store.create(migration_job(status=COMPLETED))
        read = _job(store, "job-1")
        rolling = attrs.evolve(read, status=ROLLING_BACK)
        first = store.hold_rollback(rolling, {COMPLETED}, owner="rollback:a", ttl=-LEASE)
        assert first is not None
        assert list(store.adopt_rollback_chunk("job-1", owner="rollback:a")) == []
        store.renew_rollback("job-1", owner="rollback:a", ttl=-LEASE, deleted=0, chunk=1, sending=["x", "y"])
        assert list(store.adopt_rollback_chunk("job-1", owner="rollback:b")) == []  # not b's hold
        assert store.hold_rollback(rolling, {ROLLING_BACK}, owner="rollback:b", ttl=LEASE) is not None
        for _ in range(2):
            assert list(store.adopt_rollback_chunk("job-1", owner="rollback:b")) == ["x", "y"]
        late = store.finish_rollback(attrs.evolve(first, status=ROLLED_BACK), 2, token="rollback:a")
        assert late is not None
        assert (late.status, late.logs_deleted, late.lease_owner) == (ROLLING_BACK, 0, "rollback:b")
        store.renew_rollback("job-1", owner="rollback:b", ttl=LEASE, deleted=2, chunk=1, sending=["z"])
        done = store.finish_rollback(attrs.evolve(first, status=ROLLED_BACK), 1, token="rollback:b")
        assert done is not None
        assert (done.status, done.logs_deleted) == (ROLLED_BACK, 3)
        # A rollback that counted its own chunk (its finish ran first) leaves nothing to adopt.
        store.create(migration_job("job-2", status=COMPLETED, company="company-b"))
        other = attrs.evolve(_job(store, "job-2"), status=ROLLING_BACK)
        assert store.hold_rollback(other, {COMPLETED}, owner="rollback:c", ttl=-LEASE) is not None
        store.renew_rollback("job-2", owner="rollback:c", ttl=-LEASE, deleted=0, chunk=1, sending=["w"])
        assert store.hold_rollback(other, {ROLLING_BACK}, owner="rollback:d", ttl=LEASE) is not None
        counted = store.finish_rollback(attrs.evolve(other, status=ROLLED_BACK), 1, token="rollback:c")
        assert counted is not None
        assert counted.logs_deleted == 1
        assert list(store.adopt_rollback_chunk("job-2", owner="rollback:d")) == []
        with pytest.raises(JobNotFound):
            store.adopt_rollback_chunk("job-9", owner="rollback:d")


def _job(store: JobStore, job_id: str) -> MigrationJob:
    """The stored job of that id, whether or not it is the account's latest."""
    found = store.get(job_id) if isinstance(store, MongoJobStore) else None
    if isinstance(store, InMemoryJobStore):
        found = next((job for job in store.jobs if job.job_id == job_id), None)
    assert found is not None
    return found


class TestAdoptionCutOff:
    """A rollback cut off (Ctrl-C, a store gone) before it has adopted the chunk a dead rollback left
    in flight leaves that chunk recorded for the next one, whose count is then exact (5 of 5)."""

    @pytest.mark.parametrize("applied", [False, True])
    @pytest.mark.parametrize("error", [KeyboardInterrupt, StoreUnavailable])
    def test_an_error_in_adopt_keeps_the_chunk_for_the_next(
        self, store: JobStore, error: type[BaseException], applied: bool
    ) -> None:
        memory, clock = _five_logs(store)
        _killed_after_the_third_delete(store, memory, clock)
        assert _job(store, "job-1").logs_deleted == 4

        class _AdoptFails:
            def __init__(self, inner: JobStore) -> None:
                self.inner = inner

            def __getattr__(self, name: str) -> Any:
                return getattr(self.inner, name)

            def adopt_rollback_chunk(self, job_id: str, *, owner: str) -> Sequence[object]:
                if applied:  # the adoption stored, its answer lost
                    self.inner.adopt_rollback_chunk(job_id, owner=owner)
                raise error("cut off while adopting")

        with pytest.raises(error):
            rollback(
                "company-a", RollbackPorts(cast(JobStore, _AdoptFails(store)), memory, clock, LEASE, chunk=2)
            )
        done = rollback("company-a", RollbackPorts(store, memory, clock, LEASE, chunk=2))
        job = _job(store, "job-1")
        assert (job.status, job.logs_deleted) == (ROLLED_BACK, 5), (done, job.logs_deleted)

    def test_an_error_after_the_hold_before_adopting_keeps_the_chunk(self, store: JobStore) -> None:
        """Cut off between taking the hold and adopting (its check for a newer job): nothing adopted,
        so the dead rollback's record is not its to clear."""
        memory, clock = _five_logs(store)
        _killed_after_the_third_delete(store, memory, clock)

        class _SecondLatestFails:
            def __init__(self, inner: JobStore) -> None:
                self.inner = inner
                self.calls = 0

            def __getattr__(self, name: str) -> Any:
                return getattr(self.inner, name)

            def latest(self, company_sso_id: str) -> Any:
                self.calls += 1
                if self.calls == 2:
                    raise KeyboardInterrupt
                return self.inner.latest(company_sso_id)

        with pytest.raises(KeyboardInterrupt):
            rollback(
                "company-a",
                RollbackPorts(cast(JobStore, _SecondLatestFails(store)), memory, clock, LEASE, chunk=2),
            )
        rollback("company-a", RollbackPorts(store, memory, clock, LEASE, chunk=2))
        assert _job(store, "job-1").logs_deleted == 5


class _Whole:
    """An account's migrated logs deleted in one ``delete_migrated`` (a store without chunks, as
    the JSONL sink) over an in-memory store; ``after_delete`` runs once that delete was applied
    (its answer not yet seen). ``before_delete``: the process stops before sending it."""

    def __init__(
        self,
        logs: MigratedLogs,
        after_delete: Callable[[], None] = lambda: None,
        before_delete: Callable[[], None] = lambda: None,
    ) -> None:
        self.logs = logs
        self.after_delete = after_delete
        self.before_delete = before_delete

    def delete_migrated(self, company_sso_id: str) -> int:
        self.before_delete()
        deleted = self.logs.delete_migrated(company_sso_id)
        self.after_delete()
        return deleted

    def count_migrated(self, company_sso_id: str) -> int:
        return self.logs.count_migrated(company_sso_id)


def _raise(error: BaseException) -> Callable[[], None]:
    def stop() -> None:
        raise error

    return stop


def _clean_count(store: JobStore) -> int:
    """``logs_deleted`` of a clean rollback of 5 logs without chunks (company-b's job-b)."""
    store.create(migration_job("job-b", status=COMPLETED, company="company-b"))
    memory = InMemoryActivityLogStore()
    memory.insert_batch([activity_log(i, company="company-b") for i in range(1, 6)])
    rollback("company-b", RollbackPorts(store, _Whole(memory), FixedClock(T0), LEASE))
    count = _job(store, "job-b").logs_deleted
    assert count == 5
    return count


class TestWholeAccountDeletes:
    """A whole-account delete (a store without chunks, or a chunk its store would not delete) is
    recorded in flight with the count before it (``WholeAccountDelete``), as a chunk is; stopped
    right after that delete (``kill -9``, or an error that loses its answer), the next rollback
    adopts it and ends with the count of a clean rollback. Before, ``logs_deleted`` stayed 0."""

    @pytest.mark.parametrize("error", [_Killed, KeyboardInterrupt, StoreUnavailable])
    def test_a_store_without_chunks_stopped_right_after_its_delete_is_counted_by_the_next(
        self, store: JobStore, error: type[BaseException]
    ) -> None:
        memory, clock = _five_logs(store)
        with pytest.raises(error):
            rollback("company-a", RollbackPorts(store, _Whole(memory, _raise(error())), clock, -LEASE))
        held = _job(store, "job-1")
        assert (held.status, held.logs_deleted or 0, memory.count_migrated("company-a")) == (
            ROLLING_BACK,
            0,
            0,
        )
        done = rollback("company-a", RollbackPorts(store, _Whole(memory), clock, LEASE))
        job = _job(store, "job-1")
        assert (done.deleted, job.status, job.logs_deleted) == (0, ROLLED_BACK, _clean_count(store))
        again = rollback("company-a", RollbackPorts(store, _Whole(memory), clock, LEASE))
        assert (again.deleted, _job(store, "job-1").logs_deleted) == (0, 5)  # adopted once only

    def test_one_stopped_before_its_delete_went_out_is_counted_once(self, store: JobStore) -> None:
        """Killed after the renewal that recorded it, before its delete was sent: the next deletes
        all 5 itself, and counts them once (not the count before plus its own delete: 10)."""
        memory, clock = _five_logs(store)
        with pytest.raises(_Killed):
            rollback(
                "company-a",
                RollbackPorts(store, _Whole(memory, before_delete=_raise(_Killed())), clock, -LEASE),
            )
        assert memory.count_migrated("company-a") == 5
        done = rollback("company-a", RollbackPorts(store, _Whole(memory), clock, LEASE))
        assert (done.deleted, _job(store, "job-1").logs_deleted) == (5, _clean_count(store))

    def test_a_chunk_its_store_will_not_delete_stops_the_rollback_before_any_whole_delete(
        self, store: JobStore
    ) -> None:
        """A store that deletes none of a chunk and gives the same chunk again: the rollback stops
        ``StoreUnavailable`` once it read it again, sends no delete of the whole account (one sent
        by a process paused past its hold could take a newer job's logs) and lets go of its hold,
        the job ``rolling_back``; run again over a store that deletes, it ends with the 5 logs
        counted. Before, it deleted the whole account in one delete after that chunk."""
        memory, clock = _five_logs(store)

        class _Stuck(_Chunks):
            def delete_migrated_chunk(self, company_sso_id: str, chunk: Sequence[object]) -> int:
                self.sent.append(list(chunk))
                return 0

        first = _Stuck(memory, lambda _: None)
        with pytest.raises(StoreUnavailable, match="deleted none of a chunk of 2"):
            rollback("company-a", RollbackPorts(store, first, clock, LEASE, chunk=2))
        assert (len(first.sent), "all" in first.sent, memory.count_migrated("company-a")) == (1, False, 5)
        held = _job(store, "job-1")
        assert (held.status, held.lease_owner, held.logs_deleted or 0) == (ROLLING_BACK, None, 0)
        done = rollback("company-a", RollbackPorts(store, memory, clock, LEASE, chunk=2))
        job = _job(store, "job-1")
        assert (done.deleted, job.status, job.logs_deleted) == (5, ROLLED_BACK, 5)

    @pytest.mark.parametrize("applied", [True, False])
    def test_a_whole_delete_adopted_over_a_store_with_chunks_is_finished_in_chunks(
        self, store: JobStore, applied: bool
    ) -> None:
        """A whole-account delete left in flight (a store without chunks, or an earlier version's
        fallback) and killed after it was applied or before it was sent: the rollback that takes
        the hold over with a store with chunks counts what it took, deletes the rest chunk by
        chunk, and sends no whole-account delete of its own; 5 counted either way. Before, it sent
        one."""
        memory, clock = _five_logs(store)
        stop = {"after_delete": _raise(_Killed())} if applied else {"before_delete": _raise(_Killed())}
        with pytest.raises(_Killed):
            rollback("company-a", RollbackPorts(store, _Whole(memory, **stop), clock, -LEASE))
        assert memory.count_migrated("company-a") == (0 if applied else 5)
        chunks = _Chunks(memory, lambda _: None)
        done = rollback("company-a", RollbackPorts(store, chunks, clock, LEASE, chunk=2))
        assert "all" not in chunks.sent
        job = _job(store, "job-1")
        assert (done.deleted, job.status, job.logs_deleted) == (0 if applied else 5, ROLLED_BACK, 5)

    def test_the_jsonl_sink_killed_right_after_its_rewrite_is_counted_by_the_next(
        self, store: JobStore, tmp_path: Path
    ) -> None:
        """The JSONL sink's delete (one atomic rewrite) applied, then ``kill -9``: the dead process's
        file lock goes with it; the next process opens the file again (0 logs of the account left)
        and its rollback counts the 5 the first one's rewrite took."""
        store.create(migration_job(status=COMPLETED))
        path = tmp_path / "out.jsonl"
        with JsonlActivityLogSink(path) as sink:
            sink.insert_batch([activity_log(i) for i in range(1, 6)])
        dying = JsonlActivityLogSink(path)
        try:
            with pytest.raises(_Killed):
                rollback(
                    "company-a",
                    RollbackPorts(store, _Whole(dying, _raise(_Killed())), FixedClock(T0), -LEASE),
                )
        finally:
            dying.close()  # the process is gone: so is its lock on the file
        with JsonlActivityLogSink(path) as sink:
            assert sink.count_migrated("company-a") == 0
            done = rollback("company-a", RollbackPorts(store, sink, FixedClock(T0), LEASE))
        job = _job(store, "job-1")
        assert (done.deleted, job.status, job.logs_deleted) == (0, ROLLED_BACK, 5)
