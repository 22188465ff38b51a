"""The ``crm_audit.verify_account`` task over the runner's composition root (applied in-process)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest

from crm_audit_adapters.bootstrap import build_runtime
from crm_audit_adapters.celery import VERIFY_ACCOUNT, make_app
from crm_audit_adapters.mongo.indexes import apply_migration
from crm_audit_adapters.settings import Settings
from crm_audit_transform.errors import TenantUnbound
from crm_audit_transform.testing import FixedClock, InMemorySsoDirectory

pytestmark = pytest.mark.postgres

COMPANY = "company-acme"


@pytest.fixture
def app(crm_dsn: str, mongo_db: Any) -> Iterator[Any]:
    """The Celery app whose worker runtime is the runner's, on the corpus and the test's MongoDB."""
    apply_migration(mongo_db, "up")
    settings = Settings(
        database_url=crm_dsn,
        mongo_database=mongo_db.name,
        tenants={COMPANY: "acme"},
        broker_url="memory://",
    )
    runtime = build_runtime(
        settings,
        mongo_client=mongo_db.client,
        clock=FixedClock(dt.datetime(2026, 1, 1, tzinfo=dt.UTC)),
        sso=InMemorySsoDirectory({}),
    )
    with runtime:
        yield make_app(settings, runtime_factory=lambda: runtime)


class TestVerifyTask:
    def test_the_task_returns_the_report_of_a_bound_account(self, app: Any) -> None:
        """The task walks the bound tenant and returns the JSON report a CI gate or dashboard reads."""
        result = app.tasks[VERIFY_ACCOUNT].apply(args=[COMPANY], kwargs={"sample": 1})
        report = result.get()
        assert (report["company_sso_id"], report["tenant"], report["clean"]) == (COMPANY, "acme", True)
        assert report["audits"] > 0
        assert report["sample"] == 1

    def test_an_unbound_account_fails_the_task_at_once(self, app: Any) -> None:
        """A worker verifies bound accounts only; an unbound one is a failure, not a retry."""
        result = app.tasks[VERIFY_ACCOUNT].apply(args=["company-unbound"])
        assert isinstance(result.result, TenantUnbound)
        assert result.state == "FAILURE"
        message = str(result.result)  # a worker has no override: the binding is the fix
        assert "CRM_AUDIT_TENANTS" in message
        assert "allow" not in message
