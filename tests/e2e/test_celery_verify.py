"""``crm_audit.verify_account`` through a real ``celery worker``: Redis broker and result backend,
PostgreSQL with the corpus, a MongoDB wire server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from celery_world import Scale, scale_world, usman_directory

from crm_audit_adapters.celery import VERIFY_ACCOUNT, make_app
from crm_audit_adapters.settings import Settings
from support.celery_workers import WorkerPool
from support.corpus_account import company_sso_id
from support.usman_server import UsmanServer

pytestmark = [pytest.mark.postgres, pytest.mark.celery]
TENANT = "acme"
RESULT_WAIT = 120.0


@pytest.fixture
def scale(crm_dsn: str, shared_mongo_uri: str, wire_mongo_database: str, redis_url: str) -> Iterator[Scale]:
    with UsmanServer(directory=usman_directory((TENANT,))) as usman:
        yield from scale_world(
            crm_dsn=crm_dsn,
            mongo_uri=shared_mongo_uri,
            database=wire_mongo_database,
            usman_url=usman.url,
            redis_url=redis_url,
            tenants=(TENANT,),
            CRM_AUDIT_RESULT_BACKEND=redis_url,
        )


def verify(scale: Scale, **kwargs: Any) -> dict[str, Any]:
    """Send the task as any client would (ids only) and wait for the worker's JSON report."""
    env = scale.env
    app = make_app(
        Settings(broker_url=env["CRM_AUDIT_BROKER_URL"], result_backend=env["CRM_AUDIT_RESULT_BACKEND"])
    )
    result = app.send_task(VERIFY_ACCOUNT, args=[company_sso_id(TENANT)], kwargs=kwargs)
    report: dict[str, Any] = result.get(timeout=RESULT_WAIT)
    return report


class TestVerifyOnAWorker:
    def test_a_worker_verifies_a_migrated_account_finds_a_deleted_log_and_repairs_it(
        self, scale: Scale, celery_workers: WorkerPool
    ) -> None:
        """Clean after the run; one deleted log is `missing`; repair writes it back; then clean again."""
        celery_workers.start(scale.env)
        company = company_sso_id(TENANT)
        assert scale.enqueue(TENANT).exit_code == 0
        scale.wait_until(lambda s: s.get(company, {}).get("status") == "completed")

        first = verify(scale)
        assert (first["clean"], first["outstanding"]) == (True, {})
        assert first["migrated"] > 0

        logs = scale.db["activity_logs"]
        victim = logs.find_one({"company_sso_id": company, "source_tag": "crm_migration"})
        assert victim is not None
        logs.delete_one({"_id": victim["_id"]})
        found = verify(scale)
        assert found["clean"] is False
        assert found["outstanding"] == {"missing": 1}
        assert found["findings"]["missing"]["items"][0]["external_id"] == victim["external_id"]

        repaired = verify(scale, repair=True)
        assert (repaired["repaired"], repaired["outstanding"]) == (1, {})
        assert logs.count_documents({"external_id": victim["external_id"]}) == 1
        again = verify(scale)
        assert (again["clean"], again["migrated"]) == (True, first["migrated"])
