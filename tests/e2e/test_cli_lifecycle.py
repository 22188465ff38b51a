"""The job lifecycle through ``crm-audit-migrate``: tenant binding, index checks, USMAN, cancel, resume."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import mongomock
import pytest
from cli_world import COMPANY, TENANT, Cli, make_cli, running_usman, seed_contacts

from crm_audit_adapters.cli import exit_codes
from support.usman_server import UsmanServer

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def usman() -> Iterator[UsmanServer]:
    yield from running_usman()


@pytest.fixture
def client() -> mongomock.MongoClient:
    return mongomock.MongoClient(tz_aware=True)


@pytest.fixture
def run_cli(crm_dsn: str, usman: UsmanServer, client: mongomock.MongoClient) -> Cli:
    cli = make_cli(crm_dsn, usman, client)
    assert cli("indexes", "up").exit_code == 0
    seed_contacts(client)
    return cli


def jobs(client: mongomock.MongoClient) -> list[dict[str, Any]]:
    return list(client["cdp"]["crm_activity_log_migration_jobs"].find())


def logs(client: mongomock.MongoClient) -> int:
    return int(client["cdp"]["activity_logs"].count_documents({}))


class TestTenantBinding:
    def test_a_wrong_tenant_is_refused_with_no_job_row(
        self, run_cli: Cli, client: mongomock.MongoClient
    ) -> None:
        """`--tenant globex` for an account bound to acme: TENANT_MISMATCH, exit 4, nothing written."""
        result = run_cli("trigger", "--company-sso-id", COMPANY, "--tenant", "globex")
        assert result.exit_code == exit_codes.REFUSED
        assert result.stderr.startswith("error: TENANT_MISMATCH:")
        assert jobs(client) == []

    def test_without_tenant_the_bound_one_is_used(self, run_cli: Cli) -> None:
        """A bound account triggers without --tenant and its job names the bound tenant."""
        result = run_cli("trigger", "--company-sso-id", COMPANY, "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["tenant"] == TENANT

    def test_an_unbound_account_needs_the_explicit_override(
        self, run_cli: Cli, client: mongomock.MongoClient
    ) -> None:
        """No binding: refused TENANT_UNBOUND; with --allow-unbound-tenant the named tenant is used."""
        refused = run_cli("trigger", "--company-sso-id", COMPANY, "--tenant", TENANT, CRM_AUDIT_TENANTS="")
        assert refused.exit_code == exit_codes.REFUSED
        assert "TENANT_UNBOUND" in refused.stderr
        assert jobs(client) == []
        accepted = run_cli(
            "trigger",
            "--company-sso-id",
            COMPANY,
            "--tenant",
            TENANT,
            "--allow-unbound-tenant",
            CRM_AUDIT_TENANTS="",
        )
        assert accepted.exit_code == 0, accepted.output
        assert [j["tenant"] for j in jobs(client)] == [TENANT]


class TestIndexesRequired:
    def test_status_lists_each_index_and_the_version(self, run_cli: Cli) -> None:
        """`indexes status` says present for all four and the recorded version 035."""
        result = run_cli("indexes", "status")
        assert result.exit_code == 0, result.output
        assert result.stdout.count("present ") == 4
        assert "version: 035" in result.stdout

    def test_after_down_trigger_and_run_are_refused_with_nothing_written(
        self, run_cli: Cli, client: mongomock.MongoClient
    ) -> None:
        """Without the indexes: trigger and run exit 3 with INDEXES_MISSING; no job, no log."""
        assert run_cli("trigger", "--company-sso-id", COMPANY).exit_code == 0
        down = run_cli("indexes", "down")
        assert down.exit_code == 0, down.output
        assert "version: none" in down.stdout
        before = jobs(client)
        ran = run_cli("run", "--company-sso-id", COMPANY, "--no-progress")
        assert ran.exit_code == exit_codes.CONFIG
        assert ran.stderr.startswith("error: INDEXES_MISSING:")
        assert logs(client) == 0
        assert jobs(client) == before
        client["cdp"]["crm_activity_log_migration_jobs"].delete_many({})
        triggered = run_cli("trigger", "--company-sso-id", COMPANY)
        assert triggered.exit_code == exit_codes.CONFIG
        assert jobs(client) == []
        status = run_cli("indexes", "status")
        assert status.exit_code == exit_codes.CONFIG
        assert status.stdout.count("missing ") == 4

    def test_enrich_is_refused_without_the_indexes(self, run_cli: Cli) -> None:
        """`enrich` writes patches, so it refuses too (its --dry-run does not write and still runs)."""
        assert run_cli("indexes", "down").exit_code == 0
        result = run_cli("enrich", "--company-sso-id", COMPANY)
        assert result.exit_code == exit_codes.CONFIG
        assert "INDEXES_MISSING" in result.stderr
