"""docs/runner.md's command blocks, run as written: the first migration's walk-through, then the rollback.

The blocks are the ones marked ``<!-- commands: NAME -->``. Their ``export`` lines name the operator's
systems, so the suite's are used instead (PostgreSQL loaded from the corpus, a shared mongomock, a
local USMAN) and the account ``9b2f…`` is the suite's; optional parts (``[--shards N]``) are left out.
Every other word runs through the real CLI as written.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import cli_world
import mongomock
import pytest
from cli_world import COMPANY, Cli, make_cli, seed_contacts

from crm_audit_adapters.cli import exit_codes
from support.usman_server import UsmanServer

pytestmark = pytest.mark.postgres
usman, client = cli_world.usman, cli_world.client  # the CLI world's fixtures

RUNNER_DOC = Path(__file__).resolve().parents[2] / "docs" / "runner.md"
_MARKED = re.compile(r"^<!-- commands: ([\w-]+) -->\n```bash\n(.*?)^```", re.S | re.M)
ACCOUNT = "9b2f…"
"""The placeholder account of the docs' examples."""
SETTINGS = {
    "CRM_AUDIT_DATABASE_URL",
    "CRM_AUDIT_MONGO_URI",
    "CRM_AUDIT_USMAN_BASE_URL",
    "CRM_AUDIT_USMAN_TOKEN",
    "CRM_AUDIT_ENABLED_COMPANIES",
    "CRM_AUDIT_TENANTS",
}
"""What the walk-through's ``export`` lines set: the suite sets each for its own systems."""


def commands(name: str) -> list[list[str]]:
    """The block's ``crm-audit-migrate`` lines as the shell splits them, the placeholder account the
    suite's; the ``export`` lines set the settings the suite gives (checked, then dropped)."""
    block = dict(_MARKED.findall(RUNNER_DOC.read_text(encoding="utf-8")))[name]
    lines: list[list[str]] = []
    for line in block.splitlines():
        words = shlex.split(re.sub(r"\[[^\]]*\]", " ", line), comments=True)
        if not words:
            continue
        if words[0] == "export":
            assert {word.partition("=")[0] for word in words[1:]} <= SETTINGS, words
            continue
        assert words[0] == "crm-audit-migrate", words
        lines.append([COMPANY if word == ACCOUNT else word for word in words[1:]])
    return lines


def status_of(cli: Cli) -> dict[str, object]:
    result = cli("status", "--company-sso-id", COMPANY, "--json")
    assert result.exit_code == exit_codes.OK, result.output
    doc: dict[str, object] = json.loads(result.stdout)
    return doc


@pytest.fixture
def cli(crm_dsn: str, usman: UsmanServer, client: mongomock.MongoClient) -> Cli:
    seed_contacts(client)
    return make_cli(crm_dsn, usman, client)


class TestRunnerDocBlocks:
    def test_the_first_migration_then_the_rollback_run_as_written(
        self, cli: Cli, client: mongomock.MongoClient
    ) -> None:
        """Each line exits 0; the rollback deletes every migrated log and no native one, a second
        deletes nothing, and the rolled-back job neither resumes nor runs until a new trigger."""
        logs = client["cdp"]["activity_logs"]
        logs.insert_one({"company_sso_id": COMPANY, "category": "deal", "source_tag": "live_feed"})
        for args in commands("first-migration"):
            result = cli(*args)
            assert result.exit_code == exit_codes.OK, f"{shlex.join(args)}: {result.output}"
        migrated = logs.count_documents({"source_tag": "crm_migration"})
        assert migrated > 0
        assert status_of(cli)["status"] == "completed"

        *rollback, trigger = commands("rollback")
        assert trigger[0] == "trigger"
        deleted = []
        for args in rollback:
            result = cli(*args)
            assert result.exit_code == exit_codes.OK, f"{shlex.join(args)}: {result.output}"
            if args[0] == "rollback":
                deleted.append(int(result.stdout.split()[1]))
        assert deleted == [migrated, 0]  # "again: deletes nothing"
        rolled_back = status_of(cli)
        assert (rolled_back["status"], rolled_back["logs_deleted"]) == ("rolled_back", migrated)
        assert logs.count_documents({"source_tag": "crm_migration"}) == 0
        assert logs.count_documents({"source_tag": "live_feed"}) == 1

        # "After a rollback: a new job, not a resume".
        resumed = cli("trigger", "--company-sso-id", COMPANY, "--resume")
        assert resumed.exit_code == exit_codes.REFUSED
        assert resumed.stderr.startswith("error: JOB_NOT_FOUND:"), resumed.stderr
        ran = cli("run", "--company-sso-id", COMPANY, "--no-progress")
        assert ran.exit_code == exit_codes.REFUSED
        assert ran.stderr.startswith("error: JOB_NOT_RUNNABLE:"), ran.stderr
        result = cli(*trigger)
        assert result.exit_code == exit_codes.OK, result.output
        fresh = status_of(cli)
        assert (fresh["status"], fresh["job_id"]) != ("rolled_back", rolled_back["job_id"])
        assert fresh["status"] == "in_progress"
