"""A USMAN outage (each email an outage of its own kind) met by ``run --workers 2`` and by a sharded
job's shards side by side ends as one process ends against the same server, and resumes to the same
final status (tests/e2e/usman_layouts.py; the refusal mid-run is test_cli_usman_refusal_layouts.py).
"""

from __future__ import annotations

from typing import Any

import pytest
import test_cli_processes as walk
import usman_layouts
from usman_layouts import OUTAGES, WORKERS, emails_first_met, per_email, run_then_resume

from crm_audit_adapters.cli import exit_codes
from support.usman_server import UsmanServer

pytestmark = pytest.mark.postgres
usman = walk.usman  # the walk-through's USMAN server (module scope)
accounts = usman_layouts.accounts  # a CDP database of its own per run


class TestAnOutage:
    def test_workers_halt_where_one_process_halts_and_resume_to_its_final_status(
        self, accounts: Any, usman: UsmanServer
    ) -> None:
        """Every email an outage of its own kind: the actors degrade and the halt rule stops the job
        at its first check, with ``--workers 2`` at the point and with the counts one process
        reaches; resumed with USMAN back, both end at the same final status."""
        hostile = per_email(emails_first_met(0.0), OUTAGES)
        one = run_then_resume(accounts, usman, hostile, CRM_AUDIT_HALT_SAMPLE="50")
        pool = run_then_resume(accounts, usman, hostile, *WORKERS, CRM_AUDIT_HALT_SAMPLE="50")
        assert one[0] == pool[0] == exit_codes.HALTED, (one[1], pool[1])
        assert one[2]["actors_degraded"] > 0
        assert pool[2:] == one[2:]

    def test_shards_side_by_side_degrade_the_actors_one_process_degrades(
        self, accounts: Any, usman: UsmanServer
    ) -> None:
        """Every email an outage of its own kind, the halt rule's bound out of reach: every actor
        degrades and the job completes. Two shards side by side (``--workers 2``, a USMAN client
        each) end at the final status the same sharded job reaches in one process."""
        hostile = per_email(emails_first_met(0.0), OUTAGES)
        loose = {"CRM_AUDIT_DEGRADED_THRESHOLD": "1.0"}
        sequential = run_then_resume(accounts, usman, hostile, shards=2, **loose)
        side_by_side = run_then_resume(accounts, usman, hostile, *WORKERS, shards=2, **loose)
        assert sequential[0] == side_by_side[0] == exit_codes.OK, (sequential[1], side_by_side[1])
        assert sequential[3]["actors_degraded"] > 0
        assert side_by_side[2:] == sequential[2:]
