"""The README's commands, run as written: the quick start's dry run and the ops walk-through.

The walk-through's blocks are the ones marked ``<!-- walk-through: NAME -->`` in README.md. The
``settings`` block names the operator's systems, so its server addresses, token and account are
replaced by the suite's (PostgreSQL loaded from the corpus, a shared mongomock, a local USMAN);
every other line of it is evaluated as written, and the block must set exactly the variables
below. The command blocks run line by line, as written, through the real CLI.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import threading
from pathlib import Path

import cli_world
import mongomock
import pytest
from cli_world import COMPANY, TENANT, Cli, clean_world, seed_contacts

from crm_audit_adapters.cli import Overrides, exit_codes
from crm_audit_adapters.usman_stub import make_server
from support.corpus_account import World
from support.usman_server import TOKEN, UsmanServer

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
_MARKED = re.compile(r"^<!-- walk-through: ([\w-]+) -->\n```bash\n(.*?)^```", re.S | re.M)
_VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)\}")
SITE_SPECIFIC = {
    "CRM_AUDIT_DATABASE_URL",
    "CRM_AUDIT_MONGO_URI",
    "CRM_AUDIT_USMAN_BASE_URL",
    "CRM_AUDIT_USMAN_TOKEN",
    "COMPANY",
}
"""What the settings block gives for the operator's own systems: the suite gives its own."""
SETTINGS = {*SITE_SPECIFIC, "CRM_AUDIT_ENABLED_COMPANIES", "CRM_AUDIT_TENANTS"}


def readme_blocks() -> dict[str, str]:
    return dict(_MARKED.findall(README.read_text(encoding="utf-8")))


def command_lines(block: str) -> list[list[str]]:
    """Each non-empty line as the shell splits it, comments dropped."""
    return [words for line in block.splitlines() if (words := shlex.split(line, comments=True))]


def expand(word: str, variables: dict[str, str]) -> str:
    return _VARIABLE.sub(lambda m: variables[m.group(1) or m.group(2)], word)


def settings_of(block: str, site: dict[str, str]) -> dict[str, str]:
    """The variables the settings block sets: the suite's for ``SITE_SPECIFIC``, else as written."""
    variables: dict[str, str] = {}
    for words in command_lines(block):
        if words[0] in (".", "source"):
            assert words[1:] == [".venv/bin/activate"], words  # the venv of the quick start
            continue
        for assignment in words[1:] if words[0] == "export" else words:
            name, equals, value = assignment.partition("=")
            assert equals, f"not an assignment: {words}"
            variables[name] = site[name] if name in SITE_SPECIFIC else expand(value, variables)
    return variables


usman = cli_world.usman  # the CLI world's fixture


@pytest.fixture(scope="module")
def clean() -> World:
    return clean_world()


@pytest.fixture
def client() -> mongomock.MongoClient:
    client = mongomock.MongoClient(tz_aware=True)
    seed_contacts(client)
    return client


@pytest.fixture
def site(crm_dsn: str, usman: UsmanServer) -> dict[str, str]:
    return {
        "CRM_AUDIT_DATABASE_URL": crm_dsn,
        "CRM_AUDIT_MONGO_URI": "mongomock://",
        "CRM_AUDIT_USMAN_BASE_URL": usman.url,
        "CRM_AUDIT_USMAN_TOKEN": TOKEN,
        "COMPANY": COMPANY,
    }


class TestQuickStart:
    def test_the_first_two_commands_are_the_dry_run_example_and_the_check(self, tmp_path: Path) -> None:
        """The README opens with venv + dry-run --example and scripts/check; the dry run runs as written."""
        first = README.read_text(encoding="utf-8").split("```bash\n", 1)[1].split("```", 1)[0]
        lines = command_lines(first)
        assert [words[0] for words in lines] == ["python3", "scripts/check"]
        steps = " ".join(lines[0]).split(" && ")
        assert steps[:2] == ["python3 -m venv .venv", ".venv/bin/pip install -e .[adapters]"]
        program, *args = steps[2].split()
        assert program == ".venv/bin/crm-audit-migrate"
        assert os.access(ROOT / "scripts" / "check", os.X_OK)
        result = subprocess.run(
            [str(Path(sys.executable).with_name("crm-audit-migrate")), *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert report["processed"] == 151
        logs = tmp_path / "crm-audit-example-logs.jsonl"
        assert len(logs.read_text(encoding="utf-8").splitlines()) == report["migrated"] > 0
        assert result.stderr.splitlines()[-1].endswith(f"logs: {logs}; report: stdout")


@pytest.mark.postgres
class TestOpsWalkThrough:
    def test_the_settings_block_sets_what_the_commands_need(self, site: dict[str, str]) -> None:
        """The settings block sets exactly these variables; its flag and binding enable the account."""
        settings = settings_of(readme_blocks()["settings"], site)
        assert set(settings) == SETTINGS
        assert settings["CRM_AUDIT_ENABLED_COMPANIES"] == COMPANY
        assert settings["CRM_AUDIT_TENANTS"] == f"{COMPANY}={TENANT}"

    def test_the_walk_through_runs_as_written(
        self, site: dict[str, str], client: mongomock.MongoClient, clean: World
    ) -> None:
        """Every line of the migrate and undo blocks exits 0 and the account ends as a clean run leaves it."""
        blocks = readme_blocks()
        settings = settings_of(blocks["settings"], site)
        cli = Cli({**settings, "CRM_AUDIT_SETTINGS": ""}, Overrides(mongo_client=client))
        native = {"company_sso_id": COMPANY, "category": "deal", "source_tag": "live_feed"}
        client["cdp"]["activity_logs"].insert_one(dict(native))
        ran: list[str] = []
        for name in ("migrate", "undo"):
            for words in command_lines(blocks[name]):
                assert words[0] == "crm-audit-migrate", words
                args = [expand(word, settings) for word in words[1:]]
                result = cli(*args)
                assert result.exit_code == exit_codes.OK, f"{shlex.join(words)}: {result.output}"
                ran.append(args[0])
        assert {"indexes", "trigger", "run", "status", "verify", "rollback", "cancel"} <= set(ran)
        expected = clean.jobs.latest(clean.company)
        assert expected is not None
        final = json.loads(cli("status", "--company-sso-id", COMPANY, "--json").stdout)
        assert final["status"] == "completed"
        assert final["records_migrated"] == expected.tally.migrated
        logs = client["cdp"]["activity_logs"]
        assert logs.count_documents({"source_tag": "crm_migration"}) == expected.tally.migrated
        assert logs.count_documents({"source_tag": "live_feed"}) == 1

    def test_without_usman_as_the_readme_says(
        self, site: dict[str, str], client: mongomock.MongoClient
    ) -> None:
        """Without a USMAN URL, indexes, trigger, status and cancel work while run and verify refuse
        (CONFIG_INVALID); with the stub, every row is accounted for, no actor is a user, verify is clean."""
        settings = settings_of(readme_blocks()["settings"], site)
        del settings["CRM_AUDIT_USMAN_BASE_URL"], settings["CRM_AUDIT_USMAN_TOKEN"]
        cli = Cli({**settings, "CRM_AUDIT_SETTINGS": ""}, Overrides(mongo_client=client))
        assert cli("indexes", "up").exit_code == exit_codes.OK
        for command in ("trigger", "status", "cancel"):
            assert cli(command, "--company-sso-id", COMPANY).exit_code == exit_codes.OK
        assert cli("trigger", "--company-sso-id", COMPANY, "--resume").exit_code == exit_codes.OK
        refused = cli("run", "--company-sso-id", COMPANY)
        assert refused.exit_code == exit_codes.CONFIG
        assert refused.stderr.startswith("error: CONFIG_INVALID:")
        assert "usman.base_url" in refused.stderr
        stub = make_server(0)  # the README's stub, on a free port
        threading.Thread(target=stub.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        try:
            stub_url = {"CRM_AUDIT_USMAN_BASE_URL": f"http://127.0.0.1:{stub.server_address[1]}"}
            ran = cli("run", "--company-sso-id", COMPANY, "--json", **stub_url)
            verified = cli("verify", "--company-sso-id", COMPANY, **stub_url)
        finally:
            stub.shutdown()
            stub.server_close()
        assert ran.exit_code == exit_codes.OK, ran.output
        assert verified.exit_code == exit_codes.OK, verified.output
        unverified = cli("verify", "--company-sso-id", COMPANY)
        assert unverified.exit_code == exit_codes.CONFIG
        assert "usman.base_url" in unverified.stderr
        job = json.loads(ran.stdout)
        assert job["records_failed"] == 0
        assert job["records_processed"] == job["records_migrated"] + job["records_skipped"]
        actors = {log["actor"]["type"] for log in client["cdp"]["activity_logs"].find()}
        assert "user" not in actors
        assert "deleted_user" in actors
