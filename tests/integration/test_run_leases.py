"""Two runners on one account, over the MongoDB job store: the lease lets exactly one of them work."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from crm_audit_adapters.mongo import MongoActivityLogStore, MongoJobStore, apply_migration
from crm_audit_transform.errors import JobAlreadyRunning, LeaseHeld
from crm_audit_transform.jobs import COMPLETED, MigrationJob
from crm_audit_transform.usecases import RunSettings
from support.corpus_account import World, audit_rows

SETTINGS = RunSettings(page_size=50, halt_threshold=1.0, lease_seconds=60)
ROWS = [r for r in audit_rows("acme") if r.id <= 150]


class Crash(Exception):
    """The first runner's process dies."""


def mongo_world(db: Any) -> World:
    apply_migration(db, "up")
    world = World(rows=ROWS)
    # Expiries on the world's clock, so that a test can let a lease expire (the server-clock path,
    # $$NOW, is pinned in test_mongo_jobs).
    world.jobs = MongoJobStore.in_database(db, clock=world.clock)  # type: ignore[assignment]
    world.logs = MongoActivityLogStore.in_database(db)  # type: ignore[assignment]
    world.trigger()
    return world


def external_ids(db: Any) -> list[str]:
    return sorted(doc["external_id"] for doc in db["activity_logs"].find({}, {"external_id": 1}))


@pytest.fixture(scope="module")
def clean() -> tuple[Any, list[str]]:
    world = World(rows=ROWS)
    world.trigger()
    job = world.run(settings=SETTINGS).job
    return job.tally, sorted(log.external_id for log in world.logs.logs)


class TestTwoRunners:
    @pytest.mark.wire_duplicate  # a whole-account run: see support/wire_sample.py
    def test_second_runner_is_refused_while_the_first_works(
        self, mongo_db: Any, clean: tuple[Any, list[str]]
    ) -> None:
        """While runner A holds the lease, runner B gets LeaseHeld and writes nothing; A finishes alone."""
        world = mongo_world(mongo_db)
        refusals: list[str] = []

        def b_tries(job: MigrationJob) -> None:
            if job.status != COMPLETED:
                before = external_ids(mongo_db)
                with pytest.raises(LeaseHeld) as raised:
                    world.run(owner="runner-B", settings=SETTINGS)
                assert external_ids(mongo_db) == before
                refusals.append(str(raised.value))

        job = world.run(owner="runner-A", settings=SETTINGS, on_progress=b_tries).job
        assert job.status == COMPLETED
        assert len(refusals) >= 3
        assert "runner-A" in refusals[0]
        assert (job.tally, external_ids(mongo_db)) == clean

    def test_a_dead_runners_lease_expires_and_the_other_takes_over(
        self, mongo_db: Any, clean: tuple[Any, list[str]]
    ) -> None:
        """A runner that dies keeps others off only until its lease expires; the takeover ends clean."""
        world = mongo_world(mongo_db)

        def die(job: MigrationJob) -> None:
            if job.tally.processed >= 60:
                raise Crash

        with pytest.raises(Crash):
            world.run(owner="runner-A", settings=SETTINGS, on_progress=die)
        # An error the process survives hands the lease back; a process that dies (kill -9) cannot:
        # its lease stays until it expires, as here.
        stored = world.jobs.latest(world.company)
        assert stored is not None
        assert stored.lease_owner is None
        world.jobs.acquire_lease(stored.job_id, "runner-A", SETTINGS.lease_ttl)
        with pytest.raises(LeaseHeld):
            world.run(owner="runner-B", settings=SETTINGS)
        world.clock.advance(dt.timedelta(seconds=SETTINGS.lease_seconds + 1))
        job = world.run(owner="runner-B", settings=SETTINGS).job
        assert job.status == COMPLETED
        assert (job.tally, external_ids(mongo_db)) == clean

    @pytest.mark.wire_duplicate  # a whole-account run: see support/wire_sample.py
    def test_a_runner_whose_lease_was_taken_over_is_refused_at_its_next_progress_write(
        self, mongo_db: Any, clean: tuple[Any, list[str]]
    ) -> None:
        """A stalled runner whose lease B took over gets LeaseHeld and leaves B's job document as it was."""
        world = mongo_world(mongo_db)
        taken: list[dict[str, Any]] = []

        def stall_then_lose_the_lease(job: MigrationJob) -> None:
            if not taken:
                world.clock.advance(dt.timedelta(seconds=SETTINGS.lease_seconds + 1))
                world.jobs.acquire_lease(job.job_id, "runner-B", SETTINGS.lease_ttl)
                taken.append(mongo_db["crm_activity_log_migration_jobs"].find_one({"_id": job.job_id}))

        with pytest.raises(LeaseHeld, match="runner-B"):
            world.run(owner="runner-A", settings=SETTINGS, on_progress=stall_then_lose_the_lease)
        assert mongo_db["crm_activity_log_migration_jobs"].find_one({"_id": taken[0]["_id"]}) == taken[0]
        job = world.run(owner="runner-B", settings=SETTINGS).job
        assert job.status == COMPLETED
        assert (job.tally, external_ids(mongo_db)) == clean

    def test_the_store_refuses_a_second_in_progress_job_for_the_account(self, mongo_db: Any) -> None:
        """Even past the trigger's read, the partial unique index keeps one job in progress per account."""
        world = mongo_world(mongo_db)
        with pytest.raises(JobAlreadyRunning):
            world.trigger_ports().jobs.create(
                MigrationJob(
                    job_id="another",
                    company_sso_id=world.company,
                    tenant="acme",
                    status="in_progress",
                    cutoff=world.clock.now(),
                    created_at=world.clock.now(),
                    updated_at=world.clock.now(),
                )
            )
