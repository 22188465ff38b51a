"""A hostile USMAN met by ``run --workers 2`` (a page pool whose workers ask USMAN with clients of
their own) and by a sharded job (its shards side by side, a process each) ends as one process ends
against the same server: the same exit code, the same final status to the count (degraded actors
included), and, once USMAN answers again, the same final status after the resume.

USMAN misbehaves per email (``CRM_AUDIT_USMAN_MAX_EMAILS=1``: a request asks one), so whichever
process asks about an email meets the same answer, however the pages fall to processes: an answer
slow past the read timeout, a 503, a reset connection, an object naming a member twice, ``NaN``; or
a 401. The runs are separate ``crm-audit-migrate`` processes (tests/e2e/processes.py), each on a CDP
database of its own.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest
import test_cli_processes as walk
from processes import COMPANY, TENANT, CliProcesses, cli_environment, seed_contacts, unique_database
from pymongo import MongoClient

from crm_audit_adapters.cli import exit_codes
from support.corpus_account import audit_rows, users
from support.final_status import WHEN_AND_WHO
from support.usman_server import (
    TOKEN,
    Behaviour,
    Reply,
    SeenRequest,
    UsmanServer,
    answer,
    drop,
    email_twice,
    slow,
    status,
)

pytestmark = pytest.mark.postgres
usman = walk.usman  # the walk-through's USMAN server (module scope)

SINCE = "2024-06-01"
"""About 140 rows in pages of 10: several batches, two shards, and short."""
PER_EMAIL = {
    "CRM_AUDIT_USMAN_MAX_EMAILS": "1",
    "CRM_AUDIT_USMAN_MAX_ATTEMPTS": "1",
    "CRM_AUDIT_USMAN_READ_TIMEOUT": "0.3",
    "CRM_AUDIT_PAGE_SIZE": "10",
}
"""One email a request, no retries, a read timeout the slow answers pass."""
OUTAGES: list[Behaviour] = [
    slow(1.0),
    status(503),
    drop,
    email_twice,
    lambda server, request: Reply(200, b'{"data": [{"email": "x@y.example", "sso_id": NaN}]}'),
]
"""Answers that are no answer, each an outage: the actors whose email it is degrade, counted."""


def job_rows() -> list[Any]:
    since = dt.datetime.fromisoformat(SINCE).replace(tzinfo=dt.UTC)
    return sorted(
        (r for r in audit_rows(TENANT) if isinstance(r.created_at, dt.datetime) and r.created_at >= since),
        key=lambda r: r.id,
    )


def emails_first_met(after_share: float) -> list[str]:
    """The emails of the users the job's rows first name past ``after_share`` of them (by id)."""
    rows = job_rows()
    email = {u.id: u.email for u in users(TENANT) if u.email}
    cut = int(len(rows) * after_share)
    early = {email.get(r.user_id) for r in rows[:cut]}
    late = sorted({email[r.user_id] for r in rows[cut:] if r.user_id in email} - early)
    assert late, "no user first named in the job's later rows"
    return late


def per_email(emails: list[str], behaviours: list[Behaviour]) -> Behaviour:
    """The ``k``-th of ``emails`` asked: ``behaviours[k % len]``; any other email answered."""
    which = {email: behaviours[k % len(behaviours)] for k, email in enumerate(emails)}

    def behaviour(server: UsmanServer, request: SeenRequest) -> Reply:
        asked = request.payload.get("emails", []) if isinstance(request.payload, dict) else []
        picked = next((which[e] for e in asked if e in which), answer)
        return picked(server, request)

    return behaviour


@pytest.fixture
def accounts(
    crm_dsn: str, wire_mongo_uri: str, wire_mongo_client: MongoClient[dict[str, Any]], usman: UsmanServer
) -> Iterator[Any]:
    """``open_account()``: the ``CliProcesses`` of a CDP database of its own (contacts seeded, indexes
    up); every one dropped at the end."""
    opened: list[tuple[str, CliProcesses]] = []

    def open_account() -> CliProcesses:
        name = unique_database()
        db = wire_mongo_client[name]
        seed_contacts(db)
        crm = CliProcesses(
            cli_environment(
                crm_dsn, wire_mongo_uri, name, usman.url, CRM_AUDIT_TENANTS=f"{COMPANY}={TENANT}", **PER_EMAIL
            )
        )
        opened.append((name, crm))
        assert crm.inline("indexes", "up").returncode == 0
        return crm

    try:
        yield open_account
    finally:
        usman.default = answer
        for name, crm in opened:
            crm.close()
            wire_mongo_client.drop_database(name)


def status_doc(crm: CliProcesses) -> dict[str, Any]:
    """``status --json`` without what a run may change by who and when it ran (``WHEN_AND_WHO``)."""
    shown = crm.inline("status", "--company-sso-id", COMPANY, "--json")
    assert shown.returncode == 0, shown.stderr
    doc: dict[str, Any] = json.loads(shown.stdout)
    for key in WHEN_AND_WHO:
        doc.pop(key, None)
    doc["shards"] = [
        {k: v for k, v in shard.items() if k not in ("lease_owner", "lease_expires_at")}
        for shard in doc.get("shards", [])
    ]
    return doc


def run_then_resume(
    open_account: Any, usman: UsmanServer, hostile: Behaviour, *args: str, shards: int = 0, **env: str
) -> tuple[int, str, dict[str, Any], dict[str, Any]]:
    """A job triggered and run against ``hostile``, then resumed (when halted) and run again against
    a healthy USMAN: the first run's exit code and stderr, the status it left, the final status."""
    crm = open_account()
    sharding = ("--shards", str(shards)) if shards else ()
    trigger = crm.inline("trigger", "--company-sso-id", COMPANY, "--date-range-start", SINCE, *sharding)
    assert trigger.returncode == 0, trigger.stderr
    run = ("run", "--company-sso-id", COMPANY, "--no-progress", *args)
    usman.default = hostile
    try:
        first = crm(*run, **env)
    finally:
        usman.default = answer
    stopped = status_doc(crm)
    if stopped["status"] == "halted":
        assert crm.inline("trigger", "--company-sso-id", COMPANY, "--resume").returncode == 0
    if stopped["status"] != "completed":
        again = crm(*run, **env)
        assert again.returncode == 0, again.stderr
    final = status_doc(crm)
    assert final["status"] == "completed"
    assert TOKEN not in first.stderr
    return first.returncode, first.stderr, stopped, final


WORKERS = ("--workers", "2")


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
