"""Job stores for the tests of ``JobStore``: an empty one of each implementation, a MongoDB one over a
wrapped collection, and a sharded job to put in them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs
import pytest

from crm_audit_adapters.mongo import MongoJobStore, RetryPolicy, apply_migration
from crm_audit_transform.domain import ScopeBounds
from crm_audit_transform.jobs import MigrationJob
from crm_audit_transform.ports import JobStore
from crm_audit_transform.testing import FixedClock, InMemoryJobStore
from crm_audit_transform.usecases.shards import split_shards
from support.mongo import T0, fresh_database, migration_job, mongo_backends

STORE_PARAMS: list[Any] = ["in_memory", *mongo_backends()]
"""The ``params`` of a ``store`` fixture: in memory, then each MongoDB backend."""

DATABASE = pytest.StashKey[Any]()
"""The database under a test's MongoDB store (absent in memory), for a second store over it."""


def empty_job_store(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[JobStore]:
    """An empty store of ``request.param`` for a fixture to yield from: a ``FixedClock`` at ``T0`` in
    memory and on mongomock (which does not evaluate ``$$NOW``), the server's clock elsewhere; on
    MongoDB migration 035's indexes are applied and the database is kept in the test's ``DATABASE``."""
    if request.param == "in_memory":
        yield InMemoryJobStore(clock=FixedClock(T0))
        return
    for db in fresh_database(request, monkeypatch, request.param):
        apply_migration(db, "up")
        request.node.stash[DATABASE] = db
        yield MongoJobStore.in_database(db, clock=FixedClock(T0) if request.param == "mongomock" else None)


NO_WAIT = RetryPolicy(attempts=3, sleep=lambda _: None)
"""A MongoDB store's retries, three attempts with no sleep between them."""


def store_over(collection: Any, jobs: Any) -> MongoJobStore:
    """A ``MongoJobStore`` over ``collection`` (``jobs`` itself or a wrapper of it), retrying with
    ``NO_WAIT``: mongomock with expiries on a ``FixedClock`` at ``T0`` (it does not evaluate
    ``$$NOW``); the emulator (or a server) on ``$$NOW``."""
    clock = FixedClock(T0) if type(jobs).__module__.startswith("mongomock") else None
    return MongoJobStore(collection, retry=NO_WAIT, clock=clock)


def sharded_job() -> MigrationJob:
    """A new two-shard job over audit ids 1..400, nothing read yet."""
    shards = split_shards(ScopeBounds(1, 400, T0, 400), 2)
    return attrs.evolve(migration_job(), first_audit_id=1, max_audit_id=400, last_audit_id=0, shards=shards)
