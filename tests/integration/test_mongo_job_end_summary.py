"""A sharded job's end carries the exact sums of its shards in the stored document's top level.

Readers of the raw document (dashboards, the CDP's own status) see ``records_*``, ``tally``,
``progress_pct`` and ``last_audit_id`` there. Each test stages a shard batch that no summary has
counted yet, then ends the job (settle's ``completed`` or ``halted``, a cancel): every state of the
document a reader could meet once the status is an end holds the shards' sums, and so does the
document of a process killed right after the write of the end.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from typing import Any

import attrs
import pytest

from crm_audit_adapters.mongo import MongoJobStore, apply_migration
from crm_audit_adapters.mongo.documents import decode_job, encode_job
from crm_audit_transform.jobs import CANCELLED, COMPLETED, HALTED, IN_PROGRESS, MigrationJob
from crm_audit_transform.ports import JobStore
from crm_audit_transform.tally import Tally
from crm_audit_transform.testing import FixedClock
from crm_audit_transform.usecases.cancel import cancel
from crm_audit_transform.usecases.settings import RunSettings
from crm_audit_transform.usecases.shards import settle
from crm_audit_transform.usecases.status import migration_status
from support.job_stores import sharded_job, store_over
from support.mongo import T0

TTL = dt.timedelta(minutes=2)
ENDED = (COMPLETED, HALTED, CANCELLED)
FIGURES = (
    "records_processed",
    "records_migrated",
    "records_skipped",
    "records_failed",
    "tally",
    "enrichment",
    "last_audit_id",
    "progress_pct",
    "failure_rate",
)
"""The top-level figures a reader of the raw document takes for the job's."""


def figures(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: doc.get(k) for k in FIGURES}


def shard_sums(doc: dict[str, Any]) -> dict[str, Any]:
    """The figures of ``doc`` as its shards' entries make them (``MigrationJob``'s own derivation)."""
    return figures(encode_job(decode_job(doc)))


class Watched:
    """A job collection that records the stored document after each write that stands: every state
    a reader of the raw document could meet."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.seen = inner, list[dict[str, Any]]()

    def __getattr__(self, name: str) -> Any:
        call = getattr(self.inner, name)
        if name not in ("find_one_and_update", "update_one", "replace_one"):
            return call

        def watched(*args: Any, **kwargs: Any) -> Any:
            answer = call(*args, **kwargs)
            self.seen.extend(self.inner.find({}))
            return answer

        return watched


class _Killed(BaseException):
    """The process killed (``kill -9``): no handler of the store's runs."""


class KilledAfterTheEnd:
    """A job collection whose process dies right after a write that stood and left the job ended."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        call = getattr(self.inner, name)
        if name not in ("find_one_and_update", "update_one", "replace_one"):
            return call

        def then_killed(*args: Any, **kwargs: Any) -> Any:
            answer = call(*args, **kwargs)
            if any(doc.get("status") in ENDED for doc in self.inner.find({})):
                raise _Killed
            return answer

        return then_killed


@pytest.fixture
def jobs(mongo_db: Any) -> Any:
    apply_migration(mongo_db, "up")
    return mongo_db.crm_activity_log_migration_jobs


def leased(jobs: Any) -> tuple[MongoJobStore, MigrationJob]:
    """A store over ``jobs`` holding a new ``sharded_job``, shard 0 leased by "a" and shard 1 by "b"."""
    store = store_over(jobs, jobs)
    job = sharded_job()
    store.create(job)
    store.acquire_shard_lease(job.job_id, 0, "a", TTL)
    store.acquire_shard_lease(job.job_id, 1, "b", TTL)
    return store, job


def _batch(store: MongoJobStore, job_id: str, shard: int, owner: str, *, to: int, **run: Any) -> None:
    """Shard ``shard``'s progress to id ``to``, one row counted per id behind it."""
    current = store.get(job_id)
    assert current is not None
    entry = current.shards[shard]
    rows = to - entry.after_id
    tally = Tally(processed=rows, migrated=rows - 1, skipped={"contact_not_found": 1})
    ttl = None if run.get("status", IN_PROGRESS) != IN_PROGRESS else TTL
    store.save_shard_progress(job_id, attrs.evolve(entry, last_audit_id=to, tally=tally, **run), owner, ttl)


class _Deferred:
    """A job collection whose ``update_one`` (the summary after a shard's write) waits in ``later``:
    a shard's process slowed down between its write and its summary."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.later = inner, list[Callable[[], object]]()

    def __getattr__(self, name: str) -> Any:
        if name != "update_one":
            return getattr(self.inner, name)

        def deferred(*args: Any, **kwargs: Any) -> None:
            self.later.append(lambda: self.inner.update_one(*args, **kwargs))

        return deferred


def stage_complete(jobs: Any) -> Callable[[JobStore], object]:
    """Shard 0 completed; shard 1 completes too, but its process is slow to set the summary after
    that write: settle (shard 0's runner, reading both completed) ends the job first."""
    store, job = leased(jobs)
    _batch(store, job.job_id, 0, "a", to=200, status=COMPLETED, finished_at=T0)
    _batch(store, job.job_id, 1, "b", to=300)
    slow = _Deferred(jobs)
    _batch(store_over(slow, jobs), job.job_id, 1, "b", to=400, status=COMPLETED, finished_at=T0)
    assert len(slow.later) == 1

    def end(ending: JobStore) -> object:
        settled = settle(job.job_id, job.company_sso_id, ending, FixedClock(T0), RunSettings())
        assert settled.status == COMPLETED
        for summary in slow.later:
            summary()  # the slow process's summary lands after the end
        return settled

    return end


def stage_halt(jobs: Any) -> Callable[[JobStore], object]:
    """Shard 0 halts; shard 1's batch lands after that halt's summary, before settle ends the job."""
    store, job = leased(jobs)
    _batch(store, job.job_id, 0, "a", to=120, status=HALTED, halted_reason="failure rate 0.2 > 0.1")
    _batch(store, job.job_id, 1, "b", to=260)

    def end(ending: JobStore) -> object:
        settled = settle(job.job_id, job.company_sso_id, ending, FixedClock(T0), RunSettings())
        assert settled.status == HALTED
        return settled

    return end


def stage_cancel(jobs: Any) -> Callable[[JobStore], object]:
    """Both shards run; shard 1's batch is not summarised yet when the operator cancels."""
    store, job = leased(jobs)
    _batch(store, job.job_id, 0, "a", to=90)
    _batch(store, job.job_id, 1, "b", to=230)

    def end(ending: JobStore) -> object:
        return cancel(job.company_sso_id, jobs=ending, clock=FixedClock(T0))

    return end


STAGES = {"completed": stage_complete, "halted": stage_halt, "cancelled": stage_cancel}


@pytest.mark.parametrize("end", sorted(STAGES))
class TestTheEndOfAShardedJob:
    def test_no_reader_meets_an_ended_job_with_figures_behind_its_shards(self, jobs: Any, end: str) -> None:
        """Every stored state whose status is an end holds the shards' sums (the end's status was
        written first and its summary after: a reader between met figures a batch behind)."""
        finish = STAGES[end](jobs)
        before = jobs.find_one({})
        assert figures(before) != shard_sums(before)  # a batch that no summary has counted yet
        watched = Watched(jobs)
        finish(store_over(watched, jobs))
        ended = [doc for doc in watched.seen if doc.get("status") in ENDED]
        assert ended
        for doc in ended:
            assert figures(doc) == shard_sums(doc)
        final = jobs.find_one({})
        assert final["status"] == end
        assert figures(final) == shard_sums(final)

    def test_a_process_killed_right_after_the_end_leaves_the_exact_figures(self, jobs: Any, end: str) -> None:
        """The end's write stood and the process died: no later write comes to correct the stored
        figures (they stayed a batch behind the shards for good)."""
        finish = STAGES[end](jobs)
        with pytest.raises(_Killed):
            finish(store_over(KilledAfterTheEnd(jobs), jobs))
        doc = jobs.find_one({})
        assert doc["status"] == end
        assert figures(doc) == shard_sums(doc)

    def test_status_shows_the_shards_sums_of_the_ended_job(self, jobs: Any, end: str) -> None:
        """``status`` (the CLI's text and ``--json``, the HTTP answer) reads the job's shards, and
        agrees with the stored top level once the job has ended."""
        finish = STAGES[end](jobs)
        store = store_over(jobs, jobs)
        finish(store)
        doc = jobs.find_one({})
        shown = migration_status(doc["company_sso_id"], store).as_dict()
        processed = sum(entry["tally"]["processed"] for entry in doc["shards"].values())
        assert shown["records_processed"] == processed == doc["records_processed"]
        assert shown["progress_pct"] == doc["progress_pct"]


class ShardWritesAfterReads:
    """A job collection where shard 1's runner saves a batch right after a ``find_one``, to the next
    of ``ids`` while any is left: a status change meets a shard write between its read and its write."""

    def __init__(self, inner: Any, store: MongoJobStore, job_id: str, ids: Iterable[int]) -> None:
        self.inner, self._store, self._job_id, self._ids = inner, store, job_id, iter(ids)

    def __getattr__(self, name: str) -> Any:
        call = getattr(self.inner, name)
        if name != "find_one":
            return call

        def then_batch(*args: Any, **kwargs: Any) -> Any:
            answer = call(*args, **kwargs)
            to = next(self._ids, None)
            if to is not None:
                _batch(self._store, self._job_id, 1, "b", to=to)
            return answer

        return then_batch


class TestAShardWriteBetweenTheReadAndTheEnd:
    def test_the_end_sums_again_and_counts_the_batch(self, jobs: Any) -> None:
        """A cancel whose read met one more shard batch before its write sums the shards again:
        the stored figures count that batch."""
        store = store_over(jobs, jobs)
        job = sharded_job()
        store.create(job)
        store.acquire_shard_lease(job.job_id, 1, "b", TTL)
        racing = ShardWritesAfterReads(jobs, store, job.job_id, [230, 250])
        cancelled = cancel(job.company_sso_id, jobs=store_over(racing, jobs), clock=FixedClock(T0))
        doc = jobs.find_one({})
        assert (doc["status"], doc["shards"]["1"]["last_audit_id"]) == (CANCELLED, 250)
        assert figures(doc) == shard_sums(doc)
        assert cancelled.tally.processed == doc["records_processed"] == 50

    def test_shards_that_write_under_every_try_do_not_hold_a_cancel_back(self, jobs: Any) -> None:
        """Shards that save a batch under every try: the cancel stands (a cancel must stop shards that
        write faster than a read and a write take), and the stored figures are the sums of the
        shards' entries as the cancel left them, since no shard saves once the job is cancelled."""
        store = store_over(jobs, jobs)
        job = sharded_job()
        store.create(job)
        store.acquire_shard_lease(job.job_id, 1, "b", TTL)
        racing = ShardWritesAfterReads(jobs, store, job.job_id, range(201, 400))
        cancelled = store_over(racing, jobs).transition(
            attrs.evolve(job, status=CANCELLED), {IN_PROGRESS}, status_only=True
        )
        assert cancelled is not None
        doc = jobs.find_one({})
        assert doc["status"] == CANCELLED
        assert figures(doc) == shard_sums(doc)
        # The shard saved batches under the summing tries, and saves none once the status stood.
        last = doc["shards"]["1"]["last_audit_id"]
        assert last > 210
        _batch(store, job.job_id, 1, "b", to=last + 1)
        after = jobs.find_one({})
        assert (after["shards"]["1"]["last_audit_id"], figures(after)) == (last, figures(doc))
