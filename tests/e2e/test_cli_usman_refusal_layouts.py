"""A USMAN refusal (401) of a user first named mid-run, met by ``run --workers 2`` and by a sharded
job's shards side by side, stops as one process stops and resumes to its final status
(tests/e2e/usman_layouts.py; the outage is test_cli_usman_layouts.py).
"""

from __future__ import annotations

from typing import Any

import pytest
import test_cli_processes as walk
import usman_layouts
from usman_layouts import WORKERS, emails_first_met, per_email, run_then_resume

from crm_audit_adapters.cli import exit_codes
from support.usman_server import UsmanServer, status

pytestmark = pytest.mark.postgres
usman = walk.usman  # the walk-through's USMAN server (module scope)
accounts = usman_layouts.accounts  # a CDP database of its own per run


class TestARefusalMidRun:
    def test_workers_and_shards_stop_as_one_process_and_resume_to_its_final_status(
        self, accounts: Any, usman: UsmanServer
    ) -> None:
        """USMAN refuses (401) a user the job first names past a third of its rows, on page 4, which
        ``--workers 2``'s runner takes itself while pages 0-3 are on its worker: exit 3, one line,
        nothing degraded. ``--workers 2`` stops where one process stops, the pages before written
        (before, the runner's refusal dropped the pages still on its worker: 10 rows written for one
        process's 40; this test fails there); two shards side by side stop too. Once USMAN answers,
        each ends at one process's final status (the shards' own lines aside)."""
        hostile = per_email(emails_first_met(0.3), [status(401)])
        one = run_then_resume(accounts, usman, hostile)
        pool = run_then_resume(accounts, usman, hostile, *WORKERS)
        side_by_side = run_then_resume(accounts, usman, hostile, *WORKERS, shards=2)
        for code, stderr, stopped, _ in (one, pool, side_by_side):
            assert code == exit_codes.CONFIG, stderr
            lines = stderr.strip().splitlines()
            assert len(lines) == 1, stderr
            assert lines[0].startswith("error: DIRECTORY_REFUSED:")
            assert (stopped["status"], stopped["actors_degraded"]) == ("in_progress", 0)
        assert 0 < one[2]["records_processed"] < one[3]["records_processed"]
        assert pool[2:] == one[2:]
        assert {k: v for k, v in side_by_side[3].items() if k != "shards"} == {
            k: v for k, v in one[3].items() if k != "shards"
        }
