"""`enqueue` against a broker that answers its check and is gone when the task is sent."""

from __future__ import annotations

import json
from typing import Any

import mongomock
import pytest
from click.testing import CliRunner

from crm_audit_adapters.celery import resend
from crm_audit_adapters.cli import Overrides, cli, exit_codes, workers
from crm_audit_adapters.mongo import MongoJobStore
from crm_audit_adapters.mongo.indexes import apply_migration
from crm_audit_transform.jobs import IN_PROGRESS
from support.mongo import migration_job
from support.redis_server import running_redis_server

COMPANY = "company-a"
PASSWORD = "Zq8rWv3nTx"


def test_a_broker_that_dies_after_the_check_is_unavailable_naming_it_and_the_job(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The broker answers `enqueue`'s check, then is killed before the task is sent: `UNAVAILABLE`
    (exit 6) naming the broker without its password, the job left in progress and the command to
    send it again. It was `INTERNAL` (exit 1): the publish retry policy's errback read the current
    task's request where `enqueue` has no task (an `AttributeError` at the first wait), and past it
    kombu's `OperationalError` was caught by nothing."""
    monkeypatch.setattr(resend, "PUBLISH_RETRY_POLICY", {"max_retries": 1, "interval_start": 0})
    client: Any = mongomock.MongoClient(tz_aware=True)
    apply_migration(client["cdp"], "up")
    MongoJobStore.in_database(client["cdp"]).create(migration_job(company=COMPANY))
    with running_redis_server() as server:
        checked = workers._require_broker

        def check_then_die(app: Any, state: Any) -> None:
            checked(app, state)
            server.kill()

        monkeypatch.setattr(workers, "_require_broker", check_then_die)
        broker = server.url.replace("redis://", f"redis://:{PASSWORD}@")
        env = {
            "CRM_AUDIT_SETTINGS": "",
            "CRM_AUDIT_MONGO_URI": "mongomock://",
            "CRM_AUDIT_BROKER_URL": broker,
            "CRM_AUDIT_ENABLED_COMPANIES": "*",
            "CRM_AUDIT_TENANTS": f"{COMPANY}=tenant_a",
        }
        args = ["enqueue", "--company-sso-id", COMPANY, "--json"]
        result = CliRunner().invoke(cli, args, obj=Overrides(mongo_client=client), env=env)

    assert result.exit_code == exit_codes.UNAVAILABLE, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    error = errors[0]
    assert error.startswith("error: UNAVAILABLE: the broker at redis://:***@127.0.0.1:"), error
    assert f"did not take crm_audit.migrate_account for company {COMPANY}" in error
    assert "its job job-1 stays in progress with 0 task(s) of it sent" in error
    assert f"`crm-audit-migrate enqueue --company-sso-id {COMPANY}`" in error
    assert PASSWORD[:4] not in result.output
    assert "Traceback" not in result.output
    # The publish's waits are WARNING lines on stderr; stdout is --json's document alone.
    assert '"event": "broker_publish_waits"' in result.stderr
    assert json.loads(result.stdout)["error"]["code"] == "UNAVAILABLE"
    stored = MongoJobStore.in_database(client["cdp"]).latest(COMPANY)
    assert stored is not None
    assert stored.status == IN_PROGRESS
