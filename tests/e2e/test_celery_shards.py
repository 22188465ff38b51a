"""Shards of one account on real Celery workers: Redis, PostgreSQL, a MongoDB wire server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from celery_world import Scale, clean_run, counts_of, running_usman, scale_world
from processes import wait_for
from test_celery_workers import json_lines

from support.celery_workers import WorkerPool
from support.corpus_account import company_sso_id
from support.usman_server import UsmanServer

pytestmark = [pytest.mark.postgres, pytest.mark.celery]
TENANT = "globex"
COMPANY = company_sso_id(TENANT)
SINCE = "2024-10-01"
"""125 in-scope rows of globex from here: four shards of about 31, a few batches each."""


@pytest.fixture(scope="module")
def usman() -> Iterator[UsmanServer]:
    yield from running_usman()


@pytest.fixture
def scale(
    crm_dsn: str, shared_mongo_uri: str, wire_mongo_database: str, usman: UsmanServer, redis_url: str
) -> Iterator[Scale]:
    yield from scale_world(
        crm_dsn=crm_dsn,
        mongo_uri=shared_mongo_uri,
        database=wire_mongo_database,
        usman_url=usman.url,
        redis_url=redis_url,
        tenants=(TENANT,),
    )


def enqueue_sharded(scale: Scale, shards: int, since: str | None) -> list[str]:
    cutoff = ("--date-range-start", since) if since else ()
    sent = scale("enqueue", "--company-sso-id", COMPANY, "--shards", str(shards), *cutoff)
    assert sent.exit_code == 0, sent.output
    return sent.stdout.splitlines()


def job_doc(scale: Scale) -> dict[str, Any]:
    doc = scale.db["crm_activity_log_migration_jobs"].find_one({"company_sso_id": COMPANY})
    assert doc is not None
    return doc


class TestShardedAccount:
    def test_a_four_shard_account_ends_identical_to_an_unsharded_run(
        self, scale: Scale, celery_workers: WorkerPool
    ) -> None:
        """Four migrate_shard tasks on two workers end with a clean single run's counts and logs."""
        scale.env.update(CRM_AUDIT_PAGE_SIZE="10")
        celery_workers.start(scale.env, count=2)
        sent = enqueue_sharded(scale, 4, SINCE)
        assert [line.split()[:4] for line in sent] == [
            ["sent", "crm_audit.migrate_shard", COMPANY, "shard"]
        ] * 4
        done = scale.wait_until(lambda s: s.get(COMPANY, {}).get("status") == "completed")
        counts, logs = clean_run(TENANT, cutoff=SINCE)
        assert counts_of(done[COMPANY]) == counts
        assert done[COMPANY]["progress_pct"] == 100.0
        assert scale.logs_of(COMPANY) == logs
        shards = job_doc(scale)["shards"]
        assert sorted(shards) == ["0", "1", "2", "3"]
        assert all(s["status"] == "completed" and s["lease_owner"] is None for s in shards.values())
        assert sum(s["tally"]["processed"] for s in shards.values()) == counts["records_processed"]
        batches = [
            line
            for i in range(2)
            for line in json_lines(celery_workers.output(i))
            if line.get("event") == "batch"
        ]
        assert {line["shard"] for line in batches} == {0, 1, 2, 3}


class TestCancelReachesShards:
    def test_cancel_stops_every_running_shard_at_its_next_batch(
        self, scale: Scale, celery_workers: WorkerPool
    ) -> None:
        """Both shards running on two workers see the cancel, log it, and write no batch after it."""
        # The whole account (843 rows) in pages of 5: neither shard is near its end when cancelled.
        scale.env.update(CRM_AUDIT_PAGE_SIZE="5")
        celery_workers.start(scale.env, count=2)
        enqueue_sharded(scale, 2, None)
        jobs = scale.db["crm_activity_log_migration_jobs"]
        deadline = time.monotonic() + 120
        wait_for(
            lambda: (
                jobs.find_one(
                    {
                        "company_sso_id": COMPANY,
                        "shards.0.tally.processed": {"$gt": 0},
                        "shards.1.tally.processed": {"$gt": 0},
                    }
                )
                is not None
            ),
            timeout_s=120,
            what="both shards to run",
        )
        cancelled = scale("cancel", "--company-sso-id", COMPANY)
        assert cancelled.exit_code == 0, cancelled.output

        def stopped() -> set[int]:
            return {
                int(line["shard"])  # type: ignore[call-overload]
                for i in range(2)
                for line in json_lines(celery_workers.output(i))
                if line.get("event") == "job_state" and line.get("status") == "cancelled"
            }

        while stopped() != {0, 1}:
            assert time.monotonic() < deadline, f"shards that saw the cancel: {stopped()}"
            time.sleep(0.1)
        first = job_doc(scale)
        time.sleep(1.0)
        later = job_doc(scale)
        assert later["status"] == "cancelled"
        assert later["shards"] == first["shards"]  # nothing written after the stop
        processed = sum(s["tally"]["processed"] for s in later["shards"].values())
        assert 0 < processed < 843
