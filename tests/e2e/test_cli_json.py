"""Every ``--json`` answer of ``crm-audit-migrate`` parsed and checked against docs/runner.md's schema.

PostgreSQL loaded from the corpus, a shared mongomock, a local USMAN; ``enqueue`` sends to kombu's
in-process ``memory://`` broker. The schemas are read from the docs' ``json schema=NAME`` blocks
(tests/support/doc_schemas.py), so the docs and the output cannot drift apart.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import cli_world
import mongomock
import pytest
from cli_world import COMPANY, TENANT, Cli, make_cli, seed_contacts
from click.testing import CliRunner

from crm_audit_adapters import strict_json
from crm_audit_adapters.cli import Overrides, cli, confirmation, exit_codes
from crm_audit_adapters.cli.options import JSON_SCHEMA_VERSION
from support.doc_schemas import documented_schemas, problems
from support.redis_server import free_port
from support.usman_server import UsmanServer

RECENT = "2024-04-14"
"""Trigger's cutoff: the newest ~150 acme rows keep each run quick on mongomock."""
C = ("--company-sso-id", COMPANY)
CLI = Path(sys.executable).with_name("crm-audit-migrate")
SCHEMAS = documented_schemas()
UNENVELOPED = {"status", "dry-run"}
"""Commands whose JSON predates the envelope: status (its own section) and the dry run's report."""


def checked(result: Any, command: str, exit_code: int = 0) -> dict[str, Any]:
    """The command's stdout parsed, after checking the exit code and the documented schema.

    ``command`` names the schema: ``"error"`` is the document of any command that refused.
    """
    assert result.exit_code == exit_code, result.output
    doc: dict[str, Any] = json.loads(result.stdout)
    assert problems(doc, SCHEMAS[command], SCHEMAS) == []
    if command != "error":
        assert doc["command"] == command
    assert doc["schema"] == JSON_SCHEMA_VERSION
    return doc


usman, client = cli_world.usman, cli_world.client  # the CLI world's fixtures


@pytest.fixture
def run_cli(crm_dsn: str, usman: UsmanServer, client: mongomock.MongoClient) -> Cli:
    run_cli = make_cli(crm_dsn, usman, client)
    seed_contacts(client)
    return run_cli


@pytest.fixture
def triggered(run_cli: Cli) -> Cli:
    assert run_cli("indexes", "up").exit_code == 0
    result = run_cli("trigger", *C, "--date-range-start", RECENT, "--json")
    assert checked(result, "trigger")["status"] == "in_progress"
    return run_cli


@pytest.fixture
def migrated(triggered: Cli) -> Cli:
    assert triggered("run", *C, "--no-progress").exit_code == 0
    return triggered


class TestEveryCommandHasItsSchema:
    def test_every_command_with_json_has_a_documented_schema(self) -> None:
        """Each command taking --json has a schema block in docs/runner.md, and each block is used."""
        with_json = {
            name
            for name, command in cli.commands.items()
            if any(param.name == "as_json" for param in command.params)
        }
        named = with_json - UNENVELOPED
        assert {"run", "rollback", "indexes", "cancel", "enqueue", "verify", "config"} <= named
        parts = {name for name, schema in SCHEMAS.items() if isinstance(schema, dict) and "command" in schema}
        assert parts == named | {"error"}

    def test_the_checker_reports_wrong_types_missing_and_undocumented_keys(self) -> None:
        """A document that strays from its schema in any way is reported, with the path of each problem."""
        good = {"command": "rollback", "schema": 1, "company_sso_id": "c", "job_id": None, "deleted": 3}
        assert problems(good, SCHEMAS["rollback"], SCHEMAS) == []
        bad = {"command": "rollback", "schema": 1, "company_sso_id": "c", "deleted": "3", "extra": 1}
        assert sorted(problems(bad, SCHEMAS["rollback"], SCHEMAS)) == [
            "$.deleted: expected integer, got '3'",
            "$: key 'extra' is not documented",
            "$: missing key 'job_id'",
        ]
        assert problems({"kind": "maybe"}, "#outcome_migrated | #outcome_none", SCHEMAS)
        assert problems(True, "integer", SCHEMAS)


@pytest.mark.postgres
class TestJsonOutput:
    def test_indexes_up_status_and_down(self, run_cli: Cli) -> None:
        """indexes --json gives the steps taken, each index's state and the recorded version."""
        up = checked(run_cli("indexes", "up", "--json"), "indexes")
        assert up["steps"]
        assert up["version"] == 35
        assert up["dirty"] is False
        assert {i["state"] for i in up["indexes"]} == {"present"}
        status = checked(run_cli("indexes", "status", "--json"), "indexes")
        assert status["steps"] == []
        assert status["indexes"] == up["indexes"]
        down = checked(run_cli("indexes", "down", "--yes", "--json"), "indexes")
        assert {i["state"] for i in down["indexes"]} == {"missing"}
        missing = checked(run_cli("indexes", "status", "--json"), "indexes", exit_codes.CONFIG)
        assert missing["direction"] == "status"

    def test_trigger_cancel_and_a_cancelled_run(self, triggered: Cli) -> None:
        """cancel --json is the job, cancelled; run --json still prints the job when it exits CANCELLED."""
        cancelled = checked(triggered("cancel", *C, "--json"), "cancel")
        assert cancelled["status"] == "cancelled"
        resumed = checked(triggered("trigger", *C, "--resume", "--json"), "trigger")
        assert resumed["job_id"] == cancelled["job_id"]

    def test_status_prints_the_job_or_not_started(self, run_cli: Cli) -> None:
        """status --json prints the job schema without the envelope, and for an account with no job
        the two keys of schema not_started, which the docs named nowhere: their job schema listed every
        key as present and a status enum without not_started."""
        none = run_cli("status", *C, "--json")
        assert none.exit_code == 0, none.output
        assert problems(json.loads(none.stdout), SCHEMAS["not_started"], SCHEMAS) == []
        assert run_cli("indexes", "up").exit_code == 0
        assert run_cli("trigger", *C, "--date-range-start", RECENT).exit_code == 0
        job = run_cli("status", *C, "--json")
        assert job.exit_code == 0, job.output
        assert problems(json.loads(job.stdout), SCHEMAS["job"], SCHEMAS) == []
        listed = run_cli("status", "--all", "--json")
        assert listed.exit_code == 0, listed.output
        assert [problems(doc, SCHEMAS["job"], SCHEMAS) for doc in json.loads(listed.stdout)] == [[]]

    def test_run_prints_the_final_job(self, triggered: Cli) -> None:
        """run --json prints the completed job's document on stdout, progress staying on stderr."""
        ran = checked(triggered("run", *C, "--json"), "run")
        assert ran["status"] == "completed"
        assert ran["records_processed"] > 0
        assert ran["lease_owner"] is None

    def test_rollback_counts_what_it_deleted(self, migrated: Cli) -> None:
        """rollback --json reports the logs deleted, then 0 when run again."""
        first = checked(migrated("rollback", *C, "--yes", "--json"), "rollback")
        assert first["deleted"] > 0
        assert first["job_id"]
        again = checked(migrated("rollback", *C, "--yes", "--json"), "rollback")
        assert again["deleted"] == 0

    def test_explain_one_row(self, migrated: Cli) -> None:
        """explain --json lists each stage's decision and the outcome."""
        doc = checked(migrated("explain", *C, "--audit-id", "5", "--json"), "explain")
        assert doc["stages"]
        assert doc["outcome"]["kind"] in ("migrated", "skipped", "failed")

    def test_enrich_and_its_dry_run(self, migrated: Cli) -> None:
        """enrich --json reports counts; with --dry-run it adds one plan per page."""
        planned = checked(migrated("enrich", *C, "--dry-run", "--json"), "enrich")
        assert planned["dry_run"] is True
        assert "plans" in planned
        applied = checked(migrated("enrich", *C, "--json"), "enrich")
        assert applied["dry_run"] is False
        assert "plans" not in applied

    def test_verify_clean_and_not_verified(self, migrated: Cli, client: mongomock.MongoClient) -> None:
        """verify --json has the same schema whether the account is clean (0) or not (10)."""
        clean = checked(migrated("verify", *C, "--json"), "verify")
        assert clean["clean"] is True
        assert clean["job"]["consistent"] is True
        logs = client["cdp"]["activity_logs"]
        logs.delete_one({"source_tag": "crm_migration"})
        found = checked(migrated("verify", *C, "--json"), "verify", exit_codes.NOT_VERIFIED)
        assert found["findings"]["missing"]["count"] == 1
        assert found["findings"]["missing"]["items"][0]["audit_id"] is not None

    def test_enqueue_lists_tasks_sent_and_accounts_refused(self, run_cli: Cli) -> None:
        """enqueue --json lists each task sent (per shard), and a refused account with its CODE (exit 4)."""
        assert run_cli("indexes", "up").exit_code == 0
        env = {"CRM_AUDIT_BROKER_URL": "memory://"}
        off = {**env, "CRM_AUDIT_ENABLED_COMPANIES": "someone-else"}
        refused = checked(run_cli("enqueue", *C, "--json", **off), "enqueue", exit_codes.REFUSED)
        assert refused["sent"] == []
        assert [(r["company_sso_id"], r["code"]) for r in refused["refused"]] == [(COMPANY, "FLAG_DISABLED")]
        sent = checked(run_cli("enqueue", *C, "--shards", "2", "--json", **env), "enqueue")
        assert [(s["company_sso_id"], s["task"], s["shard"]) for s in sent["sent"]] == [
            (COMPANY, "crm_audit.migrate_shard", 0),
            (COMPANY, "crm_audit.migrate_shard", 1),
        ]
        assert sent["refused"] == []

    def test_enqueue_all_enabled_goes_on_past_an_account_that_fails(
        self, run_cli: Cli, client: mongomock.MongoClient
    ) -> None:
        """An account bound to a schema without the CRM's tables is listed under refused with its code,
        and the accounts after it are still triggered; --json prints the one document (exit 4)."""
        assert run_cli("indexes", "up").exit_code == 0
        env = {
            "CRM_AUDIT_BROKER_URL": "memory://",
            "CRM_AUDIT_ENABLED_COMPANIES": "*",
            "CRM_AUDIT_TENANTS": f"{COMPANY}={TENANT},pubco=public,zed=globex",
        }
        doc = checked(run_cli("enqueue", "--all-enabled", "--json", **env), "enqueue", exit_codes.REFUSED)
        assert [s["company_sso_id"] for s in doc["sent"]] == [COMPANY]
        assert [(r["company_sso_id"], r["code"]) for r in doc["refused"]] == [
            ("pubco", "UNKNOWN_TENANT"),
            ("zed", "contacts_not_migrated"),
        ]
        assert (
            client["cdp"]["crm_activity_log_migration_jobs"].count_documents({"company_sso_id": "pubco"}) == 0
        )

    def test_enqueue_json_prints_its_document_when_the_broker_is_down(self, run_cli: Cli) -> None:
        """Exit 6 (the broker does not answer) still prints one enqueue document, nothing sent."""
        assert run_cli("indexes", "up").exit_code == 0
        down = {"CRM_AUDIT_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0"}
        doc = checked(run_cli("enqueue", *C, "--json", **down), "enqueue", exit_codes.UNAVAILABLE)
        assert (doc["sent"], doc["refused"]) == ([], [])
        assert (doc["error"]["code"], doc["error"]["exit_code"]) == ("UNAVAILABLE", exit_codes.UNAVAILABLE)
        assert "error: UNAVAILABLE: " in run_cli("enqueue", *C, **down).stderr

    def test_a_guard_refusing_trigger_prints_the_error_document(self, run_cli: Cli) -> None:
        """trigger --json refused by the flag (exit 4) prints one document with FLAG_DISABLED, the
        human line staying on stderr."""
        assert run_cli("indexes", "up").exit_code == 0
        off = {"CRM_AUDIT_ENABLED_COMPANIES": "someone-else"}
        doc = checked(run_cli("trigger", *C, "--json", **off), "error", exit_codes.REFUSED)
        assert (doc["error"]["code"], doc["error"]["exit_code"]) == ("FLAG_DISABLED", exit_codes.REFUSED)
        assert "error: FLAG_DISABLED: " in run_cli("trigger", *C, "--json", **off).stderr

    def test_a_result_backend_celery_refuses_leaves_no_job_row(
        self, run_cli: Cli, client: mongomock.MongoClient
    ) -> None:
        """A result backend Celery cannot build (rediss:// without ssl_cert_reqs) is CONFIG_INVALID
        before any trigger: no in-progress job is left without its task."""
        assert run_cli("indexes", "up").exit_code == 0
        env = {"CRM_AUDIT_BROKER_URL": "memory://", "CRM_AUDIT_RESULT_BACKEND": "rediss://127.0.0.1:6379/1"}
        result = run_cli("enqueue", *C, **env)
        assert result.exit_code == exit_codes.CONFIG, result.output
        assert "error: CONFIG_INVALID: " in result.stderr
        assert client["cdp"]["crm_activity_log_migration_jobs"].count_documents({}) == 0

    def test_enqueue_refuses_an_in_progress_job_whose_flag_is_now_off(self, triggered: Cli) -> None:
        """A job triggered while enabled is not sent again once the flag is off: FLAG_DISABLED, exit 4."""
        env = {"CRM_AUDIT_BROKER_URL": "memory://", "CRM_AUDIT_ENABLED_COMPANIES": "someone-else"}
        refused = checked(triggered("enqueue", *C, "--json", **env), "enqueue", exit_codes.REFUSED)
        assert refused["sent"] == []
        assert [(r["company_sso_id"], r["code"]) for r in refused["refused"]] == [(COMPANY, "FLAG_DISABLED")]
        everyone = triggered("enqueue", "--all-enabled", **env)
        assert everyone.exit_code == 0, everyone.output
        assert "sent" not in everyone.stdout
        assert (
            f"skipped 1 account(s) whose flag is off, their in-progress job not sent: {COMPANY}"
            in everyone.stderr
        )

    def test_enqueue_refuses_a_tenant_other_than_the_job_in_progress_reads(self, triggered: Cli) -> None:
        """--tenant globex for the acme-bound account whose job is in progress is TENANT_MISMATCH (exit 4),
        nothing sent, as trigger refuses it; the account's own tenant is sent as before."""
        env = {"CRM_AUDIT_BROKER_URL": "memory://"}
        wrong = checked(
            triggered("enqueue", *C, "--tenant", "globex", "--json", **env), "enqueue", exit_codes.REFUSED
        )
        assert wrong["sent"] == []
        assert [(r["company_sso_id"], r["code"]) for r in wrong["refused"]] == [(COMPANY, "TENANT_MISMATCH")]
        right = checked(triggered("enqueue", *C, "--tenant", TENANT, "--json", **env), "enqueue")
        assert [(s["task"], s["shard"]) for s in right["sent"]] == [("crm_audit.migrate_account", None)]

    def test_enqueue_says_when_shards_cannot_apply_to_the_job_in_progress(self, triggered: Cli) -> None:
        """--shards 3 for an account whose unsharded job is already in progress sends that job as it is
        (one migrate_account task) and says so on stderr, instead of ignoring --shards without a word."""
        env = {"CRM_AUDIT_BROKER_URL": "memory://"}
        result = triggered("enqueue", *C, "--shards", "3", "--json", **env)
        sent = checked(result, "enqueue")
        assert [(s["task"], s["shard"]) for s in sent["sent"]] == [("crm_audit.migrate_account", None)]
        assert "was already in progress with 1 shard(s): --shards 3 applies to a new job" in result.stderr

    def test_config_json_and_its_human_form(self, run_cli: Cli) -> None:
        """config --json is the settings, redacted; the default form is one line per key, redacted too."""
        dsn = {"CRM_AUDIT_DATABASE_URL": "postgresql://ro:hunter2@crm/crm"}
        doc = checked(run_cli("config", "--json", **dsn), "config")
        assert doc["settings"]["database_url"] == "postgresql://ro:***@crm/crm"
        assert doc["settings"]["tenants"] == {COMPANY: TENANT}
        human = run_cli("config", **dsn)
        assert human.exit_code == 0, human.output
        lines = dict(line.split(None, 1) for line in human.stdout.splitlines())
        assert lines["database_url"] == "postgresql://ro:***@crm/crm"
        assert lines[f"tenants.{COMPANY}"] == TENANT
        assert lines["loader.max_depth"] == str(doc["settings"]["loader"]["max_depth"])
        assert "hunter2" not in human.output


SECRET = "Kx9vQ7zR"
REFUSED_ARGS: dict[str, tuple[str, ...]] = {
    "cancel": C,
    "config": (),
    "enqueue": C,
    "enrich": C,
    "explain": (*C, "--audit-id", "1"),
    "indexes": ("status",),
    "rollback": (*C, "--yes"),
    "run": (*C, "--no-progress"),
    "status": C,
    "trigger": C,
    "verify": C,
}
"""A command line for every command taking --json; the settings below make each refuse."""
STORED_OPTIONS = [
    (name, option)
    for name in sorted(REFUSED_ARGS)
    for option in ("--company-sso-id", "--tenant")
    if any(option in p.opts for p in cli.commands[name].params)
]
"""Each command's options naming what PostgreSQL or MongoDB stores (an account, a tenant)."""


class TestErrorDocument:
    """A command given --json prints one JSON document on stdout when it refuses, too."""

    def test_every_command_with_json_is_covered(self) -> None:
        """The table of refusing command lines names every command that takes --json."""
        with_json = {n for n, c in cli.commands.items() if any(p.name == "as_json" for p in c.params)}
        assert set(REFUSED_ARGS) == with_json

    @pytest.mark.parametrize("command", sorted(REFUSED_ARGS))
    def test_a_refusal_prints_one_document_with_its_code(self, command: str) -> None:
        """Invalid settings (a malformed DSN holding a password): exit 3 as without --json, the error
        line on stderr, and on stdout one document carrying CONFIG_INVALID, its exit code, no secret."""
        env = {
            "CRM_AUDIT_DATABASE_URL": f"host=crm password={SECRET[:4]} {SECRET[4:]}tail",
            "CRM_AUDIT_MONGO_URI": "mongomock://",
            "CRM_AUDIT_SETTINGS": "",
        }
        args = [command, *REFUSED_ARGS[command], "--json"]
        overrides = Overrides(mongo_client=mongomock.MongoClient(tz_aware=True))
        result = CliRunner().invoke(cli, args, obj=overrides, env=env)
        plain = CliRunner().invoke(cli, args[:-1], obj=overrides, env=env)
        assert result.exit_code == plain.exit_code == exit_codes.CONFIG, result.output
        doc = checked(result, "enqueue" if command == "enqueue" else "error", exit_codes.CONFIG)
        assert doc["command"] == command
        assert doc["error"]["code"] == "CONFIG_INVALID"
        assert doc["error"]["exit_code"] == exit_codes.CONFIG
        assert "error: CONFIG_INVALID: " in result.stderr
        assert SECRET not in result.stdout
        assert SECRET[4:] not in result.stdout

    @pytest.mark.parametrize(("answer", "message"), [("n\n", "rollback declined"), ("", "no answer")])
    def test_a_declined_or_unanswered_rollback_prints_one_document(
        self, answer: str, message: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Declining, or giving no answer (EOF), at a terminal is DECLINED (exit 9) with its --json
        document; the unanswered prompt printed none. Nothing is deleted."""
        monkeypatch.setattr(confirmation, "stdin_is_a_terminal", lambda: True)  # CliRunner's is not
        client = mongomock.MongoClient(tz_aware=True)
        client["cdp"]["activity_logs"].insert_one({"company_sso_id": COMPANY, "source_tag": "crm_migration"})
        env = {"CRM_AUDIT_MONGO_URI": "mongomock://", "CRM_AUDIT_SETTINGS": ""}
        result = CliRunner().invoke(
            cli, ["rollback", *C, "--json"], obj=Overrides(mongo_client=client), env=env, input=answer
        )
        doc = checked(result, "error", exit_codes.DECLINED)
        assert (doc["command"], doc["error"]["code"]) == ("rollback", "DECLINED")
        assert message in doc["error"]["message"]
        assert client["cdp"]["activity_logs"].count_documents({}) == 1

    def test_rollback_refuses_bad_settings_before_it_asks(self) -> None:
        """A refused setting is CONFIG_INVALID at once: the operator is not asked to confirm a
        rollback that cannot run."""
        env = {"CRM_AUDIT_MONGO_URI": "mongomock://", "CRM_AUDIT_SETTINGS": "", "CRM_AUDIT_PAGE_SIZE": "x"}
        result = CliRunner().invoke(cli, ["rollback", *C, "--json"], env=env, input="y\n")
        doc = checked(result, "error", exit_codes.CONFIG)
        assert doc["error"]["code"] == "CONFIG_INVALID"
        assert "Delete every" not in result.stderr

    @pytest.mark.parametrize(
        "args",
        [
            ("status", "--json", "--company-sso-id", ""),
            ("verify", "--json"),
            ("run", *C, "--workers", "0", "--json"),
        ],
    )
    def test_a_usage_error_after_json_prints_one_document(self, args: tuple[str, ...]) -> None:
        """A missing, empty or out-of-range option (exit 2) printed no document under --json: --json is
        read first now, so the USAGE error document follows, as for any refusal."""
        result = CliRunner().invoke(cli, list(args), env={"CRM_AUDIT_SETTINGS": ""})
        doc = checked(result, "error", exit_codes.USAGE)
        assert (doc["command"], doc["error"]["code"]) == (args[0], "USAGE")
        assert doc["error"]["message"] in result.stderr

    @pytest.mark.parametrize(("command", "option"), STORED_OPTIONS)
    def test_an_id_that_is_not_utf8_is_a_usage_error(self, command: str, option: str) -> None:
        """An account id or tenant given as bytes that are not UTF-8 (``$'caf\\xe9'``: a lone
        surrogate to Python) can name nothing PostgreSQL or MongoDB stores, and their drivers refuse
        to encode it: the command ended INTERNAL (exit 1). It is a usage error (exit 2) before any
        server is reached, with its document."""
        args = [a for a in REFUSED_ARGS[command] if a not in C]
        env = {"CRM_AUDIT_MONGO_URI": "mongomock://", "CRM_AUDIT_SETTINGS": ""}
        given = [*C, option, "caf\udce9"] if option == "--tenant" else [option, "caf\udce9"]
        overrides = Overrides(mongo_client=mongomock.MongoClient(tz_aware=True))
        result = CliRunner().invoke(cli, [command, *args, *given, "--json"], obj=overrides, env=env)
        doc = checked(result, "error", exit_codes.USAGE)  # enqueue too: no task was sent
        assert doc["error"]["code"] == "USAGE"
        assert f"'{option}': holds bytes that are not UTF-8" in doc["error"]["message"]

    @pytest.mark.parametrize(
        "command", sorted(name for name, option in STORED_OPTIONS if option == "--tenant")
    )
    @pytest.mark.parametrize("blank", ["", "  "])
    def test_a_blank_tenant_is_a_usage_error(self, command: str, blank: str) -> None:
        """``--tenant ""`` was read as a tenant and refused by the guards (TENANT_MISMATCH, exit 4: "not
        ''"), or taken for an unbound account; a blank account id was already a usage error. A blank
        tenant is one too now (exit 2), with its document. Fails on the old code: exit 4."""
        args = [a for a in REFUSED_ARGS[command] if a not in C]
        env = {
            "CRM_AUDIT_MONGO_URI": "mongomock://",
            "CRM_AUDIT_SETTINGS": "",
            "CRM_AUDIT_TENANTS": f"{COMPANY}={TENANT}",
            "CRM_AUDIT_ENABLED_COMPANIES": COMPANY,
        }
        overrides = Overrides(mongo_client=mongomock.MongoClient(tz_aware=True))
        given = [command, *args, *C, "--tenant", blank, "--json"]
        result = CliRunner().invoke(cli, given, obj=overrides, env=env)
        doc = checked(result, "error", exit_codes.USAGE)
        assert "'--tenant': must not be empty" in doc["error"]["message"]

    def test_a_document_naming_a_file_whose_name_is_not_utf8_is_strict_json(self, tmp_path: Path) -> None:
        """The error document quotes the ``--settings`` file's name. A name with a byte that is not
        UTF-8 reached stdout as that raw byte (stdout's ``surrogateescape``): no JSON reader takes
        the document. It is valid UTF-8 now, the byte shown as U+FFFD and the message's exact bytes
        in ``not_utf8`` (``strict_json``), as the dry run's side files write it."""
        settings = os.fsencode(tmp_path) + b"/caf\xe9.toml"
        Path(os.fsdecode(settings)).write_text("mongo_uri = 3\n", encoding="utf-8")
        env = {**os.environ, "CRM_AUDIT_SETTINGS": ""}
        env = {k: v for k, v in env.items() if not k.startswith("CRM_AUDIT_") or k == "CRM_AUDIT_SETTINGS"}
        done = subprocess.run(
            [CLI, "--settings", settings, "status", *C, "--json"], capture_output=True, env=env, check=False
        )
        assert done.returncode == exit_codes.CONFIG, done.stderr
        text = done.stdout.decode("utf-8")  # strict: valid UTF-8
        assert "\\ud" not in text
        doc = json.loads(text)
        assert problems(doc, SCHEMAS["error"], SCHEMAS) == []
        assert "caf\ufffd.toml" in doc["error"]["message"]
        message = strict_json.restore(doc)["error"]["message"]
        assert os.fsencode(message).endswith(settings + b": mongo_uri: expected a string")

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (("verify", "--json", *C, "--sample"), "Option '--sample' requires an argument."),
            (("verify", *C, "--sample", "--json"), "'--json' is an option"),
            (("status", "--json", "--bogus"), "No such option '--bogus'."),
            (("staus", "--json"), "No such command 'staus'."),
            (("--json", "status", *C), "No such option '--json'."),
            (("status", "--json", "--settings"), "Option '--settings' requires an argument."),
            (("status", "--json", *C, "--settings", "--debug"), "'--debug' is an option"),
        ],
    )
    def test_every_usage_error_under_json_prints_one_document(
        self, args: tuple[str, ...], message: str
    ) -> None:
        """A usage error click's parser meets (a value missing at the end, an unknown option, an unknown
        command, --json given to the group) printed no document, and a missing value no "(see … --help)"
        hint either: --json is read ahead of the parse now, so each prints the USAGE document (exit 2),
        named for the command the line names, and the hint. Fails on the old code: stdout was empty."""
        result = CliRunner().invoke(cli, list(args), env={"CRM_AUDIT_SETTINGS": ""})
        doc = checked(result, "error", exit_codes.USAGE)
        command = next(a for a in args if not a.startswith("-"))
        assert (doc["command"], doc["error"]["code"]) == (command, "USAGE")
        assert message in doc["error"]["message"]
        assert "--help')" in result.stderr

    def test_an_unknown_option_without_json_prints_no_document(self) -> None:
        """Without --json the usage error is the stderr line alone."""
        result = CliRunner().invoke(cli, ["status", "--bogus"], env={"CRM_AUDIT_SETTINGS": ""})
        assert result.exit_code == exit_codes.USAGE
        assert result.stdout == ""
        assert "error: USAGE: No such option" in result.stderr


ID_OPTIONS = sorted(
    (name, option)
    for name, command in cli.commands.items()
    for param in command.params
    for option in param.opts
    if option in ("--company-sso-id", "--tenant", "--audit-id")
)
"""Every command's id options: an account, a tenant schema, an audit row."""


@pytest.mark.parametrize("value", ["--json", "-x"])
@pytest.mark.parametrize(("command", "option"), ID_OPTIONS)
def test_an_option_looking_id_is_a_usage_error(command: str, option: str, value: str) -> None:
    """``trigger --company-sso-id --json`` took --json for the account's id and ran for an account so
    named, its --json unread. A word starting with "-" after an id option is a usage error now (exit 2,
    before any setting is read), in every command. Fails on the old code: the command read its
    settings (CONFIG_INVALID, exit 3) or ran."""
    env = {"CRM_AUDIT_SETTINGS": "", "CRM_AUDIT_MONGO_URI": "", "CRM_AUDIT_DATABASE_URL": ""}
    result = CliRunner().invoke(cli, [command, option, value], env=env)
    assert result.exit_code == exit_codes.USAGE, result.output
    assert f"error: USAGE: Option '{option}' requires an argument: '{value}'" in result.stderr
    joined = CliRunner().invoke(cli, [command, f"{option}={value}"], env=env)
    assert "requires an argument" not in joined.stderr  # an id starting with "-" is given joined
