"""A USMAN whose validator refuses some emails and the probe's reserved domain, met by a process that
asked it nothing before (``run --workers 2``'s, a shard's side by side), goes on as one process does
(tests/e2e/usman_layouts.py; the outage is test_cli_usman_layouts.py).
"""

from __future__ import annotations

from typing import Any

import pytest
import test_cli_processes as walk
import usman_layouts
from processes import COMPANY, TENANT
from usman_layouts import SINCE, WORKERS, job_rows, run_then_resume, status_doc

from crm_audit_adapters.cli import exit_codes
from support.corpus_account import users
from support.usman_server import Behaviour, Reply, SeenRequest, UsmanServer, answer

pytestmark = pytest.mark.postgres
usman = walk.usman  # the walk-through's USMAN server (module scope)
accounts = usman_layouts.accounts  # a CDP database of its own per run


def strict_validator(refused: set[str]) -> Behaviour:
    """USMAN whose validator refuses (422) a request naming one of ``refused`` or an address in the
    reserved ``.invalid`` domain (the client's last probe); any other it answers."""

    def behaviour(server: UsmanServer, request: SeenRequest) -> Reply:
        asked = request.payload.get("emails", []) if isinstance(request.payload, dict) else []
        if any(email in refused or email.endswith(".invalid") for email in asked):
            return Reply(422, b'{"errors": [{"message": "invalid email"}]}')
        return answer(server, request)

    return behaviour


class TestAValidatorRefusingEmails:
    def test_a_process_that_asked_nothing_before_goes_on_as_one_process_does(
        self, accounts: Any, usman: UsmanServer
    ) -> None:
        """USMAN refuses (422) the emails the second shard's first page names and the first page does
        not, and the probe's reserved domain: the emails are unknown users and one process, whose
        earlier answers vouch for its requests, completes. A process that asked nothing before (the
        second shard's side by side, a ``--workers 2`` process) took its first request refused whole
        for a configuration error: exit 3 after 10 and 40 of 138 rows. The call's other emails USMAN
        answers now vouch for it: each completes at one process's final status."""
        crm = accounts()
        trigger = ("trigger", "--company-sso-id", COMPANY, "--date-range-start", SINCE, "--shards", "2")
        assert crm.inline(*trigger).returncode == 0
        second = status_doc(crm)["shards"][1]["after_id"]
        rows = job_rows()
        email = {u.id: u.email for u in users(TENANT) if u.email}

        def named(part: list[Any]) -> set[str]:
            return {email[r.user_id] for r in part[:12] if r.user_id in email}  # a page and a margin

        refused = named([r for r in rows if r.id > second]) - named(rows)
        assert refused, "the second shard's first page names no user the first page does not"
        hostile = strict_validator(refused)
        one = run_then_resume(accounts, usman, hostile)
        pool = run_then_resume(accounts, usman, hostile, *WORKERS)
        side_by_side = run_then_resume(accounts, usman, hostile, *WORKERS, shards=2)
        for code, stderr, stopped, _ in (one, pool, side_by_side):
            assert code == exit_codes.OK, stderr
            assert "DIRECTORY_REFUSED" not in stderr
            assert stopped["status"] == "completed"
        assert pool[2:] == one[2:]
        assert {k: v for k, v in side_by_side[3].items() if k != "shards"} == {
            k: v for k, v in one[3].items() if k != "shards"
        }
