"""``crm_audit.verify_account`` with ``repair`` on real Celery workers: a repair waits for the run
holding the account's job, past its retries, with a WARNING and no ERROR, then verifies."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest
from celery_world import Scale, usman_directory, worker_env
from processes import wait_for

from crm_audit_adapters.celery import VERIFY_ACCOUNT, make_app, tasks
from crm_audit_adapters.settings import Settings
from support.celery_workers import WorkerPool
from support.corpus_account import company_sso_id
from support.usman_server import UsmanServer

pytestmark = [pytest.mark.postgres, pytest.mark.celery]
TENANT = "globex"
COMPANY = company_sso_id(TENANT)
OTHER_RUNNER = "host-b:7:celery"
WAITED = 2
"""The Celery retries (lease waits, INFO) the repair still has when sent, before its WARNING."""


@pytest.fixture(scope="module")
def usman() -> Iterator[UsmanServer]:
    with UsmanServer(directory=usman_directory()) as server:
        yield server


@pytest.fixture
def scale(
    crm_dsn: str, shared_mongo_uri: str, wire_mongo_database: str, usman: UsmanServer, redis_url: str
) -> Iterator[Scale]:
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    env = worker_env(
        crm_dsn=crm_dsn,
        mongo_uri=shared_mongo_uri,
        database=wire_mongo_database,
        usman_url=usman.url,
        redis_url=redis_url,
        # Each lease wait is a second: the task's MAX_RETRIES waits take seconds, not hours.
        CRM_AUDIT_LEASE_SECONDS="1",
    )
    world = Scale(env)
    world.seed((TENANT,))
    yield world
    world.close()


def events(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


class TestARepairWaitsOnForTheRun:
    def test_a_repair_past_its_retries_waits_on_with_a_warning_then_verifies(
        self, scale: Scale, celery_workers: WorkerPool
    ) -> None:
        """``verify --repair`` on a job another runner holds waits a lease at a time. Past
        ``MAX_RETRIES`` waits it used to fail (``ERROR ... raised unexpected: LeaseHeld``) though
        the account was healthy; now it is sent again with a WARNING (``task_waits_on_for_lease``)
        and, once the runner hands the lease back, verifies and repairs as asked."""
        celery_workers.start(scale.env)
        assert scale.enqueue(TENANT).exit_code == 0
        scale.wait_until(lambda s: s.get(COMPANY, {}).get("status") == "completed")
        jobs = scale.db["crm_activity_log_migration_jobs"]
        held_until = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
        held = {"lease_owner": OTHER_RUNNER, "lease_expires_at": held_until}
        jobs.update_one({"company_sso_id": COMPANY}, {"$set": held})

        app = make_app(Settings(broker_url=scale.env["CRM_AUDIT_BROKER_URL"]))
        # Sent as if it had waited all but its last two leases already (Celery's own retry count,
        # which each retry carries on): it crosses MAX_RETRIES after two waits of a second, not twelve.
        app.send_task(
            VERIFY_ACCOUNT, args=[COMPANY], kwargs={"repair": True}, retries=tasks.MAX_RETRIES - WAITED
        )

        def warned() -> list[dict[str, Any]]:
            lines = events(celery_workers.output(0))
            return [line for line in lines if line.get("event") == "task_waits_on_for_lease"]

        # Each look reads the worker's log file: at once, then backing off to 100 ms (``wait_for``),
        # not every 200 ms; the warning comes about two lease waits (2 s) after the send.
        wait_for(lambda: bool(warned()), timeout_s=120, what="task_waits_on_for_lease")
        [warning] = warned()[:1]
        assert (warning["level"], warning["company_sso_id"]) == ("warning", COMPANY)
        assert warning["waits"] == tasks.MAX_RETRIES
        assert "verify --repair writes whole" in warning["why"]
        lines = events(celery_workers.output(0))
        before = lines[
            : next(i for i, line in enumerate(lines) if line.get("event") == "task_waits_on_for_lease")
        ]
        assert sum(line.get("event") == "task_waits_for_lease" for line in before) == WAITED

        # The run ends: it hands the lease back.
        jobs.update_one(
            {"company_sso_id": COMPANY}, {"$set": {"lease_owner": None, "lease_expires_at": None}}
        )

        def verified() -> list[dict[str, Any]]:
            return [line for line in events(celery_workers.output(0)) if line.get("event") == "verified"]

        wait_for(lambda: bool(verified()), timeout_s=120, what="verified")
        assert verified()[0]["company_sso_id"] == COMPANY
        assert verified()[0]["clean"] is True
        output = celery_workers.output(0)
        assert "raised unexpected" not in output
        assert "LeaseHeld" not in "".join(line for line in output.splitlines() if "ERROR" in line)
        job = jobs.find_one({"company_sso_id": COMPANY})
        assert job is not None
        assert (job["status"], job.get("lease_owner")) == ("completed", None)
