"""The migration tasks run eagerly in-process over the real CRM (PostgreSQL) and the test's MongoDB."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from celery.exceptions import Retry

from crm_audit_adapters.bootstrap import Runtime, build_runtime
from crm_audit_adapters.celery import MIGRATE_ACCOUNT, MIGRATE_SHARD, VERIFY_ACCOUNT, make_app
from crm_audit_adapters.mongo.indexes import apply_migration
from crm_audit_adapters.settings import Settings
from crm_audit_adapters.usman import UsmanClient, UsmanConfig, UsmanRefused
from crm_audit_transform.errors import JobNotFound
from crm_audit_transform.jobs import COMPLETED, IN_PROGRESS
from crm_audit_transform.testing import FixedClock, InMemorySsoDirectory
from crm_audit_transform.usecases import RunSettings
from support.corpus_account import company_sso_id, contact_docs, sso_docs
from support.usman_server import TOKEN, UsmanServer, email_twice, status

pytestmark = pytest.mark.postgres

TENANT = "acme"
COMPANY = company_sso_id(TENANT)
NOW = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)


def settings_over(crm_dsn: str, mongo_db: Any) -> Settings:
    return Settings(
        database_url=crm_dsn,
        mongo_database=mongo_db.name,
        enabled_companies=COMPANY,
        tenants={COMPANY: TENANT},
        broker_url="memory://",
        run=RunSettings(halt_threshold=1.0, lease_seconds=30),
        coverage_threshold=0.9,  # the corpus CDP covers 93.9% of acme's people (tests/conftest.py)
    )


def runtime_over(crm_dsn: str, mongo_db: Any) -> Runtime:
    settings = settings_over(crm_dsn, mongo_db)
    sso = InMemorySsoDirectory({d["email"]: d["sso_id"] for d in sso_docs(TENANT)})
    return build_runtime(settings, mongo_client=mongo_db.client, sso=sso, clock=FixedClock(NOW))


@pytest.fixture
def untriggered(crm_dsn: str, mongo_db: Any) -> Iterator[Runtime]:
    apply_migration(mongo_db, "up")
    for doc in contact_docs(TENANT):
        created = dt.datetime.fromisoformat(doc["created_at"].replace("Z", "+00:00"))
        mongo_db["contacts"].insert_one({**doc, "created_at": created})
    runtime = runtime_over(crm_dsn, mongo_db)
    with runtime:
        yield runtime


@pytest.fixture
def runtime(untriggered: Runtime) -> Runtime:
    untriggered.service.trigger(COMPANY)
    return untriggered


class TestMigrateAccountTask:
    @pytest.mark.wire_duplicate  # a whole-account run: see support/wire_sample.py
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


class TestMigrateShardTask:
    @pytest.mark.wire_duplicate  # a whole-account run: see support/wire_sample.py
    def test_shard_tasks_complete_a_job_cut_at_the_crm_row_quantiles(self, untriggered: Runtime) -> None:
        """percentile_disc cuts 3 shards of near-equal rows; the last shard task to end completes the job."""
        runtime = untriggered
        runtime.service.trigger(COMPANY, shards=3)
        job = runtime.jobs.latest(COMPANY)
        assert job is not None
        assert len(job.shards) == 3
        scope = runtime.service.transformer.scope
        ids = [r.id for r in runtime.source.page(TENANT, scope, after_id=-1, cutoff=job.cutoff, limit=10_000)]
        sizes = [sum(1 for i in ids if s.after_id < i <= (s.until_id or i)) for s in job.shards]
        assert sum(sizes) == len(ids)
        assert max(sizes) - min(sizes) <= 1
        app = make_app(runtime.settings, runtime_factory=lambda: runtime)
        results = [app.tasks[MIGRATE_SHARD].apply(args=[COMPANY, n]).get() for n in (2, 0, 1)]
        assert [(r["shard"], r["shard_status"], r["status"]) for r in results] == [
            (2, COMPLETED, IN_PROGRESS),
            (0, COMPLETED, IN_PROGRESS),
            (1, COMPLETED, COMPLETED),
        ]
        done = runtime.jobs.latest(COMPANY)
        assert done is not None
        assert done.tally.processed == len(ids)

    @pytest.mark.parametrize("shard", [True, "0", 1.0])
    def test_a_shard_that_is_no_integer_fails_at_once(self, untriggered: Runtime, shard: object) -> None:
        """A message whose shard is JSON true, a string or a float names no shard: JobNotFound (never
        retried), not LeaseHeld retried a dozen times; no shard's lease or cursor is touched."""
        runtime = untriggered
        runtime.service.trigger(COMPANY, shards=2)
        before = runtime.jobs.latest(COMPANY)
        app = make_app(runtime.settings, runtime_factory=lambda: runtime)
        app.conf.task_eager_propagates = True
        with pytest.raises(JobNotFound, match="is no shard number"):
            app.tasks[MIGRATE_SHARD].apply(args=[COMPANY, shard], throw=True)
        assert runtime.jobs.latest(COMPANY) == before


class TestUsmanRedirect:
    @pytest.mark.parametrize("code", [307, 202])
    @pytest.mark.parametrize("task", [MIGRATE_ACCOUNT, MIGRATE_SHARD, VERIFY_ACCOUNT])
    def test_a_redirect_fails_the_task_at_once_before_any_write(
        self, crm_dsn: str, mongo_db: Any, task: str, code: int
    ) -> None:
        """USMAN answering a 307, or a 202 (a 2xx that is not the lookup's 200), is a refusal in every
        task that asks it: the task fails at once with ``UsmanRefused`` (no retry, USMAN asked once),
        no log is written, the cursor is unmoved. Before, it was an outage: ``migrate_account`` wrote
        the first rows with degraded actors; this test fails there (for the 202 too)."""
        apply_migration(mongo_db, "up")
        for doc in contact_docs(TENANT):
            created = dt.datetime.fromisoformat(doc["created_at"].replace("Z", "+00:00"))
            mongo_db["contacts"].insert_one({**doc, "created_at": created})
        with UsmanServer(default=status(code, {"Location": "https://login.example/"})) as redirecting:
            sso = UsmanClient(UsmanConfig(base_url=redirecting.url, token=TOKEN))
            runtime = build_runtime(
                settings_over(crm_dsn, mongo_db),
                mongo_client=mongo_db.client,
                sso=sso,
                clock=FixedClock(NOW),
            )
            with runtime, sso:
                runtime.service.trigger(COMPANY, shards=2 if task == MIGRATE_SHARD else 1)
                before = runtime.jobs.latest(COMPANY)
                app = make_app(runtime.settings, runtime_factory=lambda: runtime)
                result = app.tasks[task].apply(args=[COMPANY, 0] if task == MIGRATE_SHARD else [COMPANY])
                assert result.state == "FAILURE"
                assert isinstance(result.result, UsmanRefused)
                assert str(code) in str(result.result)
                assert len(redirecting.requests) == 1
                assert mongo_db["activity_logs"].count_documents({}) == 0
                after = runtime.jobs.latest(COMPANY)
                assert before is not None
                assert after is not None
                assert (after.status, after.last_audit_id, after.tally) == (
                    before.status,
                    before.last_audit_id,
                    before.tally,
                )


class TestUsmanAnswerNamingAnEmailTwice:
    def test_migrate_account_degrades_and_writes_no_sso_id(self, crm_dsn: str, mongo_db: Any) -> None:
        """``migrate_account`` against a USMAN whose entries name ``email`` twice, the second time
        another user's: no answer is trusted, the actors degrade (counted) and no log carries an SSO id.
        Before, Python's reader gave each user another's SSO id and the task wrote them: this test
        fails there."""
        apply_migration(mongo_db, "up")
        for doc in contact_docs(TENANT):
            created = dt.datetime.fromisoformat(doc["created_at"].replace("Z", "+00:00"))
            mongo_db["contacts"].insert_one({**doc, "created_at": created})
        directory = {COMPANY: {d["email"]: d["sso_id"] for d in sso_docs(TENANT)}}
        with UsmanServer(directory=directory, default=email_twice) as hostile:
            sso = UsmanClient(UsmanConfig(base_url=hostile.url, token=TOKEN))
            runtime = build_runtime(
                settings_over(crm_dsn, mongo_db), mongo_client=mongo_db.client, sso=sso, clock=FixedClock(NOW)
            )
            with runtime, sso:
                runtime.service.trigger(COMPANY)
                app = make_app(runtime.settings, runtime_factory=lambda: runtime)
                result = app.tasks[MIGRATE_ACCOUNT].apply(args=[COMPANY])
                assert result.state == "SUCCESS", result.result
                job = runtime.jobs.latest(COMPANY)
        assert hostile.requests
        assert job is not None
        assert job.tally.actors_degraded > 0
        ids = set(directory[COMPANY].values())
        stored = list(mongo_db["activity_logs"].find({}))
        assert stored
        assert not [doc for doc in stored if doc["actor"].get("id") in ids]
