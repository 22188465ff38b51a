"""A resume fences on the job's cursor and counts as scalars, so a job document stored in another
shape than today's encoder writes (an older version's ``tally``) is resumed as any other.

The fence was whole ``tally`` and ``enrichment`` sub-documents: an equality match that only a
document with exactly the stored keys, in the stored order, meets. A job stored before ``tally``
had ``actors_degraded`` then never matched, and every resume ended ``LeaseHeld`` ("its leases
changed under each of 3 tries") while no lease was held.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import attrs
import pytest

from crm_audit_adapters.mongo import MongoJobStore
from crm_audit_adapters.mongo.indexes import apply_migration
from crm_audit_transform.jobs import HALTED, IN_PROGRESS
from crm_audit_transform.tally import Tally
from crm_audit_transform.testing import FixedClock
from support.mongo import T0, fresh_database, migration_job, mongo_backends

JOBS = "crm_activity_log_migration_jobs"


@pytest.mark.parametrize("backend", mongo_backends())
@pytest.mark.parametrize(
    "older",
    [
        {"$unset": {"tally.actors_degraded": ""}},
        {"$set": {"enrichment": {"skipped": {}, "keys_set": 0, "complete": 0, "patched": 0, "logs": 0}}},
    ],
    ids=["tally-without-actors_degraded", "enrichment-keys-in-another-order"],
)
def test_a_job_stored_in_an_older_shape_is_resumed(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, backend: Any, older: dict[str, Any]
) -> None:
    for db in fresh_database(request, monkeypatch, backend):
        apply_migration(db, "up")
        store = MongoJobStore.in_database(db, clock=FixedClock(T0) if backend == "mongomock" else None)
        store.create(migration_job(status=HALTED, last_audit_id=50, tally=Tally(processed=50, migrated=40)))
        db[JOBS].update_many({}, older)
        read = store.latest("company-a")
        assert read is not None
        resumed = attrs.evolve(read, status=IN_PROGRESS, halt_basis=read.tally)
        stored = store.transition(resumed, {HALTED}, unleased=True, resumed=True)
        assert stored is not None
        assert (stored.status, stored.tally, stored.last_audit_id) == (IN_PROGRESS, read.tally, 50)


@pytest.mark.parametrize("backend", mongo_backends())
def test_an_older_shaped_job_whose_counts_moved_is_still_not_resumed(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, backend: Any
) -> None:
    """The fence still holds on the scalars: a repair's count saved since the read stops the resume."""
    for db in fresh_database(request, monkeypatch, backend):
        apply_migration(db, "up")
        store = MongoJobStore.in_database(db, clock=FixedClock(T0) if backend == "mongomock" else None)
        store.create(migration_job(status=HALTED, last_audit_id=50, tally=Tally(processed=50, migrated=40)))
        db[JOBS].update_many({}, {"$unset": {"tally.actors_degraded": ""}})
        read = store.latest("company-a")
        assert read is not None
        db[JOBS].update_many({}, {"$set": {"tally.migrated": 45}})  # a repair counted 5 rows
        resumed = attrs.evolve(read, status=IN_PROGRESS, halt_basis=read.tally)
        assert store.transition(resumed, {HALTED}, unleased=True, resumed=True) is None
        latest = store.latest("company-a")
        assert latest is not None
        assert (latest.status, latest.tally.migrated) == (HALTED, 45)


@pytest.mark.parametrize("backend", mongo_backends())
def test_a_job_stored_before_rows_at_cursor_reads_as_its_cursor_covering_its_id(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, backend: Any
) -> None:
    """A job document without ``rows_at_cursor`` (stored before it) reads as 0: its cursor covers
    all of its id's rows, as a run then never ended a batch among them; a save writes the field."""
    for db in fresh_database(request, monkeypatch, backend):
        apply_migration(db, "up")
        store = MongoJobStore.in_database(db, clock=FixedClock(T0) if backend == "mongomock" else None)
        store.create(migration_job(status=IN_PROGRESS, last_audit_id=50, tally=Tally(processed=50)))
        db[JOBS].update_many({}, {"$unset": {"rows_at_cursor": ""}})
        assert "rows_at_cursor" not in db[JOBS].find_one({})
        read = store.latest("company-a")
        assert read is not None
        assert (read.last_audit_id, read.rows_at_cursor) == (50, 0)
        held = store.acquire_lease(read.job_id, "runner-1", dt.timedelta(minutes=5))
        saved = store.save_progress(attrs.evolve(held, last_audit_id=51, rows_at_cursor=4), "runner-1", None)
        assert (saved.last_audit_id, saved.rows_at_cursor) == (51, 4)
        assert db[JOBS].find_one({})["rows_at_cursor"] == 4


@pytest.mark.parametrize("backend", mongo_backends())
def test_a_job_stored_before_source_mark_reads_as_unmarked_and_runs(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, backend: Any
) -> None:
    """A job document without ``source_mark`` (stored before it) reads as None, which a run does not
    check; its lease and progress writes leave the field out as they found it."""
    for db in fresh_database(request, monkeypatch, backend):
        apply_migration(db, "up")
        store = MongoJobStore.in_database(db, clock=FixedClock(T0) if backend == "mongomock" else None)
        store.create(migration_job(status=IN_PROGRESS, last_audit_id=50, source_mark="sha256:1:" + "0" * 64))
        db[JOBS].update_many({}, {"$unset": {"source_mark": ""}})
        read = store.latest("company-a")
        assert read is not None
        assert read.source_mark is None
        held = store.acquire_lease(read.job_id, "runner-1", dt.timedelta(minutes=5))
        saved = store.save_progress(attrs.evolve(held, last_audit_id=51), "runner-1", None)
        assert (saved.last_audit_id, saved.source_mark) == (51, None)
