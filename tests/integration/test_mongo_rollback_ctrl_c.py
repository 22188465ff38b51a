"""A rollback stopped by Ctrl-C over MongoDB: the chunk in flight is sent again once, not through the
store's retries, so a database that hangs cannot hold the stopped rollback; the count stays exact."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from pymongo.errors import NetworkTimeout

from crm_audit_adapters.mongo import MongoActivityLogStore, MongoJobStore, RetryPolicy, apply_migration
from crm_audit_transform.jobs import COMPLETED, ROLLED_BACK, ROLLING_BACK
from crm_audit_transform.testing import FixedClock
from crm_audit_transform.usecases.rollback import RollbackPorts, rollback
from support.mongo import T0, activity_log, migration_job

NO_WAIT = RetryPolicy(attempts=3, sleep=lambda _: None)
LEASE = dt.timedelta(minutes=5)


class HangsAfterTheCtrlC:
    """``activity_logs`` whose second ``delete_many`` is cut by Ctrl-C before it is applied, and
    whose every later one times out (a database that hangs): counted in ``after``."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.deletes = 0
        self.after = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def delete_many(self, query: dict[str, Any]) -> Any:
        self.deletes += 1
        if self.deletes == 1:
            return self._inner.delete_many(query)
        if self.deletes == 2:
            raise KeyboardInterrupt
        self.after += 1
        raise NetworkTimeout("timed out")


@pytest.fixture
def jobs(mongo_db: Any) -> MongoJobStore:
    apply_migration(mongo_db, "up")
    store = MongoJobStore(mongo_db.crm_activity_log_migration_jobs, retry=NO_WAIT)
    store.create(migration_job(status=COMPLETED))
    MongoActivityLogStore(mongo_db.activity_logs, retry=NO_WAIT).insert_batch(
        [activity_log(n) for n in range(1, 6)]
    )
    return store


def test_a_ctrl_c_sends_its_chunk_again_once_to_a_store_that_hangs(
    jobs: MongoJobStore, mongo_db: Any
) -> None:
    """Ctrl-C in the second chunk's delete, the database hanging from then on: letting go sends that
    chunk once (no retry, no backoff wait) and gives the hold back with the first chunk counted;
    before, it waited through all four attempts first. The next rollback adopts the chunk: 5 of 5."""
    hung = HangsAfterTheCtrlC(mongo_db.activity_logs)
    waits: list[float] = []
    logs = MongoActivityLogStore(hung, retry=RetryPolicy(attempts=4, sleep=waits.append))
    with pytest.raises(KeyboardInterrupt):
        rollback("company-a", RollbackPorts(jobs, logs, FixedClock(T0), LEASE, chunk=2))
    assert (hung.after, waits) == (1, [])
    held = jobs.latest("company-a")
    assert held is not None
    # What status shows is what is known: the first chunk counted, the hold given back.
    assert (held.status, held.logs_deleted, held.lease_owner) == (ROLLING_BACK, 2, None)
    healthy = MongoActivityLogStore(mongo_db.activity_logs, retry=NO_WAIT)
    assert healthy.count_migrated("company-a") == 3
    done = rollback("company-a", RollbackPorts(jobs, healthy, FixedClock(T0), LEASE, chunk=2))
    job = jobs.latest("company-a")
    assert job is not None
    assert (done.deleted, job.status, job.logs_deleted) == (3, ROLLED_BACK, 5)
    assert healthy.count_migrated("company-a") == 0


def test_a_ctrl_c_whose_resend_succeeds_counts_the_chunk_at_once(jobs: MongoJobStore, mongo_db: Any) -> None:
    """The same Ctrl-C with the database well: the one attempt deletes the chunk, and it is counted
    as the hold is given back (4), as the ``INTERRUPTED`` line says."""

    class CutOnce(HangsAfterTheCtrlC):
        def delete_many(self, query: dict[str, Any]) -> Any:
            self.deletes += 1
            if self.deletes == 2:
                raise KeyboardInterrupt
            return self._inner.delete_many(query)

    logs = MongoActivityLogStore(CutOnce(mongo_db.activity_logs), retry=NO_WAIT)
    with pytest.raises(KeyboardInterrupt):
        rollback("company-a", RollbackPorts(jobs, logs, FixedClock(T0), LEASE, chunk=2))
    held = jobs.latest("company-a")
    assert held is not None
    assert (held.status, held.logs_deleted, held.lease_owner) == (ROLLING_BACK, 4, None)
