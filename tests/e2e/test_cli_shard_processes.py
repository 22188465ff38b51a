"""``run --workers N`` on a sharded job: its shards side by side, a process each, as separate
``crm-audit-migrate`` processes against real PostgreSQL, the wire-protocol emulator and USMAN.

A shard process is killed (``kill -9``), the runner and its shards get Ctrl-C, one shard halts the
job, USMAN refuses the token: each ends as the sequential run does, and the rerun reaches the clean
run's job, counts and logs (tests/e2e/processes.py).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
from typing import Any

import pytest
import test_cli_processes as walk
from processes import (
    COMMAND_TIMEOUT_S,
    COMPANY,
    TENANT,
    CliProcesses,
    job_document,
    stored_migrated,
    wait_for,
)
from pymongo.database import Database
from test_cli_processes import (
    HALT_EARLY,
    ONE_ATTEMPT,
    duplicate_external_ids,
    pool_workers,
    running,
)

from crm_audit_adapters.cli import exit_codes
from crm_audit_transform.usecases import RunSettings
from support.corpus_account import World
from support.usman_server import UsmanServer, answer, slow, status

pytestmark = pytest.mark.postgres
usman, cdp, crm = walk.usman, walk.cdp, walk.crm  # the walk-through's fixtures

SHARDS_SINCE = "2024-06-01"
"""About 140 rows in pages of 10, cut in 3 shards: several batches each, and short."""
SMALL_PAGES = {"CRM_AUDIT_PAGE_SIZE": "10"}


def clean_run(since: str) -> World:
    world = World(TENANT)
    world.trigger(date_range_start=dt.datetime.fromisoformat(since).replace(tzinfo=dt.UTC))
    world.run(settings=RunSettings(halt_threshold=1.0))
    return world


def shards_of(db: Database[dict[str, Any]]) -> list[dict[str, Any]]:
    job = job_document(db)
    assert job is not None
    return [job["shards"][key] for key in sorted(job["shards"], key=int)]


def processed(db: Database[dict[str, Any]], shard: int) -> int:
    job = job_document(db)
    return 0 if job is None else int(job["shards"][str(shard)]["tally"]["processed"])


def trigger_sharded(crm: CliProcesses, since: str, shards: int) -> None:
    assert crm("indexes", "up").returncode == 0
    done = crm("trigger", "--company-sso-id", COMPANY, "--date-range-start", since, "--shards", str(shards))
    assert done.returncode == 0, done.stderr


RUN = ("run", "--company-sso-id", COMPANY, "--no-progress", "--workers", "2")


class TestShardsSideBySide:
    def test_a_killed_shard_process_then_ctrl_c_then_a_rerun_end_as_the_clean_run(
        self, crm: CliProcesses, cdp: Database[dict[str, Any]], usman: UsmanServer
    ) -> None:
        """Three shards on two processes: ``kill -9`` of one is WORKER_LOST (exit 6) with every
        lease handed back; Ctrl-C (to the runner and its shards, as a terminal sends it) saves and
        exits 130; the rerun ends at the clean run's job, counts and logs, each log once."""
        clean = clean_run(SHARDS_SINCE)
        trigger_sharded(crm, SHARDS_SINCE, 3)
        usman.default = slow(0.3)  # keeps each shard mid-job while processes are signalled
        try:
            runner = crm.start(*RUN, **SMALL_PAGES)
            wait_for(
                lambda: processed(cdp, 0) > 0 and processed(cdp, 1) > 0,
                timeout_s=COMMAND_TIMEOUT_S,
                what="a saved batch of shards 0 and 1",
            )
            shard_pids = pool_workers(runner.pid)
            assert len(shard_pids) == 2  # --workers 2: shard 2 waits its turn
            held = [runner.pid, *shard_pids]
            for pid in held:  # held still: no shard ends, and the runner reads nothing, meanwhile
                os.kill(pid, signal.SIGSTOP)
            try:
                owners = [s["lease_owner"] for s in shards_of(cdp)]
                host = socket.gethostname()
                assert owners[2] is None
                assert {o for o in owners[:2] if o} <= {f"{host}:{pid}" for pid in shard_pids}
                victim = next(pid for pid in shard_pids if f"{host}:{pid}" in owners)
                os.kill(victim, signal.SIGKILL)
            finally:
                for pid in held:
                    os.kill(pid, signal.SIGCONT)
            assert runner.wait(timeout=COMMAND_TIMEOUT_S) == exit_codes.UNAVAILABLE
            wait_for(lambda: not any(map(running, shard_pids)), timeout_s=30, what="the shard processes")
            lost = shards_of(cdp)
            assert (job_document(cdp) or {}).get("status") == "in_progress"
            assert [s["lease_owner"] for s in lost] == [None, None, None]  # the dead one's handed back
            assert lost[2]["tally"]["processed"] == 0  # never started

            runner = crm.start(*RUN, **SMALL_PAGES)
            marks = [processed(cdp, 0), processed(cdp, 1)]
            wait_for(
                lambda: processed(cdp, 0) > marks[0] or processed(cdp, 1) > marks[1],
                timeout_s=COMMAND_TIMEOUT_S,
                what="a batch after the loss",
            )
            shard_pids = pool_workers(runner.pid)
            for pid in [runner.pid, *shard_pids]:  # Ctrl-C reaches the whole process group
                os.kill(pid, signal.SIGINT)
            assert runner.wait(timeout=COMMAND_TIMEOUT_S) == exit_codes.INTERRUPTED
            wait_for(lambda: not any(map(running, shard_pids)), timeout_s=30, what="the shard processes")
        finally:
            usman.default = answer
        interrupted = job_document(cdp)
        assert interrupted is not None
        assert interrupted["status"] == "in_progress"
        assert [s["lease_owner"] for s in shards_of(cdp)] == [None, None, None]
        assert sum(s["tally"]["processed"] for s in shards_of(cdp)) > sum(marks)

        done = crm(*RUN, "--json")
        assert done.returncode == 0, done.stderr
        summary = json.loads(done.stdout)
        expected = clean.jobs.latest(clean.company)
        assert expected is not None
        final = job_document(cdp)
        assert final is not None
        assert (final["status"], summary["status"]) == ("completed", "completed")
        assert (summary["records_processed"], summary["records_migrated"]) == (
            expected.tally.processed,
            expected.tally.migrated,
        )
        assert (summary["skipped"], summary["failed"]) == (
            dict(expected.tally.skipped),
            dict(expected.tally.failed),
        )
        assert sum(s["tally"]["processed"] for s in shards_of(cdp)) == expected.tally.processed
        assert all(s["status"] == "completed" and s["lease_owner"] is None for s in shards_of(cdp))
        assert duplicate_external_ids(cdp) == []
        stored_ids = sorted(doc["external_id"] for doc in stored_migrated(cdp))
        assert stored_ids == sorted(log.external_id for log in clean.logs.logs)

    def test_a_shard_that_halts_halts_the_job_and_the_resume_completes_it(
        self, crm: CliProcesses, cdp: Database[dict[str, Any]], usman: UsmanServer
    ) -> None:
        """USMAN down: a shard halts the job (exit 5), the other stops at its next batch; --workers 3
        on two shards says it runs two; resumed, the job completes with each log once."""
        trigger_sharded(crm, SHARDS_SINCE, 2)
        usman.default = status(503)
        try:
            halted = crm(*RUN[:-1], "3", **HALT_EARLY, **ONE_ATTEMPT)
        finally:
            usman.default = answer

        assert halted.returncode == exit_codes.HALTED, halted.stderr
        assert "2 shard(s) left to run: 2 process(es)" in halted.stderr
        job = job_document(cdp)
        assert job is not None
        assert job["status"] == "halted"
        assert job["halted_reason"].startswith("shard ")
        assert "USMAN" in job["halted_reason"]
        assert [s["lease_owner"] for s in shards_of(cdp)] == [None, None]
        # The other shard's batch in flight when the job halted is written, not counted: its cursor
        # does not cover it, so the resumed run replays it (the unique index keeps it single).
        assert len(stored_migrated(cdp)) >= sum(s["tally"]["migrated"] for s in shards_of(cdp))

        assert crm("trigger", "--company-sso-id", COMPANY, "--resume").returncode == 0
        done = crm(*RUN, **HALT_EARLY)
        assert done.returncode == 0, done.stderr
        final = job_document(cdp)
        assert final is not None
        assert final["status"] == "completed"
        assert len(stored_migrated(cdp)) == final["records_migrated"]
        assert duplicate_external_ids(cdp) == []

    def test_usman_refusing_our_token_stops_every_shard_before_any_write(
        self, crm: CliProcesses, cdp: Database[dict[str, Any]]
    ) -> None:
        trigger_sharded(crm, SHARDS_SINCE, 2)
        before = job_document(cdp)

        refused = crm(*RUN, CRM_AUDIT_USMAN_TOKEN="wrong")

        assert refused.returncode == exit_codes.CONFIG, refused.stderr
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1, refused.stderr
        assert lines[0].startswith("error: DIRECTORY_REFUSED:")
        assert "wrong" not in refused.stderr
        assert cdp["activity_logs"].count_documents({}) == 0
        after = job_document(cdp)
        assert before is not None
        assert after is not None
        assert [s["lease_owner"] for s in shards_of(cdp)] == [None, None]
        assert [s["last_audit_id"] for s in after["shards"].values()] == [
            s["last_audit_id"] for s in before["shards"].values()
        ]
        assert (after["status"], after["records_processed"]) == ("in_progress", 0)
