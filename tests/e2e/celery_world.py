"""Accounts behind real processes for the Celery tests: the CRM corpus in PostgreSQL, a MongoDB wire
server every process reaches, a local USMAN, a throwaway Redis — and the in-memory clean runs."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator, Sequence
from typing import Any

from bson import ObjectId
from click.testing import CliRunner, Result
from processes import wait_for
from pymongo import MongoClient

from crm_audit_adapters.cli import cli
from crm_audit_adapters.mongo import decode_activity_log
from crm_audit_transform.usecases import RunSettings
from support.corpus_account import World, company_sso_id, contact_docs, sso_docs
from support.usman_server import TOKEN, UsmanServer

TENANTS = ("acme", "globex", "nusantara_retail")
CUTOFF = "2025-06-01"
"""Every account starts here (``--date-range-start``): a few batches each keep the wire server quick."""
STATUS_POLL_MAX_S = 0.2
"""The longest pause between two looks of ``Scale.wait_until``: each look is a ``status`` command
run in this process (about 20 ms of its CPU and a read of the emulator the workers write to)."""


def usman_directory(tenants: Sequence[str] = TENANTS) -> dict[str, dict[str, str]]:
    return {company_sso_id(t): {d["email"]: d["sso_id"] for d in sso_docs(t)} for t in tenants}


def worker_env(
    *, crm_dsn: str, mongo_uri: str, database: str, usman_url: str, redis_url: str, **extra: str
) -> dict[str, str]:
    env = {
        "CRM_AUDIT_DATABASE_URL": crm_dsn,
        "CRM_AUDIT_MONGO_URI": mongo_uri,
        "CRM_AUDIT_MONGO_DATABASE": database,
        "CRM_AUDIT_USMAN_BASE_URL": usman_url,
        "CRM_AUDIT_USMAN_TOKEN": TOKEN,
        "CRM_AUDIT_ENABLED_COMPANIES": ",".join(company_sso_id(t) for t in TENANTS),
        "CRM_AUDIT_TENANTS": ",".join(f"{company_sso_id(t)}={t}" for t in TENANTS),
        "CRM_AUDIT_BROKER_URL": redis_url,
        "CRM_AUDIT_HALT_THRESHOLD": "1.0",
        "CRM_AUDIT_SETTINGS": "",
    }
    env.update(extra)
    return env


def running_usman(tenants: Sequence[str] = TENANTS) -> Iterator[UsmanServer]:
    """A local USMAN that knows ``tenants``' users, for a module's fixture (``yield from``)."""
    with UsmanServer(directory=usman_directory(tenants)) as server:
        yield server


def scale_world(
    *,
    crm_dsn: str,
    mongo_uri: str,
    database: str,
    usman_url: str,
    redis_url: str,
    tenants: Sequence[str] = (),
    **extra: str,
) -> Iterator[Scale]:
    """A test's ``Scale`` on the session's servers (``yield from``, in a fixture): Redis emptied of an
    earlier test's tasks, the indexes up and ``tenants``' contacts in ``database`` (any other
    tenant's as the test first enqueues it: ``Scale.enqueue``); closed after. ``extra`` is added to
    the workers' environment (``worker_env``)."""
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    env = worker_env(
        crm_dsn=crm_dsn,
        mongo_uri=mongo_uri,
        database=database,
        usman_url=usman_url,
        redis_url=redis_url,
        **extra,
    )
    world = Scale(env)
    world.seed(tenants)
    try:
        yield world
    finally:
        world.close()


class Scale:
    """The CLI in-process against the shared servers, and direct reads of the CDP database."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.runner = CliRunner()
        self.client: MongoClient[dict[str, Any]] = MongoClient(env["CRM_AUDIT_MONGO_URI"], tz_aware=True)
        self.db = self.client[env["CRM_AUDIT_MONGO_DATABASE"]]
        self.seeded: set[str] = set()

    def __call__(self, *args: str) -> Result:
        return self.runner.invoke(cli, list(args), env=self.env)

    def enqueue(self, tenant: str, cutoff: str | None = CUTOFF) -> Result:
        """``enqueue`` the tenant's account, its contacts seeded first when they are not yet: the
        emulator takes about 0.15 s of CPU a tenant's, so a test seeds only the tenants it runs."""
        self.seed_contacts((tenant,))
        since = ("--date-range-start", cutoff) if cutoff else ()
        return self("enqueue", "--company-sso-id", company_sso_id(tenant), "--tenant", tenant, *since)

    def seed(self, tenants: Sequence[str] = TENANTS) -> None:
        """The indexes up, then ``tenants``' contacts (``seed_contacts``)."""
        assert self("indexes", "up").exit_code == 0
        self.seed_contacts(tenants)

    def seed_contacts(self, tenants: Sequence[str]) -> None:
        """Each of ``tenants``' corpus contacts in the CDP database, once."""
        for tenant in tenants:
            if tenant in self.seeded:
                continue
            self.seeded.add(tenant)
            docs = []
            for doc in contact_docs(tenant):
                created = dt.datetime.fromisoformat(doc["created_at"].replace("Z", "+00:00"))
                docs.append({**doc, "_id": ObjectId(doc["_id"]), "created_at": created})
            self.db["contacts"].insert_many(docs)

    def statuses(self) -> dict[str, dict[str, Any]]:
        result = self("status", "--all", "--json")
        assert result.exit_code == 0, result.output
        return {s["company_sso_id"]: s for s in json.loads(result.stdout)}

    def wait_until(self, done: Any, timeout: float = 240.0) -> dict[str, dict[str, Any]]:
        """Poll ``status --all --json`` (in this process) until ``done(statuses)``; the statuses.
        At once, then after 10 ms, each pause twice the last up to ``STATUS_POLL_MAX_S``
        (``processes.wait_for``'s backoff): a look every 0.5 s found an account done 0.25 s after
        its end on average, a dozen times a session."""
        deadline = time.monotonic() + timeout
        pause = 0.01
        while True:
            statuses = self.statuses()
            if done(statuses):
                return statuses
            if time.monotonic() > deadline:
                raise AssertionError(f"not done after {timeout} s: {statuses}")
            time.sleep(pause)
            pause = min(pause * 2, STATUS_POLL_MAX_S)

    def wait_for_progress(self, company: str, timeout: float = 120.0) -> None:
        """Return as soon as the account's job has saved its first batch (polls the job document, as
        ``processes.wait_for`` does: a read of the emulator the workers write to, at most every 100 ms)."""
        jobs = self.db["crm_activity_log_migration_jobs"]
        wait_for(
            lambda: (
                jobs.find_one(
                    {"company_sso_id": company, "last_audit_id": {"$gt": 0}, "tally.processed": {"$gt": 0}}
                )
                is not None
            ),
            timeout_s=timeout,
            what=f"{company}'s first batch",
        )

    def logs_of(self, company: str) -> list[tuple[Any, ...]]:
        stored = self.db["activity_logs"].find(
            {"company_sso_id": company, "source_tag": "crm_migration"}, {"_id": 0}
        )
        return sorted(_shape(decode_activity_log(doc)) for doc in stored)

    def close(self) -> None:
        self.client.close()


def _shape(log: Any) -> tuple[Any, ...]:
    # BSON keeps milliseconds: compare the in-memory run's timestamps as MongoDB stores them.
    stamp = log.timestamp.replace(microsecond=log.timestamp.microsecond // 1000 * 1000)
    return (log.external_id, log.customer_id, log.category, log.action, log.actor, stamp)


def clean_run(tenant: str, cutoff: str | None = CUTOFF) -> tuple[dict[str, Any], list[tuple[Any, ...]]]:
    """The single-process in-memory run of the tenant from ``cutoff``: its counts and its logs."""
    world = World(tenant)
    since = dt.datetime.fromisoformat(cutoff).replace(tzinfo=dt.UTC) if cutoff else None
    world.trigger(date_range_start=since)
    job = world.run(settings=RunSettings(halt_threshold=1.0)).job
    counts = {
        "records_processed": job.tally.processed,
        "records_migrated": job.tally.migrated,
        "skipped": dict(job.tally.skipped),
        "failed": dict(job.tally.failed),
        "last_audit_id": job.last_audit_id,
    }
    return counts, sorted(_shape(log) for log in world.logs.logs)


def counts_of(status: dict[str, Any]) -> dict[str, Any]:
    return {
        key: status[key]
        for key in ("records_processed", "records_migrated", "skipped", "failed", "last_audit_id")
    }
