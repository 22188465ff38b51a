"""``ports.JobStore``: a sharded job's end reports the sums of its shards as they stand at that end.

On every implementation (in memory, MongoDB on mongomock, on the wire-protocol emulator and on a
real server when configured): a shard's batch saved between the end's read of the job and its write
is counted in the ended job's figures, which are the sums of its shards' entries.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterator
from typing import Any, cast

import attrs
import pytest

from crm_audit_transform.domain import ScopeBounds
from crm_audit_transform.jobs import CANCELLED, HALTED, IN_PROGRESS, MigrationJob
from crm_audit_transform.ports import JobStore
from crm_audit_transform.tally import Tally
from crm_audit_transform.testing import FixedClock
from crm_audit_transform.usecases.cancel import cancel
from crm_audit_transform.usecases.settings import RunSettings
from crm_audit_transform.usecases.shards import settle, split_shards
from crm_audit_transform.usecases.status import migration_status
from support.job_stores import STORE_PARAMS, empty_job_store
from support.mongo import T0, migration_job

LEASE = dt.timedelta(minutes=2)


@pytest.fixture(params=STORE_PARAMS)
def store(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[JobStore]:
    """An empty job store of each implementation."""
    yield from empty_job_store(request, monkeypatch)


def running_job(store: JobStore) -> MigrationJob:
    """A two-shard job over ids 1..400 with both shards leased and 50 rows counted in each."""
    shards = split_shards(ScopeBounds(1, 400, T0, 400), 2)
    job = attrs.evolve(migration_job(), first_audit_id=1, max_audit_id=400, last_audit_id=0, shards=shards)
    store.create(job)
    for index, owner in enumerate(("runner-0", "runner-1")):
        entry = store.acquire_shard_lease(job.job_id, index, owner, LEASE).shards[index]
        moved = attrs.evolve(entry, last_audit_id=entry.after_id + 50, tally=Tally(processed=50, migrated=50))
        store.save_shard_progress(job.job_id, moved, owner, LEASE)
    return job


class ShardBatchBeforeTheWrite:
    """A job store where shard 1's runner saves a batch of 30 rows (3 failed) between a status
    change's read of the job and its write."""

    def __init__(self, inner: JobStore) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def transition(self, job: MigrationJob, expected: Collection[str], **mode: Any) -> MigrationJob | None:
        stored = self.inner.latest(job.company_sso_id)
        assert stored is not None
        entry = stored.shards[1]
        batch = Tally(processed=30, migrated=27, failed={"write_rejected": 3})
        moved = attrs.evolve(entry, last_audit_id=entry.last_audit_id + 30, tally=entry.tally + batch)
        self.inner.save_shard_progress(job.job_id, moved, "runner-1", LEASE)
        return self.inner.transition(job, expected, **mode)


class TestAShardedJobsEnd:
    def test_a_cancel_counts_the_batch_saved_after_its_read(self, store: JobStore) -> None:
        """The cancelled job's figures, as written and as ``status`` reads them, are its shards' sums
        with that batch: 130 rows, 3 failed."""
        job = running_job(store)
        racing = cast(JobStore, ShardBatchBeforeTheWrite(store))
        cancelled = cancel(job.company_sso_id, jobs=racing, clock=FixedClock(T0))
        assert cancelled.status == CANCELLED
        assert (cancelled.tally.processed, cancelled.tally.failed_total, cancelled.last_audit_id) == (
            130,
            3,
            50,
        )
        assert store.latest(job.company_sso_id) == cancelled
        shown = migration_status(job.company_sso_id, store).as_dict()
        assert (shown["records_processed"], shown["records_failed"]) == (130, 3)

    def test_a_halt_counts_the_batch_another_shard_saved_after_its_read(self, store: JobStore) -> None:
        """Shard 0 halts; settle's read is one batch of shard 1 behind its write: the halted job
        counts that batch."""
        job = running_job(store)
        first = store.latest(job.company_sso_id)
        assert first is not None
        halted = attrs.evolve(first.shards[0], status=HALTED, halted_reason="failure rate 0.2 > 0.1")
        store.save_shard_progress(job.job_id, halted, "runner-0", None)
        racing = cast(JobStore, ShardBatchBeforeTheWrite(store))
        ended = settle(job.job_id, job.company_sso_id, racing, FixedClock(T0), RunSettings())
        assert ended.status == HALTED
        assert (ended.tally.processed, ended.tally.failed_total, ended.shards[1].last_audit_id) == (
            130,
            3,
            280,
        )
        assert store.latest(job.company_sso_id) == ended
        assert (
            store.transition(attrs.evolve(ended, status=CANCELLED), {IN_PROGRESS}, status_only=True) is None
        )
