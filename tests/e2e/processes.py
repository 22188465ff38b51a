"""``crm-audit-migrate`` as separate processes against the wire-protocol emulator and real PostgreSQL.

Each command is its own OS process, as an operator runs them: nothing survives between two commands
but what the servers hold. The CDP is the mongoeco emulator (one server for the session, one
database per test), the CRM is the session's PostgreSQL with the corpus, and USMAN is a real local
HTTP server.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from bson import ObjectId
from click.testing import CliRunner
from pymongo import MongoClient
from pymongo.database import Database

from crm_audit_adapters.cli import cli
from support.corpus_account import company_sso_id, contact_docs
from support.usman_server import TOKEN, UsmanServer, held

TENANT = "acme"
COMPANY = company_sso_id(TENANT)
OTHER_TENANT = "globex"
CLI = str(Path(sys.executable).with_name("crm-audit-migrate"))
COMMAND_TIMEOUT_S = 180


class CliProcesses:
    """Runs ``crm-audit-migrate`` subcommands as child processes with one account's environment."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self._started: list[subprocess.Popen[str]] = []

    def environment(self, **overrides: str) -> dict[str, str]:
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("CRM_AUDIT_")}
        return {**inherited, **self.env, **overrides}

    def __call__(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        """Run one command to its end (bounded by ``COMMAND_TIMEOUT_S``)."""
        return subprocess.run(
            [CLI, *args],
            env=self.environment(**env),
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )

    def inline(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        """Run one command in this process (click's ``CliRunner``) with the same environment, as
        ``__call__`` reports it: for the steps around the one under test (``indexes up``,
        ``trigger``, ``cancel``), which then cost no interpreter start (seconds on a loaded machine)."""
        done = CliRunner().invoke(cli, list(args), env=self.environment(**env))
        return subprocess.CompletedProcess([CLI, *args], done.exit_code, done.stdout, done.stderr)

    def start(self, *args: str, **env: str) -> subprocess.Popen[str]:
        """Start one command and return at once (to be killed, or waited for; ``close`` ends it)."""
        process = subprocess.Popen(
            [CLI, *args],
            env=self.environment(**env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self._started.append(process)
        return process

    def close(self) -> None:
        """Kill and reap every started command still running (a test that failed midway), so none
        outlives its test or is reported, by its ``Popen``, in a later one."""
        for process in self._started:
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)  # a stopped process dies of SIGKILL all the same
                process.kill()
            process.wait(timeout=30)


def cli_environment(
    crm_dsn: str, mongo_uri: str, database: str, usman_url: str, **extra: str
) -> dict[str, str]:
    return {
        "CRM_AUDIT_DATABASE_URL": crm_dsn,
        "CRM_AUDIT_MONGO_URI": mongo_uri,
        "CRM_AUDIT_MONGO_DATABASE": database,
        "CRM_AUDIT_USMAN_BASE_URL": usman_url,
        "CRM_AUDIT_USMAN_TOKEN": TOKEN,
        "CRM_AUDIT_ENABLED_COMPANIES": COMPANY,
        "CRM_AUDIT_SETTINGS": "",
        "CRM_AUDIT_COVERAGE_THRESHOLD": os.environ["CRM_AUDIT_COVERAGE_THRESHOLD"],  # tests/conftest.py
        **extra,
    }


def unique_database() -> str:
    return f"crm_audit_e2e_{uuid.uuid4().hex[:12]}"


def seed_contacts(db: Database[dict[str, Any]]) -> None:
    """The account's CDP contacts, as Phase A left them (derived from the corpus)."""
    docs = []
    for doc in contact_docs(TENANT):
        created = dt.datetime.fromisoformat(doc["created_at"].replace("Z", "+00:00"))
        docs.append({**doc, "_id": ObjectId(doc["_id"]), "created_at": created})
    db["contacts"].insert_many(docs)


def job_document(db: Database[dict[str, Any]]) -> dict[str, Any] | None:
    return db["crm_activity_log_migration_jobs"].find_one(
        {"company_sso_id": COMPANY}, sort=[("created_at", -1)]
    )


POLL_MAX_S = 0.1
"""The longest pause between two looks of ``wait_for``, by default."""


def wait_for(
    condition: Callable[[], bool], *, timeout_s: float, what: str, pause_max_s: float = POLL_MAX_S
) -> None:
    """Poll ``condition`` until true: at once, then after 10 ms, each pause twice the last up to
    ``pause_max_s``; ``AssertionError`` naming ``what`` after ``timeout_s``.

    Most conditions read the job from the MongoDB emulator that the processes under test write to,
    one Python process (a job read costs it about 4 ms on the 2-core machine): a look every 10 ms,
    up to three reads each, took much of its time from the runs waited on. A condition that must
    catch a short moment (a probe that stops a process to look at it) passes ``pause_max_s=0.01``."""
    deadline = time.monotonic() + timeout_s
    pause = 0.01
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(pause)
        pause = min(pause * 2, pause_max_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


class HeldRequest:
    """The next USMAN request, held until the ``held_at_usman`` block ends."""

    def __init__(self, usman: UsmanServer) -> None:
        self._usman = usman
        self._asked = len(usman.requests)
        self.release = threading.Event()

    def wait_for_request(self) -> None:
        """Return once the request has arrived (its sender now waits for the answer)."""
        wait_for(
            lambda: len(self._usman.requests) > self._asked,
            timeout_s=COMMAND_TIMEOUT_S,
            what="a USMAN request to hold",
        )


@contextmanager
def held_at_usman(usman: UsmanServer) -> Iterator[HeldRequest]:
    """USMAN holds the next request until the block ends (then answers it), failures included."""
    request = HeldRequest(usman)
    usman.queue(held(request.release, timeout=COMMAND_TIMEOUT_S))
    try:
        yield request
    finally:
        request.release.set()


@contextmanager
def held_still(pids: Iterable[int]) -> Iterator[list[int]]:
    """SIGSTOP each of ``pids`` for the block (one already ended is passed over) and yield those
    stopped; at the block's end, a failing one too, SIGCONT each of them. A process left stopped
    never reads its pipe's EOF nor dies of SIGTERM: orphaned so, it outlives the session (``T``)."""
    stopped: list[int] = []
    try:
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
                stopped.append(pid)
        yield stopped
    finally:
        for pid in stopped:
            with suppress(ProcessLookupError):  # ended meanwhile (killed, or reaped by its parent)
                os.kill(pid, signal.SIGCONT)


def started_for(database: str) -> list[int]:
    """Every live process started for the test whose database is ``database``: its commands and
    whatever they forked (a fork server, its pool and shard processes), found by the environment
    each was started with (``CRM_AUDIT_MONGO_DATABASE``, one per test). A runner's list of its
    children is a snapshot: once it is killed, a shard process it forked a moment before is an
    orphan no snapshot holds, and this still finds it."""
    marker = f"CRM_AUDIT_MONGO_DATABASE={database}".encode()
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            ours = marker in environ.read_bytes().split(b"\0")
            live = ours and environ.with_name("stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            continue  # ended meanwhile, or not ours to read
        if live:  # a zombie has ended
            found.append(int(environ.parent.name))
    return sorted(found)


def kill_9(process: subprocess.Popen[str]) -> int:
    """SIGKILL: no handler runs, nothing is flushed or saved; returns the exit status."""
    process.send_signal(signal.SIGKILL)
    return process.wait(timeout=30)


def stored_migrated(db: Database[dict[str, Any]]) -> list[dict[str, Any]]:
    return list(db["activity_logs"].find({"company_sso_id": COMPANY, "source_tag": "crm_migration"}))


def client_for(uri: str) -> MongoClient[dict[str, Any]]:
    return MongoClient(uri, tz_aware=True, serverSelectionTimeoutMS=10_000)
