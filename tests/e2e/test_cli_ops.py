"""``crm-audit-migrate`` end to end: PostgreSQL loaded from the corpus, mongomock, a local USMAN.

The CLI gets one shared ``mongomock.MongoClient`` through ``Overrides(mongo_client=...)`` (passed
as click's ``obj``), so the CDP's state outlives each command like a real server's would.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
from pathlib import Path
from typing import Any

import cli_world
import mongomock
import pytest
from cli_world import COMPANY, TENANT, Cli, clean_world, make_cli, seed_contacts

from crm_audit_adapters.bootstrap import Runtime
from crm_audit_adapters.cli import exit_codes
from crm_audit_adapters.mongo import decode_activity_log
from support.corpus_account import World
from support.page_workers import KillsItsWorkerOnceForked
from support.usman_server import UsmanServer

pytestmark = pytest.mark.postgres
usman, client, run_cli = cli_world.usman, cli_world.client, cli_world.run_cli  # the CLI world's fixtures


@pytest.fixture(scope="module")
def clean() -> World:
    return clean_world()


def status_of(run_cli: Cli) -> dict[str, Any]:
    result = run_cli("status", "--company-sso-id", COMPANY, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


class TestOpsWalkThrough:
    def test_trigger_run_status_rollback_matches_the_in_memory_run(
        self, run_cli: Cli, client: mongomock.MongoClient, clean: World
    ) -> None:
        """One account migrates through the CLI exactly as the in-memory pipeline does, then rolls back."""
        assert status_of(run_cli)["status"] == "not_started"
        client["cdp"]["activity_logs"].insert_one({"company_sso_id": COMPANY, "category": "native"})

        triggered = run_cli("trigger", "--company-sso-id", COMPANY, "--tenant", TENANT)
        assert triggered.exit_code == 0, triggered.output
        assert "in_progress" in triggered.stdout

        again = run_cli("trigger", "--company-sso-id", COMPANY, "--tenant", TENANT)
        assert again.exit_code == exit_codes.REFUSED
        assert again.stderr.strip().startswith("error: JOB_ALREADY_RUNNING:")
        assert len(again.stderr.strip().splitlines()) == 1

        ran = run_cli("run", "--company-sso-id", COMPANY)
        assert ran.exit_code == 0, ran.output
        assert "rows/s" in ran.stderr
        assert ran.stdout.startswith("completed:")

        status = status_of(run_cli)
        expected = clean.jobs.latest(clean.company)
        assert expected is not None
        assert status["status"] == "completed"
        assert status["progress_pct"] == 100.0
        assert (status["records_processed"], status["records_migrated"]) == (
            expected.tally.processed,
            expected.tally.migrated,
        )
        assert status["skipped"] == dict(expected.tally.skipped)
        assert status["failed"] == dict(expected.tally.failed)
        assert status["last_audit_id"] == expected.last_audit_id

        stored = client["cdp"]["activity_logs"].find({"source_tag": "crm_migration"}, {"_id": 0})
        logs = sorted((decode_activity_log(doc) for doc in stored), key=lambda log: log.external_id)
        want = sorted(clean.logs.logs, key=lambda log: log.external_id)
        assert [log.external_id for log in logs] == [log.external_id for log in want]
        assert [(log.customer_id, log.category, log.action, log.actor) for log in logs] == [
            (log.customer_id, log.category, log.action, log.actor) for log in want
        ]

        assert "user" in client["cdp"]["activity_logs"].distinct("actor.type")

        completed = run_cli("trigger", "--company-sso-id", COMPANY, "--tenant", TENANT)
        assert completed.exit_code == exit_codes.REFUSED
        assert "ALREADY_COMPLETED" in completed.stderr

        rolled = run_cli("rollback", "--company-sso-id", COMPANY, "--yes")
        assert rolled.exit_code == 0, rolled.output
        assert f"deleted {expected.tally.migrated} migrated log(s)" in rolled.stdout
        assert client["cdp"]["activity_logs"].count_documents({}) == 1  # the native log stays
        twice = run_cli("rollback", "--company-sso-id", COMPANY, "--yes")
        assert "deleted 0 migrated log(s)" in twice.stdout
        assert status_of(run_cli)["status"] == "rolled_back"

    def test_status_table_lists_counts_per_reason(self, run_cli: Cli) -> None:
        """The default status output is a readable table of the job."""
        run_cli("trigger", "--company-sso-id", COMPANY, "--tenant", TENANT)
        table = run_cli("status", "--company-sso-id", COMPANY)
        assert table.exit_code == 0
        lines = dict(line.split(None, 1) for line in table.stdout.splitlines())
        assert lines["status"] == "in_progress"
        assert lines["progress"] == "0.00%"

    def test_explain_shows_each_stage_for_one_audit(self, run_cli: Cli) -> None:
        """explain prints the stages and the outcome of one row, and JSON on request."""
        explained = run_cli(
            "explain", "--company-sso-id", COMPANY, "--tenant", TENANT, "--audit-id", "5", "--json"
        )
        assert explained.exit_code == 0, explained.output
        doc = json.loads(explained.stdout)
        assert [s["stage"] for s in doc["stages"]][:2] == ["row", "scope"]
        assert doc["outcome"]["kind"] in {"migrated", "skipped", "failed"}
        text = run_cli("explain", "--company-sso-id", COMPANY, "--tenant", TENANT, "--audit-id", "5")
        assert text.stdout.startswith(f"audit {TENANT}#5:")
        missing = run_cli("explain", "--company-sso-id", COMPANY, "--tenant", TENANT, "--audit-id", "999999")
        assert missing.exit_code == exit_codes.REFUSED

    def test_run_without_a_job_is_refused(self, run_cli: Cli) -> None:
        """run before trigger names the missing step."""
        result = run_cli("run", "--company-sso-id", COMPANY)
        assert result.exit_code == exit_codes.REFUSED
        assert "trigger" in result.stderr


class TestGuardsThroughTheCli:
    def test_flag_off_exits_refused_with_one_line(self, run_cli: Cli) -> None:
        """A company that is not enabled gets FLAG_DISABLED as one line and exit code 4."""
        result = run_cli(
            "trigger", "--company-sso-id", COMPANY, "--tenant", TENANT, CRM_AUDIT_ENABLED_COMPANIES=""
        )
        assert result.exit_code == exit_codes.REFUSED
        assert (
            result.stderr
            == f"error: FLAG_DISABLED: the CRM audit migration is not enabled for company {COMPANY}\n"
        )

    def test_low_coverage_exits_refused_and_creates_no_job(
        self, crm_dsn: str, usman: UsmanServer, client: mongomock.MongoClient
    ) -> None:
        """Too few synced contacts: contacts_not_migrated, and status stays not_started."""
        cli = make_cli(crm_dsn, usman, client)
        assert cli("indexes", "up").exit_code == 0
        seed_contacts(client, [])
        result = cli("trigger", "--company-sso-id", COMPANY, "--tenant", TENANT)
        assert result.exit_code == exit_codes.REFUSED
        assert "contacts_not_migrated" in result.stderr
        assert status_of(cli)["status"] == "not_started"

    def test_missing_database_url_is_a_configuration_error(self, run_cli: Cli) -> None:
        """Without a CRM DSN the runner says which setting is missing and exits 3."""
        result = run_cli(
            "trigger", "--company-sso-id", COMPANY, "--tenant", TENANT, CRM_AUDIT_DATABASE_URL=""
        )
        assert result.exit_code == exit_codes.CONFIG
        assert "CRM_AUDIT_DATABASE_URL" in result.stderr

    def test_config_never_prints_secrets(self, run_cli: Cli) -> None:
        """config shows the settings with the DSN password and the USMAN token redacted."""
        result = run_cli("config", CRM_AUDIT_DATABASE_URL="postgresql://ro:hunter2@crm/crm")
        assert result.exit_code == 0
        assert "hunter2" not in result.output
        assert "s3cr3t" not in result.output
        assert "postgresql://ro:***@crm/crm" in result.output


class TestInterruptAndDegrade:
    def test_ctrl_c_finishes_the_batch_saves_and_resumes_to_the_same_result(
        self, run_cli: Cli, clean: World
    ) -> None:
        """SIGINT mid-run exits 130 with progress saved; the next run completes like a clean one."""
        run_cli("trigger", "--company-sso-id", COMPANY, "--tenant", TENANT)

        def interrupt_after_two_batches(runtime: Runtime) -> None:
            store = runtime.logs
            calls = {"n": 0}

            class Interrupting:
                def __getattr__(self, name: str) -> Any:
                    return getattr(store, name)

                def insert_batch(self, logs: Any) -> Any:
                    calls["n"] += 1
                    result = store.insert_batch(logs)
                    if calls["n"] == 2:
                        signal.raise_signal(signal.SIGINT)
                    return result

            runtime.logs = Interrupting()  # type: ignore[misc,assignment]

        run_cli.overrides.prepare = interrupt_after_two_batches
        stopped = run_cli("run", "--company-sso-id", COMPANY)
        run_cli.overrides.prepare = None
        assert stopped.exit_code == exit_codes.INTERRUPTED, stopped.output
        assert "progress saved" in stopped.stderr
        halfway = status_of(run_cli)
        assert halfway["status"] == "in_progress"
        assert 0 < halfway["last_audit_id"] < 759

        resumed = run_cli("run", "--company-sso-id", COMPANY)
        assert resumed.exit_code == 0, resumed.output
        expected = clean.jobs.latest(clean.company)
        assert expected is not None
        final = status_of(run_cli)
        assert (final["records_processed"], final["records_migrated"]) == (
            expected.tally.processed,
            expected.tally.migrated,
        )
        assert final["skipped"] == dict(expected.tally.skipped)

    def test_a_killed_worker_ends_worker_lost_and_the_next_run_resumes_exactly_once(
        self, run_cli: Cli, client: mongomock.MongoClient, clean: World, tmp_path: Path
    ) -> None:
        """``run --workers 2`` whose worker is killed (SIGKILL) as it starts, the runner's first row
        waiting until it was (so the runner cannot finish the account alone first): WORKER_LOST,
        exit 6, the lease handed back; the next run completes with every log of the clean run, once.
        Every command runs the test's chain (the job keeps its trigger's mark, chain included); the
        last one without the kill."""
        forked = tmp_path / "worker-forked"

        def worker_dies(runtime: Runtime) -> None:
            runtime._rule_chain = KillsItsWorkerOnceForked(forked)  # type: ignore[attr-defined]

        def workers_live(runtime: Runtime) -> None:
            runtime._rule_chain = KillsItsWorkerOnceForked(forked, kills=False)  # type: ignore[attr-defined]

        run = ("run", "--company-sso-id", COMPANY, "--no-progress", "--workers", "2")
        run_cli.overrides.prepare = worker_dies
        run_cli("trigger", "--company-sso-id", COMPANY, "--tenant", TENANT)
        lost = run_cli(*run, CRM_AUDIT_PAGE_SIZE="10")
        run_cli.overrides.prepare = workers_live
        assert lost.exit_code == exit_codes.UNAVAILABLE, lost.output
        assert lost.stderr.strip().splitlines()[-1].startswith("error: WORKER_LOST: "), lost.stderr
        assert forked.exists()
        halfway = status_of(run_cli)
        assert (halfway["status"], halfway["lease_owner"]) == ("in_progress", None)

        resumed = run_cli(*run, CRM_AUDIT_PAGE_SIZE="10")
        assert resumed.exit_code == 0, resumed.output
        expected = clean.jobs.latest(clean.company)
        assert expected is not None
        final = status_of(run_cli)
        assert final["status"] == "completed"
        assert (final["records_processed"], final["records_migrated"]) == (
            expected.tally.processed,
            expected.tally.migrated,
        )
        stored = client["cdp"]["activity_logs"].find({"source_tag": "crm_migration"}, {"_id": 0})
        want = sorted(log.external_id for log in clean.logs.logs)
        assert sorted(doc["external_id"] for doc in stored) == want

    def test_dead_usman_with_a_lenient_threshold_completes_with_degraded_actors(
        self, crm_dsn: str, usman: UsmanServer, client: mongomock.MongoClient, clean: World
    ) -> None:
        """Under a degraded threshold of 100% an outage only degrades actors; nothing is dropped."""
        cli = make_cli(
            crm_dsn,
            usman,
            client,
            CRM_AUDIT_USMAN_BASE_URL="http://127.0.0.1:9",
            CRM_AUDIT_USMAN_MAX_ATTEMPTS="1",
            CRM_AUDIT_DEGRADED_THRESHOLD="1.0",
        )
        assert cli("indexes", "up").exit_code == 0
        seed_contacts(client)
        cli("trigger", "--company-sso-id", COMPANY, "--tenant", TENANT)
        result = cli("run", "--company-sso-id", COMPANY, "--no-progress")
        assert result.exit_code == 0, result.output
        expected = clean.jobs.latest(clean.company)
        assert expected is not None
        status = status_of(cli)
        assert status["records_migrated"] == expected.tally.migrated
        assert status["actors_degraded"] > 0
        assert status["accuracy_pct"] < 100
        kinds = client["cdp"]["activity_logs"].distinct("actor.type")
        assert "user" not in kinds


class TestUnreadableJob:
    def test_status_all_lists_the_other_accounts_then_names_the_unreadable_job(
        self, run_cli: Cli, client: mongomock.MongoClient
    ) -> None:
        """One hand-made job document made `status --all` INTERNAL for every account, and `status` of
        its account too. Now the other accounts are listed and the command ends JOB_UNREADABLE, exit 3,
        naming the document; `status` of that account is the same typed error."""
        triggered = run_cli("trigger", "--company-sso-id", COMPANY, "--tenant", TENANT)
        assert triggered.exit_code == 0, triggered.output
        client["cdp"]["crm_activity_log_migration_jobs"].insert_one(
            {
                "_id": "junk-1",
                "company_sso_id": "zzz-other",
                "status": "completed",
                "created_at": "2026-01-01",
            }
        )
        listing = run_cli("status", "--all")
        assert listing.exit_code == exit_codes.CONFIG, listing.output
        assert COMPANY in listing.stdout
        assert "zzz-other" not in listing.stdout
        assert listing.stderr.startswith(
            "error: JOB_UNREADABLE: job junk-1 of account zzz-other cannot be read"
        )
        as_json = run_cli("status", "--all", "--json")
        assert as_json.exit_code == exit_codes.CONFIG
        assert [s["company_sso_id"] for s in json.loads(as_json.stdout)] == [COMPANY]
        one = run_cli("status", "--company-sso-id", "zzz-other")
        assert one.exit_code == exit_codes.CONFIG
        assert one.stderr.startswith("error: JOB_UNREADABLE: job junk-1")


class TestStatusAllRunner:
    def test_status_all_says_whether_anything_runs_a_job_in_progress(
        self, run_cli: Cli, client: mongomock.MongoClient
    ) -> None:
        """A triggered job nothing runs (a broker that lost its task) reads `none`, a live lease
        `live`, one past its expiry (a dead runner) `expired`: `in_progress` alone never says which."""
        triggered = run_cli("trigger", "--company-sso-id", COMPANY, "--tenant", TENANT)
        assert triggered.exit_code == 0, triggered.output
        jobs = client["cdp"]["crm_activity_log_migration_jobs"]

        def line() -> list[str]:
            listing = run_cli("status", "--all")
            assert listing.exit_code == 0, listing.output
            header, row = listing.stdout.splitlines()
            assert header.split() == [
                "company_sso_id", "status", "progress", "processed", "failed", "runner", "job_id",
            ]  # fmt: skip
            return row.split()

        assert line()[1:2] + line()[5:6] == ["in_progress", "none"]
        now = dt.datetime.now(dt.UTC)
        for expires, shown in [
            (now + dt.timedelta(hours=1), "live"),
            (now - dt.timedelta(hours=1), "expired"),
        ]:
            jobs.update_one(
                {"company_sso_id": COMPANY},
                {"$set": {"lease_owner": "h:1:celery", "lease_expires_at": expires}},
            )
            assert line()[5] == shown
