"""The job lifecycle through ``crm-audit-migrate``: tenant binding, index checks, USMAN, cancel, resume."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import cli_world
import mongomock
import pytest
from cli_world import COMPANY, TENANT, Cli

from crm_audit_adapters.bootstrap import Runtime
from crm_audit_adapters.cli import exit_codes
from crm_audit_transform.usecases.cancel import cancel
from support.corpus_account import sso_docs
from support.usman_server import Reply, SeenRequest, UsmanServer, answer, email_twice, status

pytestmark = pytest.mark.postgres
usman, client, run_cli = cli_world.usman, cli_world.client, cli_world.run_cli  # the CLI world's fixtures


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
        assert f"pass --allow-unbound-tenant to use {TENANT!r} as given" in refused.stderr
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
        down = run_cli("indexes", "down", "--yes")
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
        assert run_cli("indexes", "down", "--yes").exit_code == 0
        result = run_cli("enrich", "--company-sso-id", COMPANY)
        assert result.exit_code == exit_codes.CONFIG
        assert "INDEXES_MISSING" in result.stderr


def status_json(cli: Cli) -> dict[str, Any]:
    result = cli("status", "--company-sso-id", COMPANY, "--json")
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.stdout))


class CancelAfterFirstInsert:
    """The activity-log store of a runtime whose job is cancelled (by the use case) after the first insert."""

    def __init__(self, runtime: Runtime) -> None:
        self._inner = runtime.logs
        self._runtime = runtime
        self.inserts = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def insert_batch(self, batch: Any) -> Any:
        result = self._inner.insert_batch(batch)
        self.inserts += 1
        if self.inserts == 1:
            cancel(COMPANY, jobs=self._runtime.jobs, clock=self._runtime.clock)
        return result


def cancel_mid_run(runtime: Runtime) -> None:
    runtime.logs = CancelAfterFirstInsert(runtime)  # type: ignore[misc]


class TestCancelAndRestart:
    def test_a_live_runner_stops_at_its_next_batch_and_a_restart_is_explicit(
        self, run_cli: Cli, client: mongomock.MongoClient
    ) -> None:
        """Cancelled mid-run: exit 8; a plain trigger is refused; --resume ends clean; --fresh rolls back."""
        assert run_cli("trigger", "--company-sso-id", COMPANY).exit_code == 0
        run_cli.overrides.prepare = cancel_mid_run
        stopped = run_cli("run", "--company-sso-id", COMPANY, "--no-progress")
        run_cli.overrides.prepare = None
        assert stopped.exit_code == exit_codes.CANCELLED, stopped.output
        assert "cancelled" in stopped.stderr
        doc = status_json(run_cli)
        assert (doc["status"], doc["records_processed"], doc["last_audit_id"]) == ("cancelled", 0, 0)
        again = run_cli("cancel", "--company-sso-id", COMPANY)
        assert again.exit_code == exit_codes.REFUSED
        refused = run_cli("trigger", "--company-sso-id", COMPANY)
        assert refused.exit_code == exit_codes.REFUSED
        assert refused.stderr.startswith("error: RESUME_OR_FRESH:")
        resumed = run_cli("trigger", "--company-sso-id", COMPANY, "--resume", "--json")
        assert resumed.exit_code == 0, resumed.output
        assert json.loads(resumed.stdout)["status"] == "in_progress"
        assert run_cli("run", "--company-sso-id", COMPANY, "--no-progress").exit_code == 0
        done = status_json(run_cli)
        assert done["status"] == "completed"
        assert logs(client) == done["records_migrated"] > 0
        fresh = run_cli("trigger", "--company-sso-id", COMPANY, "--fresh", "--json")
        assert fresh.exit_code == 0, fresh.output
        assert json.loads(fresh.stdout)["records_processed"] == 0
        assert logs(client) == 0
        assert sorted(j["status"] for j in jobs(client)) == ["in_progress", "rolled_back"]

    def test_a_rollback_right_after_a_cancelled_run_need_not_wait_for_its_lease(
        self, run_cli: Cli, client: mongomock.MongoClient
    ) -> None:
        """The run that sees the cancel hands its lease back in that write: `rollback` at once deletes
        every log, the batch written after the cancel too (no LEASE_HELD for lease_seconds)."""
        assert run_cli("trigger", "--company-sso-id", COMPANY).exit_code == 0
        run_cli.overrides.prepare = cancel_mid_run
        stopped = run_cli("run", "--company-sso-id", COMPANY, "--no-progress")
        run_cli.overrides.prepare = None
        assert stopped.exit_code == exit_codes.CANCELLED, stopped.output
        doc = status_json(run_cli)
        assert (doc["status"], doc["lease_owner"], doc["lease_expires_at"]) == ("cancelled", None, None)
        assert logs(client) > 0  # the batch in flight when the cancel came
        rolled = run_cli("rollback", "--company-sso-id", COMPANY, "--yes")
        assert rolled.exit_code == 0, rolled.output
        assert logs(client) == 0
        assert status_json(run_cli)["status"] == "rolled_back"

    def test_cancel_of_a_running_job_keeps_its_cursor(
        self, run_cli: Cli, client: mongomock.MongoClient
    ) -> None:
        """`cancel` on an in-progress job: cancelled, cursor unchanged, shown by --json."""
        assert run_cli("trigger", "--company-sso-id", COMPANY).exit_code == 0
        client["cdp"]["crm_activity_log_migration_jobs"].update_one({}, {"$set": {"last_audit_id": 100}})
        cancelled = run_cli("cancel", "--company-sso-id", COMPANY, "--json")
        assert cancelled.exit_code == 0, cancelled.output
        doc = json.loads(cancelled.stdout)
        assert (doc["status"], doc["last_audit_id"]) == ("cancelled", 100)

    def test_status_shows_the_lease_holder_and_its_expiry(
        self, run_cli: Cli, client: mongomock.MongoClient
    ) -> None:
        """A job held by a runner shows who holds it and until when, in the table and in --json."""
        assert run_cli("trigger", "--company-sso-id", COMPANY).exit_code == 0
        client["cdp"]["crm_activity_log_migration_jobs"].update_one(
            {},
            {
                "$set": {
                    "lease_owner": "host-a:4242",
                    "lease_expires_at": dt.datetime(2030, 1, 1, tzinfo=dt.UTC),
                }
            },
        )
        doc = status_json(run_cli)
        assert (doc["lease_owner"], doc["lease_expires_at"]) == ("host-a:4242", "2030-01-01T00:00:00Z")
        table = run_cli("status", "--company-sso-id", COMPANY)
        assert "host-a:4242 until 2030-01-01T00:00:00Z" in table.stdout


class TestUsman:
    def test_a_401_is_a_configuration_error_before_any_write(
        self, run_cli: Cli, client: mongomock.MongoClient
    ) -> None:
        """A wrong USMAN token: exit 3 with one line naming USMAN, no log written, the cursor unmoved."""
        assert run_cli("trigger", "--company-sso-id", COMPANY).exit_code == 0
        result = run_cli("run", "--company-sso-id", COMPANY, "--no-progress", CRM_AUDIT_USMAN_TOKEN="wrong")
        assert result.exit_code == exit_codes.CONFIG
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1
        assert lines[0].startswith("error: DIRECTORY_REFUSED:")
        assert "401" in lines[0]
        assert "wrong" not in result.stderr
        assert logs(client) == 0
        doc = status_json(run_cli)
        assert (doc["status"], doc["records_processed"], doc["lease_owner"]) == ("in_progress", 0, None)

    @pytest.mark.parametrize("code", [302, 201])
    def test_a_temporary_redirect_is_a_configuration_error_before_any_write(
        self, run_cli: Cli, client: mongomock.MongoClient, code: int
    ) -> None:
        """USMAN behind a 302 (a login page, a base URL that is not the endpoint), or answering 201 (an
        endpoint that creates rather than looks up): exit 3 with one line, no log written, the cursor
        unmoved. Before, the actors of the first rows were written degraded and the job halted (exit
        5), those logs drifted for good; this test fails there (for the 201 too)."""
        assert run_cli("trigger", "--company-sso-id", COMPANY).exit_code == 0
        with UsmanServer(default=status(code, {"Location": "https://login.example/"})) as redirecting:
            result = run_cli(
                "run", "--company-sso-id", COMPANY, "--no-progress", CRM_AUDIT_USMAN_BASE_URL=redirecting.url
            )
        assert result.exit_code == exit_codes.CONFIG, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1
        assert lines[0].startswith("error: DIRECTORY_REFUSED:")
        assert str(code) in lines[0]
        assert "login.example" not in result.stderr
        assert logs(client) == 0
        doc = status_json(run_cli)
        assert (doc["status"], doc["records_processed"], doc["lease_owner"]) == ("in_progress", 0, None)
        assert doc["actors_degraded"] == 0

    def test_one_entry_that_is_no_answer_degrades_that_users_actors_only(
        self, run_cli: Cli, client: mongomock.MongoClient, usman: UsmanServer, crm_dsn: str
    ) -> None:
        """USMAN gives one user an sso_id that is no id (a line break in it): that user's logs get the
        deleted user and are counted degraded, every other user keeps their SSO id. Before, the one
        entry degraded every actor of each answer it was in (here: all the users'); this test fails
        there (no log had an SSO user)."""
        import psycopg

        bad_email = "ketut.2@acme.example"
        bad_id = next(d["sso_id"] for d in sso_docs(TENANT) if d["email"] == bad_email)

        def garbling(server: UsmanServer, request: SeenRequest) -> Reply:
            reply = answer(server, request)
            data = json.loads(reply.body)["data"]
            for entry in data:
                if entry["email"] == bad_email:
                    entry["sso_id"] = bad_id + "\n"
            return Reply(200, json.dumps({"data": data}).encode())

        with psycopg.connect(crm_dsn) as conn:
            ketuts = {
                audit_id
                for (audit_id,) in conn.execute(
                    "SELECT a.id FROM acme.audits a JOIN acme.users u ON u.id = a.user_id "
                    "WHERE u.email = %s AND a.user_type = 'User'",
                    (bad_email,),
                )
            }
        assert ketuts
        assert run_cli("trigger", "--company-sso-id", COMPANY).exit_code == 0
        usman.default = garbling
        try:
            done = run_cli(
                "run", "--company-sso-id", COMPANY, "--no-progress", CRM_AUDIT_DEGRADED_THRESHOLD="1"
            )
        finally:
            usman.default = answer
        assert done.exit_code == 0, done.output
        stored = list(client["cdp"]["activity_logs"].find({"source_tag": "crm_migration"}))
        of_ketut = [doc for doc in stored if doc["metadata"]["crm_audit_id"] in ketuts]
        assert of_ketut
        assert {doc["actor"]["name"] for doc in of_ketut} == {"[Deleted CRM User]"}
        assert status_json(run_cli)["actors_degraded"] == len(of_ketut)
        others = {doc["actor"].get("id") for doc in stored if doc["actor"]["type"] == "user"}
        assert len(others) == len(sso_docs(TENANT)) - 1
        assert bad_id not in others

    def test_an_answer_naming_a_member_twice_gives_no_user_anothers_id(
        self, run_cli: Cli, client: mongomock.MongoClient, usman: UsmanServer, crm_dsn: str
    ) -> None:
        """A hostile or broken USMAN names ``email`` twice in each entry, the second time another asked
        user's: Python's JSON reader keeps the last, so every user got another's SSO id, the history
        of one person written to another. Now such an answer is not trusted: the actors degrade,
        counted, and no log carries an id that is not its author's. This test fails on the old code
        (logs with another user's id)."""
        import psycopg

        sso_of = {d["email"].lower(): d["sso_id"] for d in sso_docs(TENANT)}
        with psycopg.connect(crm_dsn) as conn:
            author = {
                audit_id: email.lower()
                for audit_id, email in conn.execute(
                    "SELECT a.id, u.email FROM acme.audits a JOIN acme.users u ON u.id = a.user_id "
                    "WHERE a.user_type = 'User'"
                )
            }
        assert run_cli("trigger", "--company-sso-id", COMPANY).exit_code == 0
        usman.default = email_twice
        try:
            done = run_cli(
                "run", "--company-sso-id", COMPANY, "--no-progress", CRM_AUDIT_DEGRADED_THRESHOLD="1"
            )
        finally:
            usman.default = answer
        assert done.exit_code == 0, done.output
        stored = list(client["cdp"]["activity_logs"].find({"source_tag": "crm_migration"}))
        by_user = [doc for doc in stored if doc["metadata"]["crm_audit_id"] in author]
        assert by_user
        for doc in by_user:
            given = doc["actor"].get("id")
            assert given is None or given == sso_of.get(author[doc["metadata"]["crm_audit_id"]]), doc
        assert status_json(run_cli)["actors_degraded"] > 0

    def test_an_outage_degrades_counts_and_halts_naming_usman(
        self, run_cli: Cli, client: mongomock.MongoClient
    ) -> None:
        """USMAN down: actors_degraded > 0, the job halts (exit 5) naming USMAN; --resume once it is back."""
        assert run_cli("trigger", "--company-sso-id", COMPANY).exit_code == 0
        down = {"CRM_AUDIT_USMAN_BASE_URL": "http://127.0.0.1:9", "CRM_AUDIT_USMAN_MAX_ATTEMPTS": "1"}
        halted = run_cli("run", "--company-sso-id", COMPANY, "--no-progress", **down)
        assert halted.exit_code == exit_codes.HALTED, halted.output
        assert "halted: USMAN:" in halted.stderr
        doc = status_json(run_cli)
        assert doc["status"] == "halted"
        assert doc["actors_degraded"] > 0
        assert doc["accuracy_pct"] < 100
        assert doc["halted_reason"].startswith("USMAN:")
        assert logs(client) == doc["records_migrated"]
        assert run_cli("trigger", "--company-sso-id", COMPANY, "--resume").exit_code == 0
        done = run_cli("run", "--company-sso-id", COMPANY, "--no-progress")
        assert done.exit_code == 0, done.output
        final = status_json(run_cli)
        assert final["status"] == "completed"
        assert final["actors_degraded"] == doc["actors_degraded"]
