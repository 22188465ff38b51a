"""Verify's job check over a file whose run stopped among one id's rows: the job counted only
``rows_at_cursor`` of them (its row, then its repeats in file order), and verify counts as many as
behind the cursor, not all of that id's rows (``MigrationJob.rows_at_cursor``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_files_long_repeats import long_repeat_lines
from test_files_resume_repeats import COMPANY, OWNER, SETTINGS, TENANT, Account

from crm_audit_adapters.files import CheckedRows, FileAuditSource
from crm_audit_adapters.files.verification import JsonlMigratedLogReader
from crm_audit_transform.jobs import MigrationJob
from crm_audit_transform.testing import InMemoryJobStore
from crm_audit_transform.usecases.guards import new_job
from crm_audit_transform.usecases.shards import run_shard
from crm_audit_transform.usecases.verify import VerifyPorts, VerifySettings, verify_account


@pytest.fixture(scope="module")
def audits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("at-cursor") / "audits.jsonl"
    path.write_text("\n".join(long_repeat_lines(long=30)) + "\n", encoding="utf-8")
    return path


def _stopped(account: Account, step: int) -> MigrationJob:
    calls = iter(range(1, 10_000))
    job = account.run(None, should_stop=lambda: next(calls) == step)
    account.sink.close()
    return job


def verified_mismatches(account: Account, audits: Path) -> list[tuple[str, object, object]]:
    """``verify_account`` over ``audits`` and the account's ``--out``: each mismatch of its job as
    ``(figure, job, found)``; ``[]`` when the job agrees with its source and logs."""
    with FileAuditSource(audits, TENANT, checked=CheckedRows(audits)) as source:
        ports = VerifyPorts(
            source=source,
            users=account.ports.users,
            sso=account.ports.sso,
            contacts=account.ports.contacts,
            reader=JsonlMigratedLogReader(account.out),
            jobs=account.jobs,
        )
        report = verify_account(
            COMPANY, ports, account.transformer, tenant=TENANT, settings=VerifySettings(page_size=7)
        )
    assert report.job is not None
    return [(m.figure, m.job, m.found) for m in report.job.mismatches]


@pytest.mark.parametrize("step", range(1, 16))
def test_a_job_stopped_among_one_ids_rows_is_consistent(tmp_path: Path, audits: Path, step: int) -> None:
    """Stopped after each of the first steps (several among the 10th id's 31 rows, with its row
    and with repeats only): the job check finds what the job counted."""
    account = Account(tmp_path, audits, tmp_path / f"out-{step}.jsonl", 1)
    job = _stopped(account, step)
    assert job.status == "in_progress"
    assert verified_mismatches(account, audits) == []


def test_the_stops_land_among_repeated_ids(tmp_path: Path, audits: Path) -> None:
    """The stops above land among the 10th id's rows (its row, then 30 repeats) and among the
    25th's (no row: an unreadable first line, then 11 repeats), each past its first row."""
    ids = list(dict.fromkeys(json.loads(line)["id"] for line in long_repeat_lines(long=30)))
    tenth, twenty_fifth = ids[9], ids[24]
    among: dict[int, list[int]] = {tenth: [], twenty_fifth: []}
    for step in range(1, 16):
        account = Account(tmp_path, audits, tmp_path / f"probe-{step}.jsonl", 1)
        job = _stopped(account, step)
        among.get(job.last_audit_id, []).append(job.rows_at_cursor)
    assert len(among[tenth]) >= 3, among
    assert 1 < min(among[tenth]) <= max(among[tenth]) < 31, among
    assert len(among[twenty_fifth]) >= 2, among
    assert max(among[twenty_fifth]) < 12, among


def _stopped_shard(tmp_path: Path, audits: Path, step: int) -> tuple[Account, MigrationJob]:
    """Shard 0 of a two-shard job over the file (the 10th id's 31 rows in its range), stopped after
    its ``step``-th step; the account verifies that job."""
    account = Account(tmp_path, audits, tmp_path / f"shard-{step}.jsonl", 1)
    clock = account.ports.clock
    jobs = InMemoryJobStore(clock=clock)
    scope = tuple(account.transformer.scope)
    jobs.create(new_job(COMPANY, TENANT, source=account.ports.source, scope=scope, now=clock.now(), shards=2))
    calls = iter(range(1, 10_000))
    job = run_shard(
        COMPANY, 0, account.ports, account.transformer, jobs=jobs, owner=OWNER,
        settings=SETTINGS, should_stop=lambda: next(calls) == step,
    ).job  # fmt: skip
    account.sink.close()
    account.jobs = jobs
    return account, job


@pytest.mark.parametrize("step", range(1, 10))
def test_a_shard_stopped_among_one_ids_rows_is_consistent(tmp_path: Path, audits: Path, step: int) -> None:
    """The same for a sharded job (library use: ``run_shard`` over a file): the shard's own count
    of its cursor id (``JobShard.rows_at_cursor``)."""
    account, _ = _stopped_shard(tmp_path, audits, step)
    assert verified_mismatches(account, audits) == []


def test_the_shards_stops_land_among_the_long_id(tmp_path: Path, audits: Path) -> None:
    """The shard's stops above land among the 10th id's rows, past its row."""
    tenth = list(dict.fromkeys(json.loads(line)["id"] for line in long_repeat_lines(long=30)))[9]
    among = []
    for step in range(1, 10):
        _, job = _stopped_shard(tmp_path, audits, step)
        if job.shards[0].last_audit_id == tenth:
            among.append(job.shards[0].rows_at_cursor)
    assert len(among) >= 3, among
    assert 1 < min(among) <= max(among) < 31, among
