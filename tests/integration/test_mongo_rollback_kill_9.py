"""A rollback ``kill -9``-ed mid-chunk, over the wire (the emulator, or a real server when configured):
``status`` says how many logs may be gone beyond ``logs_deleted`` while the chunk is unfinished, and the
next rollback ends with the exact count and nothing unfinished."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from pymongo import MongoClient

from crm_audit_adapters.mongo import MongoActivityLogStore, MongoJobStore, apply_migration
from crm_audit_transform.errors import LeaseHeld
from crm_audit_transform.jobs import COMPLETED, ROLLED_BACK, ROLLING_BACK
from crm_audit_transform.usecases.rollback import RollbackPorts, rollback
from crm_audit_transform.usecases.status import migration_status
from support.mongo import activity_log, migration_job

LEASE_S = 2.0
"""Short, so the next rollback takes over the killed one's hold within the test."""

ROLLBACK_KILLED_MID_CHUNK = """
import datetime as dt, sys, time
from pymongo import MongoClient
from crm_audit_adapters.bootstrap.runtime import SystemClock
from crm_audit_adapters.mongo import MongoActivityLogStore, MongoJobStore
from crm_audit_transform.usecases.rollback import RollbackPorts, rollback

class StopsAfterTheSecondDelete:
    def __init__(self, inner):
        self._inner, self.deletes = inner, 0
    def __getattr__(self, name):
        return getattr(self._inner, name)
    def delete_many(self, *args, **kwargs):
        result = self._inner.delete_many(*args, **kwargs)
        self.deletes += 1
        if self.deletes == 2:  # the second chunk is gone, its count not yet written
            print("deleted", flush=True)
            time.sleep(600)
        return result

db = MongoClient(sys.argv[1], tz_aware=True)[sys.argv[2]]
jobs = MongoJobStore(db.crm_activity_log_migration_jobs)
logs = MongoActivityLogStore(StopsAfterTheSecondDelete(db.activity_logs))
lease = dt.timedelta(seconds=float(sys.argv[3]))
rollback("company-a", RollbackPorts(jobs, logs, SystemClock(), lease, chunk=2))
"""


class WallClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    def monotonic(self) -> float:
        return time.monotonic()


@pytest.fixture
def wire_db(shared_mongo_uri: str, wire_mongo_database: str) -> Iterator[Any]:
    with MongoClient(shared_mongo_uri, serverSelectionTimeoutMS=10_000, tz_aware=True) as client:
        yield client[wire_mongo_database]


def test_status_after_a_rollback_killed_mid_chunk_says_what_may_be_gone(
    wire_db: Any, shared_mongo_uri: str, wire_mongo_database: str
) -> None:
    """Killed after its second chunk's delete (2 + 2 of 5 gone, 2 counted): status shows
    ``logs_deleted`` 2 and up to 2 more in an unfinished chunk (before: 2, nothing said of the
    chunk); the next rollback adopts the chunk and ends at exactly 5, nothing unfinished."""
    apply_migration(wire_db, "up")
    jobs = MongoJobStore(wire_db.crm_activity_log_migration_jobs)
    jobs.create(migration_job(status=COMPLETED))
    healthy = MongoActivityLogStore(wire_db.activity_logs)
    healthy.insert_batch([activity_log(n) for n in range(1, 6)])
    with subprocess.Popen(
        [
            sys.executable,
            "-c",
            ROLLBACK_KILLED_MID_CHUNK,
            shared_mongo_uri,
            wire_mongo_database,
            str(LEASE_S),
        ],
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "deleted"
        finally:
            child.kill()  # SIGKILL: nothing after the delete runs
            child.wait(timeout=30)
    assert child.returncode == -9
    assert healthy.count_migrated("company-a") == 1

    killed = migration_status("company-a", jobs).as_dict()
    assert (killed["status"], killed["logs_deleted"], killed["logs_in_unfinished_chunk"]) == (
        ROLLING_BACK,
        2,
        2,
    )

    deadline = time.monotonic() + 30
    while True:
        try:
            rollback(
                "company-a", RollbackPorts(jobs, healthy, WallClock(), dt.timedelta(seconds=LEASE_S), chunk=2)
            )
            break
        except LeaseHeld:  # the killed one's hold, until it expires on the server's clock
            assert time.monotonic() < deadline, "the killed rollback's hold never expired"
            time.sleep(0.5)
    done = migration_status("company-a", jobs).as_dict()
    assert (done["status"], done["logs_deleted"], done["logs_in_unfinished_chunk"]) == (ROLLED_BACK, 5, None)
    assert healthy.count_migrated("company-a") == 0
