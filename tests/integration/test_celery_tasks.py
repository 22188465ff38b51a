"""The migration tasks run eagerly in-process over the real CRM (PostgreSQL) and the test's MongoDB."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from celery.exceptions import Retry

from crm_audit_adapters.bootstrap import Runtime, build_runtime
from crm_audit_adapters.celery import MIGRATE_ACCOUNT, make_app
from crm_audit_adapters.mongo.indexes import apply_migration
from crm_audit_adapters.settings import Settings
from crm_audit_transform.jobs import COMPLETED, IN_PROGRESS
from crm_audit_transform.testing import FixedClock, InMemorySsoDirectory
from crm_audit_transform.usecases import RunSettings
from support.corpus_account import company_sso_id, contact_docs, sso_docs

pytestmark = pytest.mark.postgres

TENANT = "acme"
COMPANY = company_sso_id(TENANT)
NOW = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)


def runtime_over(crm_dsn: str, mongo_db: Any) -> Runtime:
    settings = Settings(
        database_url=crm_dsn,
        mongo_database=mongo_db.name,
        enabled_companies=COMPANY,
        tenants={COMPANY: TENANT},
        broker_url="memory://",
        run=RunSettings(halt_threshold=1.0, lease_seconds=30),
    )
    sso = InMemorySsoDirectory({d["email"]: d["sso_id"] for d in sso_docs(TENANT)})
    return build_runtime(settings, mongo_client=mongo_db.client, sso=sso, clock=FixedClock(NOW))


@pytest.fixture
def runtime(crm_dsn: str, mongo_db: Any) -> Iterator[Runtime]:
    apply_migration(mongo_db, "up")
    for doc in contact_docs(TENANT):
        created = dt.datetime.fromisoformat(doc["created_at"].replace("Z", "+00:00"))
        mongo_db["contacts"].insert_one({**doc, "created_at": created})
    runtime = runtime_over(crm_dsn, mongo_db)
    with runtime:
        runtime.service.trigger(COMPANY)
        yield runtime


class TestMigrateAccountTask:
    def test_the_task_runs_the_accounts_job_to_completion(self, runtime: Runtime) -> None:
        """migrate_account(company) completes the job and returns ids and the status only."""
        app = make_app(runtime.settings, runtime_factory=lambda: runtime)
        result = app.tasks[MIGRATE_ACCOUNT].apply(args=[COMPANY]).get()
        job = runtime.jobs.latest(COMPANY)
        assert job is not None
        assert job.status == COMPLETED
        assert result == {"company_sso_id": COMPANY, "job_id": job.job_id, "status": COMPLETED}

    def test_a_held_lease_is_retried_after_one_lease_period(self, runtime: Runtime) -> None:
        """Another runner's live lease sends the task back after lease_seconds; nothing is written."""
        job = runtime.jobs.latest(COMPANY)
        assert job is not None
        runtime.jobs.acquire_lease(job.job_id, "other-host:1", dt.timedelta(minutes=5))
        app = make_app(runtime.settings, runtime_factory=lambda: runtime)
        app.conf.task_eager_propagates = True
        with pytest.raises(Retry) as retried:
            app.tasks[MIGRATE_ACCOUNT].apply(args=[COMPANY], throw=True)
        assert retried.value.when == runtime.settings.run.lease_seconds
        after = runtime.jobs.latest(COMPANY)
        assert after is not None
        assert (after.status, after.last_audit_id, after.lease_owner) == (
            IN_PROGRESS,
            job.last_audit_id,
            "other-host:1",
        )
