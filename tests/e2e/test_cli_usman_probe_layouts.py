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
from usman_layouts import PER_EMAIL, SINCE, WORKERS, job_rows, run_then_resume, status_doc

from crm_audit_adapters.cli import exit_codes
from support.corpus_account import users
from support.usman_server import Behaviour, Reply, SeenRequest, UsmanServer, answer

pytestmark = pytest.mark.postgres
usman = walk.usman  # the walk-through's USMAN server (module scope)
accounts = usman_layouts.accounts  # a CDP database of its own per run
PAGE = int(PER_EMAIL["CRM_AUDIT_PAGE_SIZE"])


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
        """USMAN refuses (422) the first email the second shard's first call asks, which the first page
        does not name, and the probe's reserved domain: the email is an unknown user's and one
        process, whose earlier answers vouch for its requests, completes. A process that asked
        nothing before (the second shard's side by side, a ``--workers 2`` process) took its first
        request refused whole for a configuration error: exit 3 after 10 and 40 of 138 rows. The
        call's other emails USMAN answers now vouch for it: each completes at one process's final
        status. Every page names an email USMAN answers, so whichever page a process takes first
        (a pool's worker takes the first it is handed, as the load has it), its first call has one."""
        crm = accounts()
        trigger = ("trigger", "--company-sso-id", COMPANY, "--date-range-start", SINCE, "--shards", "2")
        assert crm.inline(*trigger).returncode == 0
        second = status_doc(crm)["shards"][1]["after_id"]
        rows = job_rows()
        email = {u.id: u.email for u in users(TENANT) if u.email}

        def named(page: list[Any]) -> set[str]:
            return {email[r.user_id] for r in page if r.user_id in email}

        later = [r for r in rows if r.id > second]
        asked_first = min(named(later[:PAGE]))  # a call asks its emails in order, one a request
        assert asked_first not in named(rows[:PAGE]), "the first page names the email refused"
        refused = {asked_first}
        pages = [rows[k : k + PAGE] for k in range(0, len(rows), PAGE)] + [later[:PAGE]]
        only_refused = [page[0].id for page in pages if named(page) and named(page) <= refused]
        assert only_refused == [], "a process taking one of these pages first would stop (docs/usman.md)"
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
