"""One live-lease rule: the core's ``jobs.lease_is_live`` and the MongoDB filters of ``mongo.leases``
agree on every shape a lease can be stored in, in both spellings — a query on a given time (what a
store with a ``Clock`` sends, mongomock's) and an ``$expr`` on the server's ``$$NOW`` (the emulator's
and a real server's) — and the job store's fenced transition follows it when a lease is handed back
between its write and its read."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any, cast

import attrs
import mongomock
import pytest

from crm_audit_adapters.mongo import MongoJobStore, apply_migration
from crm_audit_adapters.mongo.documents_types import MongoCollection
from crm_audit_adapters.mongo.leases import ANY_LIVE_ON_THE_SERVER, any_live, job_prefixes, none_live
from crm_audit_transform.domain import ScopeBounds
from crm_audit_transform.errors import LeaseHeld
from crm_audit_transform.jobs import (
    COMPLETED,
    ROLLING_BACK,
    MigrationJob,
    last_lease,
    lease_is_live,
    live_lease,
)
from crm_audit_transform.testing import FixedClock
from crm_audit_transform.usecases.shards import split_shards
from support.mongo import T0, migration_job

HOUR = dt.timedelta(hours=1)
LEASE = dt.timedelta(minutes=2)
MISSING = object()


def _lease(owner: object, expiry: object) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    if owner is not MISSING:
        entry["lease_owner"] = owner
    if expiry is not MISSING:
        entry["lease_expires_at"] = expiry
    return entry


def _documents(now: dt.datetime) -> list[dict[str, Any]]:
    """Every stored shape of a lease, on the job and on a shard (shards keyed by number)."""
    shapes = [
        ("live", "host:1", now + HOUR),
        ("expired", "host:1", now - HOUR),
        ("null-owner", None, now + HOUR),
        ("no-owner", MISSING, now + HOUR),
        ("null-expiry", "host:1", None),
        ("no-expiry", "host:1", MISSING),
        ("nothing", MISSING, MISSING),
        ("at-now", "host:1", now),  # an expiry at now is expired: "after now" is live
        ("string-expiry", "host:1", "2999-01-01"),  # no date: no lease, in both spellings
        ("number-expiry", "host:1", 32503680000000),
    ]
    docs: list[dict[str, Any]] = []
    for name, owner, expiry in shapes:
        docs.append({"_id": f"job-{name}", **_lease(owner, expiry)})
        idle = {"shard": 0, "lease_owner": None, "lease_expires_at": None}
        docs.append(
            {"_id": f"shard-{name}", "shards": {"0": idle, "1": {"shard": 1, **_lease(owner, expiry)}}}
        )
    return docs


def _live_by_the_core(doc: dict[str, Any], now: dt.datetime) -> bool:
    entries = [doc, *doc.get("shards", {}).values()]
    return any(
        lease_is_live(e.get("lease_owner"), _date_or_none(e.get("lease_expires_at")), now) for e in entries
    )


def _date_or_none(expiry: object) -> dt.datetime | None:
    """What the job codec makes of a stored expiry: a date, or no expiry at all."""
    return expiry if isinstance(expiry, dt.datetime) else None


class TestOneRule:
    def test_the_filters_select_what_the_core_rule_calls_live(self, mongo_db: Any) -> None:
        """any_live selects exactly the documents lease_is_live calls leased, none_live the others —
        as a query on a given time everywhere, as an $expr on $$NOW (and the any-shard $expr of
        indexes down) where the server evaluates it. Only "live" has a lease at all."""
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        docs = _documents(now)
        jobs = mongo_db.lease_shapes
        jobs.insert_many(docs)
        live = {doc["_id"] for doc in docs if _live_by_the_core(doc, now)}
        assert live == {"job-live", "shard-live"}
        everything = {doc["_id"] for doc in docs}
        prefixes = job_prefixes(2)
        spellings: list[dt.datetime | None] = [now]
        if not isinstance(mongo_db, mongomock.Database):
            spellings.append(None)  # $$NOW: an hour either side of this host's clock is no question
        for at in spellings:
            assert {d["_id"] for d in jobs.find(any_live(prefixes, at))} == live, at
            assert {d["_id"] for d in jobs.find(none_live(prefixes, at))} == everything - live, at
        if not isinstance(mongo_db, mongomock.Database):
            assert {d["_id"] for d in jobs.find({"$expr": ANY_LIVE_ON_THE_SERVER})} == live

    def test_live_lease_is_the_last_lease_while_it_has_not_expired(self) -> None:
        """last_lease names the lease that expires last, owner and expiry both set; live_lease is that
        one while it is live, None once it has expired or when no lease has both."""
        job = migration_job(lease_owner="runner-1", lease_expires_at=T0 + LEASE)
        assert last_lease(job) == ("runner-1", T0 + LEASE)
        assert live_lease(job, T0) == ("runner-1", T0 + LEASE)
        assert live_lease(job, T0 + LEASE) is None  # an expiry at now is expired: "after now" is live
        assert last_lease(attrs.evolve(job, lease_expires_at=None)) is None
        assert last_lease(attrs.evolve(job, lease_owner=None)) is None


class _HandBackAfterAMiss:
    """A jobs collection whose first missed ``find_one_and_update`` is followed by the lease holder
    handing its lease back (the job's, or the one at ``prefix``) — between the store's write and
    its read of the job."""

    def __init__(self, inner: Any, prefix: str = "", then: Callable[[], None] | None = None) -> None:
        self._inner = inner
        self._prefix = prefix
        self._then = then
        self.handed_back = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def find_one_and_update(self, query: Any, update: Any, **options: Any) -> Any:
        found = self._inner.find_one_and_update(query, update, **options)
        if found is None and not self.handed_back:
            self.handed_back = True
            if self._then is not None:
                self._then()
                return found
            idle = {f"{self._prefix}lease_owner": None, f"{self._prefix}lease_expires_at": None}
            self._inner.update_one({"_id": "job-1"}, {"$set": idle})
        return found


class TestFencedTransitionRace:
    def test_a_lease_expired_between_the_write_and_the_read_does_not_refuse(self) -> None:
        """The lease the hold's write met expired (on the store's clock) before the store read the
        job: the next try must ask with the new now. The fence was built once, so all three tries
        met the expired lease as live and the store said its leases changed under each try, where
        the in-memory store goes through."""
        clock = FixedClock(T0)
        collection = mongomock.MongoClient(tz_aware=True).cdp.crm_activity_log_migration_jobs
        racing = _HandBackAfterAMiss(collection, then=lambda: clock.set(T0 + LEASE + dt.timedelta(seconds=1)))
        store = MongoJobStore(cast(MongoCollection, racing), clock=clock)
        store.create(migration_job(status=COMPLETED))
        held = store.acquire_lease("job-1", "repair-1", LEASE)
        moved = store.transition(attrs.evolve(held, status=ROLLING_BACK), {COMPLETED}, unleased=True)
        assert racing.handed_back  # here: the clock moved past the expiry after the miss
        assert moved is not None
        assert moved.status == ROLLING_BACK

    def test_a_lease_handed_back_between_the_write_and_the_read_does_not_refuse(self, mongo_db: Any) -> None:
        """The hold's write met a live lease, whose holder handed it back before the store read the
        job: nothing holds it now, so the store writes again and the hold goes through — as the
        in-memory store (one step) does. Before, the store answered None ("its status was another")
        and rollback said the job changed meanwhile."""
        apply_migration(mongo_db, "up")
        clock = FixedClock(T0) if isinstance(mongo_db, mongomock.Database) else None
        racing = _HandBackAfterAMiss(mongo_db.crm_activity_log_migration_jobs)
        store = MongoJobStore(cast(MongoCollection, racing), clock=clock)
        store.create(migration_job(status=COMPLETED))
        held = store.acquire_lease("job-1", "repair-1", LEASE)
        moved = store.transition(attrs.evolve(held, status=ROLLING_BACK), {COMPLETED}, unleased=True)
        assert racing.handed_back
        assert moved is not None
        assert (moved.status, moved.lease_owner) == (ROLLING_BACK, None)

    def test_a_lease_still_live_after_the_miss_is_lease_held(self, mongo_db: Any) -> None:
        """No hand-back: the read finds the lease live and names it."""
        apply_migration(mongo_db, "up")
        clock = FixedClock(T0) if isinstance(mongo_db, mongomock.Database) else None
        store = MongoJobStore(mongo_db.crm_activity_log_migration_jobs, clock=clock)
        store.create(migration_job(status=COMPLETED))
        held = store.acquire_lease("job-1", "repair-1", LEASE)
        with pytest.raises(LeaseHeld, match="held by repair-1"):
            store.transition(attrs.evolve(held, status=ROLLING_BACK), {COMPLETED}, unleased=True)


class TestLeaseWriteRace:
    def test_a_job_lease_handed_back_after_the_miss_is_taken(self, mongo_db: Any) -> None:
        """runner-2's write met runner-1's live lease, which runner-1 handed back before the store
        read the job: the lease is free, so runner-2 takes it, as in memory. Before: LeaseHeld "held
        by None until None"."""
        apply_migration(mongo_db, "up")
        clock = FixedClock(T0) if isinstance(mongo_db, mongomock.Database) else None
        racing = _HandBackAfterAMiss(mongo_db.crm_activity_log_migration_jobs)
        store = MongoJobStore(cast(MongoCollection, racing), clock=clock)
        store.create(migration_job())
        store.acquire_lease("job-1", "runner-1", LEASE)
        taken = store.acquire_lease("job-1", "runner-2", LEASE)
        assert racing.handed_back
        assert taken.lease_owner == "runner-2"

    def test_a_shard_lease_handed_back_after_the_miss_is_taken(self, mongo_db: Any) -> None:
        """The same for a shard's lease."""
        apply_migration(mongo_db, "up")
        clock = FixedClock(T0) if isinstance(mongo_db, mongomock.Database) else None
        racing = _HandBackAfterAMiss(mongo_db.crm_activity_log_migration_jobs, "shards.1.")
        store = MongoJobStore(cast(MongoCollection, racing), clock=clock)
        store.create(_two_shards())
        store.acquire_shard_lease("job-1", 1, "runner-1", LEASE)
        taken = store.acquire_shard_lease("job-1", 1, "runner-2", LEASE)
        assert racing.handed_back
        assert taken.shards[1].lease_owner == "runner-2"

    def test_a_lease_that_expires_after_the_miss_is_taken(self, mongo_db: Any) -> None:
        """The lease runner-2's write met expires before the store reads the job: on the store's
        now at the next try it is not live, so that try takes it. With a store clock (mongomock) the
        clock moves past the expiry — each try reads it again; on a server ($$NOW) the stored
        expiry is moved into the past."""
        apply_migration(mongo_db, "up")
        jobs = mongo_db.crm_activity_log_migration_jobs
        clock = FixedClock(T0) if isinstance(mongo_db, mongomock.Database) else None

        def expire() -> None:
            if clock is not None:
                clock.advance(2 * LEASE)
            else:
                past = dt.datetime.now(dt.UTC) - HOUR
                jobs.update_one({"_id": "job-1"}, {"$set": {"lease_expires_at": past}})

        racing = _HandBackAfterAMiss(jobs, then=expire)
        store = MongoJobStore(cast(MongoCollection, racing), clock=clock)
        store.create(migration_job())
        store.acquire_lease("job-1", "runner-1", LEASE)
        taken = store.acquire_lease("job-1", "runner-2", LEASE)
        assert racing.handed_back
        assert taken.lease_owner == "runner-2"

    def test_a_lease_still_live_after_the_miss_names_its_holder(self, mongo_db: Any) -> None:
        """No hand-back: LeaseHeld naming the holder, the job's and a shard's."""
        apply_migration(mongo_db, "up")
        clock = FixedClock(T0) if isinstance(mongo_db, mongomock.Database) else None
        store = MongoJobStore(mongo_db.crm_activity_log_migration_jobs, clock=clock)
        store.create(_two_shards())
        store.acquire_lease("job-1", "runner-1", LEASE)
        store.acquire_shard_lease("job-1", 1, "runner-1", LEASE)
        with pytest.raises(LeaseHeld, match="job job-1 is held by runner-1 until"):
            store.acquire_lease("job-1", "runner-2", LEASE)
        with pytest.raises(LeaseHeld, match="shard 1 of job job-1 is held by runner-1 until"):
            store.acquire_shard_lease("job-1", 1, "runner-2", LEASE)


def _two_shards() -> MigrationJob:
    shards = split_shards(ScopeBounds(1, 400, T0, 400), 2)
    return attrs.evolve(migration_job(), first_audit_id=1, max_audit_id=400, last_audit_id=0, shards=shards)
