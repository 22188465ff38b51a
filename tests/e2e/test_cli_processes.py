"""The ops walk-through as separate ``crm-audit-migrate`` processes: emulator CDP, real PostgreSQL, USMAN.

Every run is its own process and the runner is ``kill -9``-ed mid-run, so only what the servers hold
carries from one run to the next (tests/e2e/processes.py). The steps around the runs (``indexes``,
``trigger``, ``status``, ``rollback``, ``cancel`` where it is not under test) run in this process
(``CliProcesses.inline``): each builds its settings and clients afresh and reads or writes only the
servers, so a process of its own would test nothing more, and cost an interpreter start and the
drivers' imports (about 0.7 s of CPU; a dozen of them were most of the walk-through's time).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from processes import (
    COMMAND_TIMEOUT_S,
    COMPANY,
    OTHER_TENANT,
    TENANT,
    CliProcesses,
    cli_environment,
    held_at_usman,
    held_still,
    job_document,
    kill_9,
    seed_contacts,
    stored_migrated,
    unique_database,
    wait_for,
)
from pymongo import MongoClient
from pymongo.database import Database

from crm_audit_adapters.cli import exit_codes
from crm_audit_transform.usecases import RunSettings
from support.corpus_account import World
from support.usman_server import Reply, SeenRequest, UsmanServer, answer, slow, status

pytestmark = pytest.mark.postgres

SINCE = "2023-01-01"
"""The jobs' cutoff: about 250 of the tenant's rows, enough pages to be killed between, and a run
that stays short on the emulator (its compound unique index is checked by a scan per insert)."""
LEASE_S = 1.0
"""Short, so the run after a ``kill -9`` takes over the dead runner's lease within the test."""
HALT_EARLY = {"CRM_AUDIT_HALT_SAMPLE": "50"}
"""The halt rule checked every 50 rows, so a USMAN outage halts well before the end of the job."""
ONE_ATTEMPT = {"CRM_AUDIT_USMAN_MAX_ATTEMPTS": "1"}
"""No retries of a failing USMAN: the outage is the point, not its backoff."""


@pytest.fixture(scope="module")
def usman() -> Iterator[UsmanServer]:
    from cli_world import running_usman

    yield from running_usman()


@pytest.fixture(scope="module")
def clean() -> World:
    """The same account and cutoff run in memory: what the processes must reproduce."""
    world = World(TENANT)
    world.trigger(date_range_start=dt.datetime.fromisoformat(SINCE).replace(tzinfo=dt.UTC))
    world.run(settings=RunSettings(halt_threshold=1.0))
    return world


@pytest.fixture(scope="module")
def clean_named() -> World:
    """``clean`` with the CRM's entity names wired, as the runner names its association logs: the
    enrichment counts the processes must reproduce."""
    world = World(TENANT, enrich=True)
    world.trigger(date_range_start=dt.datetime.fromisoformat(SINCE).replace(tzinfo=dt.UTC))
    world.run(settings=RunSettings(halt_threshold=1.0))
    return world


@pytest.fixture
def cdp(wire_mongo_client: MongoClient[dict[str, Any]]) -> Iterator[Database[dict[str, Any]]]:
    """A fresh CDP database on the emulator, with the account's contacts; dropped afterwards."""
    name = unique_database()
    db = wire_mongo_client[name]
    seed_contacts(db)
    try:
        yield db
    finally:
        wire_mongo_client.drop_database(name)


@pytest.fixture
def crm(
    crm_dsn: str, wire_mongo_uri: str, cdp: Database[dict[str, Any]], usman: UsmanServer
) -> Iterator[CliProcesses]:
    processes = CliProcesses(
        cli_environment(
            crm_dsn,
            wire_mongo_uri,
            cdp.name,
            usman.url,
            CRM_AUDIT_LEASE_SECONDS=str(LEASE_S),
            CRM_AUDIT_TENANTS=f"{COMPANY}={TENANT}",
        )
    )
    try:
        yield processes
    finally:
        processes.close()


def status_of(crm: CliProcesses) -> dict[str, Any]:
    """``status --json``, run in this process (``CliProcesses.inline``): it reads what the runners'
    processes stored, and an interpreter start per look (a dozen a test, seconds each on a busy
    machine) would test nothing more."""
    shown = crm.inline("status", "--company-sso-id", COMPANY, "--json")
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)


def duplicate_external_ids(db: Database[dict[str, Any]]) -> list[dict[str, Any]]:
    return list(
        db["activity_logs"].aggregate(
            [
                {"$match": {"external_id": {"$type": "string"}}},
                {"$group": {"_id": {"c": "$company_sso_id", "e": "$external_id"}, "n": {"$sum": 1}}},
                {"$match": {"n": {"$gt": 1}}},
            ]
        )
    )


def held_once(
    ready: Callable[[], bool], holding: threading.Event, release: threading.Event
) -> Callable[[UsmanServer, SeenRequest], Reply]:
    """USMAN answering as usual, except the first request that arrives once ``ready()``: that one
    sets ``holding`` and is answered when ``release`` is set. Its sender waits mid-request: a test
    acts on it at a known point, however busy the machine is."""

    def behaviour(server: UsmanServer, request: SeenRequest) -> Reply:
        if not holding.is_set() and ready():
            holding.set()
            release.wait(COMMAND_TIMEOUT_S)
        return answer(server, request)

    return behaviour


def lease_expired(db: Database[dict[str, Any]]) -> bool:
    job = job_document(db)
    assert job is not None
    expires = job.get("lease_expires_at")
    return expires is None or expires <= dt.datetime.now(dt.UTC)


class TestWalkThrough:
    def test_the_ops_walk_through_with_a_kill_9_mid_run(
        self,
        crm: CliProcesses,
        cdp: Database[dict[str, Any]],
        clean: World,
        clean_named: World,
        usman: UsmanServer,
    ) -> None:
        """Each run is its own process; a SIGKILL mid-run resumes to the clean run's exact result, and
        the steps around the runs (in this process) see what the servers hold."""
        native = {"company_sso_id": COMPANY, "category": "deal", "source_tag": "live_feed"}
        cdp["activity_logs"].insert_one(dict(native))
        foreign = {"company_sso_id": "another-company", "external_id": "crm:x:audit:1"}
        cdp["activity_logs"].insert_one({**foreign, "source_tag": "crm_migration"})

        # 1. indexes up
        up = crm.inline("indexes", "up")
        assert up.returncode == 0, up.stderr
        assert "version: 035" in up.stdout
        listed = crm.inline("indexes", "status")
        assert listed.returncode == 0, listed.stderr
        assert (listed.stdout.count("present "), "version: 035" in listed.stdout) == (4, True)

        # 2. a wrong tenant is refused, and no job row is written
        wrong = crm.inline("trigger", "--company-sso-id", COMPANY, "--tenant", OTHER_TENANT)
        assert wrong.returncode == exit_codes.REFUSED, wrong.stderr
        assert wrong.stderr.startswith("error: TENANT_MISMATCH")
        assert job_document(cdp) is None

        # 3. trigger: the bound tenant needs no --tenant
        triggered = crm.inline("trigger", "--company-sso-id", COMPANY, "--date-range-start", SINCE)
        assert triggered.returncode == 0, triggered.stderr
        assert "in_progress" in triggered.stdout

        # 4. run, kill -9 mid-way, run again. Small pages: many saved batches to be caught between.
        def some_progress() -> bool:
            job = job_document(cdp)
            return job is not None and job["records_processed"] > 0

        # USMAN holds the first request the runner makes once a batch is saved: the runner waits
        # there, mid-job, when it is killed (no poll racing the run to its end).
        holding, release = threading.Event(), threading.Event()
        usman.default = held_once(some_progress, holding, release)
        try:
            runner = crm.start("run", "--company-sso-id", COMPANY, "--no-progress", CRM_AUDIT_PAGE_SIZE="25")
            assert holding.wait(COMMAND_TIMEOUT_S), "no USMAN request after the first saved batch"
            assert kill_9(runner) == -9
        finally:
            usman.default = answer
            release.set()
        cut = job_document(cdp)
        assert cut is not None
        assert cut["status"] == "in_progress", "the run finished before it could be killed"
        assert 0 < cut["last_audit_id"] < cut["max_audit_id"]
        assert len(stored_migrated(cdp)) >= cut["records_migrated"]

        # The dead runner keeps its lease until it expires: status names the holder and the expiry.
        wait_for(lambda: lease_expired(cdp), timeout_s=10 * LEASE_S, what="the dead runner's lease")
        dead = status_of(crm)
        dead_owner = dead["lease_owner"]
        assert dead_owner.startswith(f"{socket.gethostname()}:{runner.pid}:")  # and the process's token
        assert dt.datetime.fromisoformat(dead["lease_expires_at"]) <= dt.datetime.now(dt.UTC)
        table = crm.inline("status", "--company-sso-id", COMPANY)
        assert f"{dead_owner} until {dead['lease_expires_at']}" in table.stdout

        resumed = crm("run", "--company-sso-id", COMPANY, "--no-progress")
        assert resumed.returncode == 0, resumed.stderr
        assert resumed.stdout.startswith("completed:")

        status = status_of(crm)
        assert (status["lease_owner"], status["lease_expires_at"]) == (None, None)
        expected = clean.jobs.latest(clean.company)
        assert expected is not None
        assert status["status"] == "completed"
        assert (status["records_processed"], status["records_migrated"]) == (
            expected.tally.processed,
            expected.tally.migrated,
        )
        assert status["skipped"] == dict(expected.tally.skipped)
        assert status["failed"] == dict(expected.tally.failed)
        # Every count status shows is the clean run's, the enrichment's too: the replayed batch's
        # duplicates count the names the dead runner's inserts set (keys_set read lower).
        named = clean_named.jobs.latest(clean_named.company)
        assert named is not None
        assert status["enrichment"] == named.enrichment.as_dict()
        assert status["enrichment"]["keys_set"] > 0
        assert len(stored_migrated(cdp)) == status["records_migrated"]
        assert duplicate_external_ids(cdp) == []
        stored_ids = sorted(doc["external_id"] for doc in stored_migrated(cdp))
        assert stored_ids == sorted(log.external_id for log in clean.logs.logs)

        # 5. re-trigger
        again = crm.inline("trigger", "--company-sso-id", COMPANY)
        assert again.returncode == exit_codes.REFUSED
        assert again.stderr.startswith("error: ALREADY_COMPLETED")

        # 6. rollback --yes removes only our logs
        rolled = crm.inline("rollback", "--company-sso-id", COMPANY, "--yes")
        assert rolled.returncode == 0, rolled.stderr
        assert f"deleted {status['records_migrated']} migrated log(s)" in rolled.stdout
        assert stored_migrated(cdp) == []
        assert cdp["activity_logs"].count_documents(native) == 1
        assert cdp["activity_logs"].count_documents(foreign) == 1
        after_rollback = status_of(crm)
        assert after_rollback["status"] == "rolled_back"
        assert after_rollback["logs_deleted"] == status["records_migrated"]
        rows = [
            line.split() for line in crm.inline("status", "--company-sso-id", COMPANY).stdout.splitlines()
        ]
        assert ["logs_deleted", str(status["records_migrated"])] in rows

        # 7. indexes down: trigger is refused, and so is run (the in-progress case has its own test)
        down = crm.inline("indexes", "down", "--yes")
        assert down.returncode == 0, down.stderr
        assert crm.inline("indexes", "status").stdout.count("missing ") == 4
        before = (cdp["activity_logs"].count_documents({}), job_document(cdp))
        refused = crm.inline("trigger", "--company-sso-id", COMPANY)
        assert refused.returncode == exit_codes.CONFIG, refused.stderr
        assert refused.stderr.startswith("error: INDEXES_MISSING"), refused.stderr
        assert crm("run", "--company-sso-id", COMPANY).returncode != 0
        assert (cdp["activity_logs"].count_documents({}), job_document(cdp)) == before


class TestIndexesGuardTheRun:
    def test_a_job_whose_indexes_were_dropped_is_not_run(
        self, crm: CliProcesses, cdp: Database[dict[str, Any]]
    ) -> None:
        """An in-progress job whose unique index is gone is refused with INDEXES_MISSING, nothing written."""
        assert crm.inline("indexes", "up").returncode == 0
        assert crm.inline("trigger", "--company-sso-id", COMPANY, "--date-range-start", SINCE).returncode == 0
        cdp["activity_logs"].drop_index("uniq_company_external_id")
        job = job_document(cdp)

        refused = crm("run", "--company-sso-id", COMPANY, "--no-progress")

        assert refused.returncode == exit_codes.CONFIG, refused.stderr
        assert refused.stderr.startswith("error: INDEXES_MISSING")
        assert len(refused.stderr.strip().splitlines()) == 1
        assert cdp["activity_logs"].count_documents({}) == 0
        assert job_document(cdp) == job


WORKERS = [(), ("--workers", "2")]
"""One process, and a page pool whose workers call USMAN themselves (one trip a page)."""


class TestUsmanThroughProcesses:
    @pytest.mark.parametrize("workers", WORKERS, ids=["one-process", "workers-2"])
    def test_usman_refusing_our_token_stops_the_run_before_any_write(
        self, crm: CliProcesses, cdp: Database[dict[str, Any]], workers: tuple[str, ...]
    ) -> None:
        """Walk-through step 8: USMAN answers 401 to a wrong token: exit 3, one line, nothing written
        (with ``--workers 2``, the 401 a worker met)."""
        assert crm.inline("indexes", "up").returncode == 0
        assert crm.inline("trigger", "--company-sso-id", COMPANY, "--date-range-start", SINCE).returncode == 0
        job = job_document(cdp)

        refused = crm(
            "run", "--company-sso-id", COMPANY, "--no-progress", *workers, CRM_AUDIT_USMAN_TOKEN="wrong"
        )

        assert refused.returncode == exit_codes.CONFIG, refused.stderr
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1, refused.stderr
        assert lines[0].startswith("error: DIRECTORY_REFUSED:")
        assert "401" in lines[0]
        assert "wrong" not in refused.stderr
        assert cdp["activity_logs"].count_documents({}) == 0
        after = job_document(cdp)
        assert after is not None
        assert job is not None
        assert (after["status"], after["records_processed"]) == ("in_progress", 0)
        assert (after["last_audit_id"], after["lease_owner"]) == (job["last_audit_id"], None)

    @pytest.mark.parametrize("code", [302, 206])
    def test_usman_answering_a_redirect_to_workers_stops_the_run_before_any_write(
        self, crm: CliProcesses, cdp: Database[dict[str, Any]], usman: UsmanServer, code: int
    ) -> None:
        """With ``--workers 2`` the workers ask USMAN: a 302 (or a 206, a 2xx that is not the lookup's
        200) one of them meets is the page's error, exit 3 as for a 401, nothing written. Before, the
        workers took it for an outage: the first pages were written with degraded actors and the job
        halted (exit 5); this test fails there (for the 206 too)."""
        assert crm.inline("indexes", "up").returncode == 0
        assert crm.inline("trigger", "--company-sso-id", COMPANY, "--date-range-start", SINCE).returncode == 0
        job = job_document(cdp)
        usman.default = status(code, {"Location": "https://login.example/"})
        try:
            refused = crm("run", "--company-sso-id", COMPANY, "--no-progress", "--workers", "2")
        finally:
            usman.default = answer

        assert refused.returncode == exit_codes.CONFIG, refused.stderr
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1, refused.stderr
        assert lines[0].startswith("error: DIRECTORY_REFUSED:")
        assert str(code) in lines[0]
        assert "login.example" not in refused.stderr
        assert cdp["activity_logs"].count_documents({}) == 0
        after = job_document(cdp)
        assert after is not None
        assert job is not None
        assert (after["status"], after["records_processed"], after["actors_degraded"]) == (
            "in_progress",
            0,
            0,
        )
        assert (after["last_audit_id"], after["lease_owner"]) == (job["last_audit_id"], None)

    @pytest.mark.parametrize("workers", WORKERS, ids=["one-process", "workers-2"])
    def test_usman_down_degrades_actors_and_halts_the_job(
        self, crm: CliProcesses, cdp: Database[dict[str, Any]], usman: UsmanServer, workers: tuple[str, ...]
    ) -> None:
        """Walk-through step 9: a USMAN answering 503 degrades actors and halts the job, resumably
        (with ``--workers 2``, the outage the workers met)."""
        assert crm.inline("indexes", "up").returncode == 0
        assert crm.inline("trigger", "--company-sso-id", COMPANY, "--date-range-start", SINCE).returncode == 0
        usman.default = status(503)
        try:
            halted = crm(
                "run", "--company-sso-id", COMPANY, "--no-progress", *workers, **HALT_EARLY, **ONE_ATTEMPT
            )
        finally:
            usman.default = answer

        assert halted.returncode == exit_codes.HALTED, halted.stderr
        assert "halted: USMAN:" in halted.stderr
        doc = status_of(crm)
        assert doc["status"] == "halted"
        assert doc["halted_reason"].startswith("USMAN:")
        assert doc["actors_degraded"] > 0
        assert doc["accuracy_pct"] < 100
        job = job_document(cdp)
        assert job is not None
        assert doc["last_audit_id"] < job["max_audit_id"], "the job went to its end instead of halting"
        assert len(stored_migrated(cdp)) == doc["records_migrated"]

        assert crm.inline("trigger", "--company-sso-id", COMPANY, "--resume").returncode == 0
        done = crm("run", "--company-sso-id", COMPANY, "--no-progress", **HALT_EARLY)
        assert done.returncode == 0, done.stderr
        final = status_of(crm)
        assert (final["status"], final["actors_degraded"]) == ("completed", doc["actors_degraded"])
        assert len(stored_migrated(cdp)) == final["records_migrated"]
        assert duplicate_external_ids(cdp) == []


class TestStopAndRestartThroughProcesses:
    def test_ctrl_c_cancel_resume_and_fresh_as_separate_processes(
        self, crm: CliProcesses, cdp: Database[dict[str, Any]], usman: UsmanServer, clean: World
    ) -> None:
        """Live lease shown; Ctrl-C saves, exits 130; cancel stops the next runner; then resume and fresh."""
        assert crm.inline("indexes", "up").returncode == 0
        assert crm.inline("trigger", "--company-sso-id", COMPANY, "--date-range-start", SINCE).returncode == 0
        # Each runner is a new process that knows no user yet: its first page asks USMAN, which holds
        # that request until the test has acted. So the runner is mid-job (lease taken, page read,
        # nothing of it written) when another process acts on it, however busy the machine is.
        long_lease = {
            "CRM_AUDIT_LEASE_SECONDS": "60",
            "CRM_AUDIT_PAGE_SIZE": "25",
            "CRM_AUDIT_USMAN_READ_TIMEOUT": str(COMMAND_TIMEOUT_S),
        }
        with held_at_usman(usman) as release:
            runner = crm.start("run", "--company-sso-id", COMPANY, "--no-progress", **long_lease)
            release.wait_for_request()
            live = status_of(crm)
            assert live["lease_owner"].startswith(f"{socket.gethostname()}:{runner.pid}:")
            assert dt.datetime.fromisoformat(live["lease_expires_at"]) > dt.datetime.now(dt.UTC)
            runner.send_signal(signal.SIGINT)
        assert runner.wait(timeout=COMMAND_TIMEOUT_S) == exit_codes.INTERRUPTED
        interrupted = status_of(crm)
        assert (interrupted["status"], interrupted["lease_owner"]) == ("in_progress", None)
        assert interrupted["records_processed"] > 0, "Ctrl-C finishes the batch in flight and saves it"
        assert len(stored_migrated(cdp)) == interrupted["records_migrated"]

        with held_at_usman(usman) as release:
            runner = crm.start("run", "--company-sso-id", COMPANY, "--no-progress", **long_lease)
            release.wait_for_request()
            cancelled = crm("cancel", "--company-sso-id", COMPANY)
        assert cancelled.returncode == 0, cancelled.stderr
        # Released, it writes the batch in flight and meets the cancel at its next batch.
        assert runner.wait(timeout=COMMAND_TIMEOUT_S) == exit_codes.CANCELLED
        stopped = status_of(crm)
        assert stopped["status"] == "cancelled"
        assert stopped["last_audit_id"] > 0
        # The batch in flight when the cancel landed may be stored but not counted: the cursor does
        # not cover it, so the resumed run replays it (and the unique index keeps it single).
        assert len(stored_migrated(cdp)) >= stopped["records_migrated"]

        plain = crm("trigger", "--company-sso-id", COMPANY)
        assert plain.returncode == exit_codes.REFUSED
        assert plain.stderr.startswith("error: RESUME_OR_FRESH")
        recut = crm("trigger", "--company-sso-id", COMPANY, "--resume", "--date-range-start", SINCE)
        assert recut.returncode == exit_codes.USAGE
        assert "--date-range-start cannot be combined with --resume" in recut.stderr
        assert status_of(crm)["status"] == "cancelled"

        assert crm("trigger", "--company-sso-id", COMPANY, "--resume").returncode == 0
        assert status_of(crm)["last_audit_id"] == stopped["last_audit_id"]
        done = crm("run", "--company-sso-id", COMPANY, "--no-progress")
        assert done.returncode == 0, done.stderr
        final = status_of(crm)
        assert final["status"] == "completed"
        assert len(stored_migrated(cdp)) == final["records_migrated"] > 0
        assert duplicate_external_ids(cdp) == []
        # Cut twice, yet the same decision and logs as the clean run (halting is a function of the rows).
        stored_ids = sorted(doc["external_id"] for doc in stored_migrated(cdp))
        assert stored_ids == sorted(log.external_id for log in clean.logs.logs)

        fresh = crm("trigger", "--company-sso-id", COMPANY, "--fresh", "--json")
        assert fresh.returncode == 0, fresh.stderr
        assert json.loads(fresh.stdout)["records_processed"] == 0
        assert stored_migrated(cdp) == []
        statuses = sorted(j["status"] for j in cdp["crm_activity_log_migration_jobs"].find())
        assert statuses == ["in_progress", "rolled_back"]


WORKERS_SINCE = "2024-06-01"
"""The --workers test's cutoff: about 140 rows, in pages of 10 — enough to be killed between, and short."""


class TestWorkersThroughProcesses:
    def test_run_with_workers_survives_a_killed_worker_and_a_killed_runner(
        self, crm: CliProcesses, cdp: Database[dict[str, Any]], usman: UsmanServer
    ) -> None:
        """``run --workers 2``: a worker killed mid-run ends the run WORKER_LOST (exit 6, lease handed
        back); a runner killed mid-run leaves no worker behind; Ctrl-C Ctrl-C ends the run 130, lease
        handed back, no worker left; the next run ends at the clean logs."""
        clean = World(TENANT)
        clean.trigger(date_range_start=dt.datetime.fromisoformat(WORKERS_SINCE).replace(tzinfo=dt.UTC))
        clean.run(settings=RunSettings(halt_threshold=1.0))
        assert crm.inline("indexes", "up").returncode == 0
        triggered = crm.inline("trigger", "--company-sso-id", COMPANY, "--date-range-start", WORKERS_SINCE)
        assert triggered.returncode == 0, triggered.stderr
        run = ("run", "--company-sso-id", COMPANY, "--no-progress", "--workers", "2")
        small_pages = {"CRM_AUDIT_PAGE_SIZE": "10"}
        usman.default = slow(0.3)  # keeps each runner mid-job while its processes are killed
        try:
            runner = crm.start(*run, **small_pages)
            # Its worker starts in the background while the runner takes the first pages itself.
            wait_for(
                lambda: progressed(cdp, 0) and bool(pool_workers(runner.pid)),
                timeout_s=COMMAND_TIMEOUT_S,
                what="a first saved batch and a worker",
            )
            with held_still([runner.pid]):  # it cannot finish the job before the kill
                os.kill(pool_workers(runner.pid)[0], signal.SIGKILL)
            assert runner.wait(timeout=COMMAND_TIMEOUT_S) == exit_codes.UNAVAILABLE
            lost = job_document(cdp)
            assert lost is not None
            assert (lost["status"], lost.get("lease_owner")) == ("in_progress", None)

            runner = crm.start(*run, **small_pages)
            mark = lost["records_processed"]
            wait_for(
                lambda: progressed(cdp, mark) and bool(pool_workers(runner.pid)),
                timeout_s=COMMAND_TIMEOUT_S,
                what="a batch after the loss and a worker",
            )
            orphans = pool_workers(runner.pid)
            assert len(orphans) == 1  # --workers 2: the runner and one worker process
            assert kill_9(runner) == -9
            wait_for(lambda: not any(map(running, orphans)), timeout_s=30, what="the runner's workers to end")
            assert (job_document(cdp) or {}).get("status") == "in_progress"
            wait_for(lambda: lease_expired(cdp), timeout_s=10 * LEASE_S, what="the dead runner's lease")

            # Ctrl-C Ctrl-C, as a terminal sends it to the runner and its worker: 130, lease back.
            runner = crm.start(*run, **small_pages)
            mark = (job_document(cdp) or {}).get("records_processed", 0)
            wait_for(lambda: progressed(cdp, mark), timeout_s=COMMAND_TIMEOUT_S, what="a batch to interrupt")
            workers = pool_workers(runner.pid)
            for _ in range(2):
                for pid in [runner.pid, *workers]:
                    with contextlib.suppress(ProcessLookupError):  # one the first Ctrl-C ended
                        os.kill(pid, signal.SIGINT)
                time.sleep(0.05)
            assert runner.wait(timeout=COMMAND_TIMEOUT_S) == exit_codes.INTERRUPTED
            wait_for(lambda: not any(map(running, workers)), timeout_s=30, what="the runner's workers to end")
            aborted = job_document(cdp)
            assert aborted is not None
            assert (aborted["status"], aborted.get("lease_owner")) == ("in_progress", None)
        finally:
            usman.default = answer
        done = crm(*run)
        assert done.returncode == 0, done.stderr
        final = job_document(cdp)
        assert final is not None
        expected = clean.jobs.latest(clean.company)
        assert expected is not None
        assert final["status"] == "completed"
        assert (final["records_processed"], final["records_migrated"]) == (
            expected.tally.processed,
            expected.tally.migrated,
        )
        assert duplicate_external_ids(cdp) == []
        stored_ids = sorted(doc["external_id"] for doc in stored_migrated(cdp))
        assert stored_ids == sorted(log.external_id for log in clean.logs.logs)


def pool_workers(runner: int) -> list[int]:
    """The ``--workers`` processes of a runner: the children of its fork server (a child of the runner)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    return sorted(pid for child in parents.get(runner, []) for pid in parents.get(child, []))


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie has ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def progressed(db: Database[dict[str, Any]], beyond: int) -> bool:
    job = job_document(db)
    return job is not None and job["records_processed"] > beyond


class TestRollbackFenceThroughProcesses:
    def test_rollback_holds_the_account_against_trigger_and_run(
        self, crm: CliProcesses, cdp: Database[dict[str, Any]]
    ) -> None:
        """Rollback is refused while a (sharded) job runs; a held account refuses trigger and run."""
        assert crm.inline("indexes", "up").returncode == 0
        sharded = crm.inline(
            "trigger", "--company-sso-id", COMPANY, "--date-range-start", SINCE, "--shards", "2"
        )
        assert sharded.returncode == 0, sharded.stderr
        # The shards' runners hold the leases: status lists each shard with its own.
        rows = [line.split(None, 2) for line in sharded.stdout.splitlines()]
        assert ["lease", "per", "shard (below)"] in rows
        assert [row[:2] for row in rows if row[0] == "shard"] == [["shard", "0"], ["shard", "1"]]
        assert [s["lease_owner"] for s in status_of(crm)["shards"]] == [None, None]
        refused = crm("rollback", "--company-sso-id", COMPANY, "--yes")
        assert refused.returncode == exit_codes.REFUSED, refused.stderr
        assert refused.stderr.startswith("error: JOB_ALREADY_RUNNING")

        # A rollback that died mid-way leaves the account held: the hold is the job's status.
        jobs = cdp["crm_activity_log_migration_jobs"]
        jobs.update_one({"company_sso_id": COMPANY}, {"$set": {"status": "rolling_back"}})
        cdp["activity_logs"].insert_one(
            {"company_sso_id": COMPANY, "external_id": "crm:acme:audit:1", "source_tag": "crm_migration"}
        )
        trigger = crm("trigger", "--company-sso-id", COMPANY)
        assert trigger.returncode == exit_codes.REFUSED, trigger.stderr
        assert "rolled back" in trigger.stderr
        run = crm("run", "--company-sso-id", COMPANY, "--no-progress")
        assert run.returncode != 0
        assert cdp["activity_logs"].count_documents({}) == 1

        finished = crm("rollback", "--company-sso-id", COMPANY, "--yes")
        assert finished.returncode == 0, finished.stderr
        done = status_of(crm)
        assert (done["status"], done["logs_deleted"]) == ("rolled_back", 1)
        assert stored_migrated(cdp) == []
