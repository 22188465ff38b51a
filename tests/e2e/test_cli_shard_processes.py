"""``run --workers N`` on a sharded job: its shards side by side, a process each, as separate
``crm-audit-migrate`` processes against real PostgreSQL, the wire-protocol emulator and USMAN.

A shard process is killed (``kill -9``), so is the runner (its shard processes stop on their own),
the runner and its shards get Ctrl-C and Ctrl-C Ctrl-C, ``/metrics`` sums the shards, one shard
halts the job, ``cancel`` stops it, USMAN refuses the token: each ends as the sequential run does,
and the rerun reaches the clean run's job, counts and logs (tests/e2e/processes.py).

The runs are the processes under test; the steps around them (``indexes up``, ``trigger``,
``cancel``) run in this process (``CliProcesses.inline``), which saves an interpreter start each.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import socket
import time
import urllib.request
from typing import Any

import pytest
import test_cli_processes as walk
from processes import (
    COMMAND_TIMEOUT_S,
    COMPANY,
    TENANT,
    CliProcesses,
    held_still,
    job_document,
    kill_9,
    started_for,
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
from support.redis_server import free_port
from support.usman_server import UsmanServer, answer, slow, status

pytestmark = pytest.mark.postgres
usman, cdp, crm = walk.usman, walk.cdp, walk.crm  # the walk-through's fixtures

SHARDS_SINCE = "2024-06-01"
"""About 140 rows in pages of 10, cut in 3 shards: several batches each, and short."""
WALK_SINCE = "2023-07-01"
"""About 220 rows: room for the five interrupted runs of the walk before the job's end (they took
about 110 of them on a loaded machine)."""
SMALL_PAGES = {"CRM_AUDIT_PAGE_SIZE": "10"}


def clean_run(since: str) -> World:
    """The account run in memory from ``since``, its association logs named as the runner names them."""
    world = World(TENANT, enrich=True)
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
    assert crm.inline("indexes", "up").returncode == 0
    done = crm.inline(
        "trigger", "--company-sso-id", COMPANY, "--date-range-start", since, "--shards", str(shards)
    )
    assert done.returncode == 0, done.stderr


def total_processed(db: Database[dict[str, Any]]) -> int:
    return sum(int(s["tally"]["processed"]) for s in shards_of(db))


def rows_counted(port: int) -> int:
    """``crm_audit_rows_total`` summed over its labels, as the runner serves it; 0 if not served yet."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as served:
            text = served.read().decode()
    except OSError:
        return 0
    return int(
        sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith("crm_audit_rows_total{"))
    )


def more_than_one_shard_served(port: int, db: Database[dict[str, Any]], marks: list[int]) -> bool:
    """Whether ``/metrics`` counts more rows than any one shard has saved since ``marks``, and no
    more than all of them: read first, so saved rows only grow after it, and a sum of one shard's
    reports could never pass (it is at most that shard's saved rows)."""
    served = rows_counted(port)
    saved = [processed(db, shard) - marks[shard] for shard in range(len(marks))]
    assert served <= sum(saved), f"/metrics counted {served} rows, the shards saved {saved}"
    return served > max(saved)


def ctrl_c_twice(pids: list[int]) -> None:
    """Ctrl-C Ctrl-C as a terminal sends it: SIGINT to each process (the group), twice, 50 ms apart;
    a process the first one ended already (a shard process between two batches) gets no second."""
    for _ in range(2):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGINT)
        time.sleep(0.05)


RUN = ("run", "--company-sso-id", COMPANY, "--no-progress", "--workers", "2")


def interrupt_a_run(crm: CliProcesses, cdp: Database[dict[str, Any]], presses: int) -> int:
    """A run, Ctrl-C'd ``presses`` times (1 or 2) to the runner and its shards once it saved a batch:
    exit 130, its shard processes ended, every lease handed back. The rows processed before it."""
    runner = crm.start(*RUN, **SMALL_PAGES)
    mark = total_processed(cdp)
    wait_for(lambda: total_processed(cdp) > mark, timeout_s=COMMAND_TIMEOUT_S, what="a batch of this run")
    shard_pids = pool_workers(runner.pid)
    group = [runner.pid, *shard_pids]  # Ctrl-C reaches the whole process group
    if presses == 1:
        for pid in group:
            with contextlib.suppress(ProcessLookupError):  # a shard process that ended meanwhile
                os.kill(pid, signal.SIGINT)
    else:
        ctrl_c_twice(group)
    assert runner.wait(timeout=COMMAND_TIMEOUT_S) == exit_codes.INTERRUPTED
    wait_for(lambda: not any(map(running, shard_pids)), timeout_s=30, what="the shard processes")
    assert [s["lease_owner"] for s in shards_of(cdp)] == [None, None, None]
    return mark


class TestShardsSideBySide:
    def test_kills_metrics_and_ctrl_c_then_a_rerun_end_as_the_clean_run(
        self, crm: CliProcesses, cdp: Database[dict[str, Any]], usman: UsmanServer
    ) -> None:
        """Three shards on two processes: ``kill -9`` of one is WORKER_LOST (exit 6) with every
        lease handed back; ``kill -9`` of the runner leaves its shard processes to stop on their
        own, leases handed back, while ``/metrics`` counted more rows than any one shard saved;
        Ctrl-C, and Ctrl-C Ctrl-C (to the runner and its shards, as a terminal sends them), exit 130
        with every lease back; the rerun ends at the clean run's job, counts and logs, each log
        once, and its batch lines count every shard's rows."""
        clean = clean_run(WALK_SINCE)
        trigger_sharded(crm, WALK_SINCE, 3)
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
            # Held still: no shard ends, and the runner reads nothing, meanwhile. The victim is the
            # fork server's child, not the stopped runner's: it may be reaped before it is continued.
            with held_still([runner.pid, *shard_pids]):
                owners = [s["lease_owner"] for s in shards_of(cdp)]
                host = socket.gethostname()
                assert owners[2] is None
                # host:pid:token, the token the runner's (lease_owners)
                assert {o.rsplit(":", 1)[0] for o in owners[:2] if o} <= {
                    f"{host}:{pid}" for pid in shard_pids
                }
                victim = next(
                    pid for pid in shard_pids if any(o and o.startswith(f"{host}:{pid}:") for o in owners)
                )
                os.kill(victim, signal.SIGKILL)
            assert runner.wait(timeout=COMMAND_TIMEOUT_S) == exit_codes.UNAVAILABLE
            wait_for(lambda: not any(map(running, shard_pids)), timeout_s=30, what="the shard processes")
            lost = shards_of(cdp)
            assert (job_document(cdp) or {}).get("status") == "in_progress"
            assert [s["lease_owner"] for s in lost] == [None, None, None]  # the dead one's handed back
            assert lost[2]["tally"]["processed"] == 0  # never started

            # The runner killed: its shard processes see their pipe close, stop after their batch in
            # flight and hand their leases back, on their own. /metrics sums the shards meanwhile.
            port = free_port()
            runner = crm.start(*RUN, "--metrics-port", str(port), **SMALL_PAGES)
            marks = [processed(cdp, shard) for shard in range(3)]
            wait_for(
                lambda: sum(processed(cdp, shard) > marks[shard] for shard in range(3)) >= 2,
                timeout_s=COMMAND_TIMEOUT_S,
                what="a batch of two shards after the loss",
            )
            wait_for(
                lambda: more_than_one_shard_served(port, cdp, marks),
                timeout_s=COMMAND_TIMEOUT_S,
                what="/metrics to count more rows than any one shard saved",
            )
            # What the wait below follows: the runner, its fork server and its live shard processes
            # (read in that order: one that ended in between is a zombie until reaped, and no longer live).
            workers = pool_workers(runner.pid)
            followed = set(started_for(cdp.name))
            assert {runner.pid, *(pid for pid in workers if running(pid))} < followed
            assert kill_9(runner) == -signal.SIGKILL
            # Every one it started: a shard it started after shard_pids was read is orphaned too.
            wait_for(lambda: not started_for(cdp.name), timeout_s=30, what="the orphaned shard processes")
            orphaned = shards_of(cdp)
            assert [s["lease_owner"] for s in orphaned] == [None, None, None]
            assert (job_document(cdp) or {}).get("status") == "in_progress"

            for presses in (1, 2):  # Ctrl-C: stop after the batch; Ctrl-C Ctrl-C: at once. Both 130.
                mark = interrupt_a_run(crm, cdp, presses)
        finally:
            usman.default = answer
        interrupted = job_document(cdp)
        assert interrupted is not None
        assert interrupted["status"] == "in_progress"
        before = total_processed(cdp)
        assert before > mark

        done = crm(*RUN, "--json", "--metrics-port", str(free_port()))
        assert done.returncode == 0, done.stderr
        # The run's batch lines (--metrics-port logs them) are the summed job's: every shard's rows.
        batches = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
        counted = sum(line["processed"] for line in batches if line["event"] == "batch")
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
        assert counted == expected.tally.processed - before
        assert all(s["status"] == "completed" and s["lease_owner"] is None for s in shards_of(cdp))
        # The enrichment counts are the clean run's too: the batches the killed runners wrote and
        # never counted are replayed, and their duplicates count the names the dead inserts set.
        shown = walk.status_of(crm)
        assert shown["enrichment"] == expected.enrichment.as_dict()
        assert shown["enrichment"]["keys_set"] > 0
        assert duplicate_external_ids(cdp) == []
        stored_ids = sorted(doc["external_id"] for doc in stored_migrated(cdp))
        assert stored_ids == sorted(log.external_id for log in clean.logs.logs)

    def test_a_halt_then_a_cancel_stop_every_shard_and_the_resume_completes_the_job(
        self, crm: CliProcesses, cdp: Database[dict[str, Any]], usman: UsmanServer
    ) -> None:
        """USMAN down: a shard halts the job (exit 5), the other stops at its next batch; --workers 3
        on two shards says it runs two; resumed, ``cancel`` stops the run (exit 8) and its shard
        processes, leases handed back; resumed again, the job completes with each log once."""
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

        # Resumed, then cancelled while its shard processes run: exit 8, each stops at its next batch.
        assert crm.inline("trigger", "--company-sso-id", COMPANY, "--resume").returncode == 0
        usman.default = slow(0.3)
        try:
            runner = crm.start(*RUN, **SMALL_PAGES)
            mark = total_processed(cdp)
            wait_for(lambda: total_processed(cdp) > mark, timeout_s=COMMAND_TIMEOUT_S, what="a resumed batch")
            shard_pids = pool_workers(runner.pid)
            cancelled = crm.inline("cancel", "--company-sso-id", COMPANY)
            assert cancelled.returncode == 0, cancelled.stderr
            assert runner.wait(timeout=COMMAND_TIMEOUT_S) == exit_codes.CANCELLED
            wait_for(lambda: not any(map(running, shard_pids)), timeout_s=30, what="the shard processes")
        finally:
            usman.default = answer
        stopped = job_document(cdp)
        assert stopped is not None
        assert stopped["status"] == "cancelled"
        assert [s["lease_owner"] for s in shards_of(cdp)] == [None, None]

        assert crm.inline("trigger", "--company-sso-id", COMPANY, "--resume").returncode == 0
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
