"""What the hostile-USMAN layout tests share (test_cli_usman_layouts.py, an outage;
test_cli_usman_refusal_layouts.py, a refusal mid-run): a hostile USMAN met by ``run --workers 2`` (a
page pool whose workers ask USMAN with clients of their own) and by a sharded job (its shards side by
side, a process each) ends as one process ends against the same server: the same exit code, the same
final status to the count (degraded actors included), and, once USMAN answers again, the same final
status after the resume. Two files, so that pytest-xdist's processes take them side by side (the
file was the suite's longest).

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
from processes import COMPANY, TENANT, CliProcesses, cli_environment, seed_contacts, unique_database
from pymongo import MongoClient

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
