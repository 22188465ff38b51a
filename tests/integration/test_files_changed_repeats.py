"""A job stopped among the rows of one repeated id, resumed over a file rewritten since with fewer
rows of that id (or none): the run raises ``SourceChanged`` (``BAD_INPUT``) before it counts
anything, and the job keeps its cursor, counts and written logs, its lease handed back. It used to
pass over the rows it found and go on: the job's counts then held rows the file no longer has.

A file rewritten with more rows of that id counts the new ones, as rows past the cursor."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import attrs
import pytest
from test_files_long_repeats import long_repeat_lines
from test_files_resume_repeats import COMPANY, Account, pipelines
from test_files_shard_edge import CUT, thrice

from crm_audit_adapters.cli.exit_codes import BAD_INPUT, error_code, exit_code_for
from crm_audit_transform import SourceChanged
from crm_audit_transform.jobs import MigrationJob

LINES = long_repeat_lines(long=30)
LONG_ID = json.loads(LINES[9])["id"]
"""The 10th id: its row and 30 repeats."""


def _write(path: Path, lines: list[str]) -> None:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _stopped_after(account: Account, step: int) -> MigrationJob:
    calls = iter(range(1, 10_000))
    job = account.run(None, should_stop=lambda: next(calls) == step)
    account.sink.close()
    return job


def _stopped_among(
    tmp_path: Path, lines: list[str], audit_id: int, *, least: int = 2, shards: int = 1
) -> tuple[Account, MigrationJob]:
    """A run over ``lines`` stopped at the first step that leaves its cursor (the first shard's)
    at ``audit_id`` with ``least`` rows of it counted or more, but not all."""
    audits = tmp_path / "audits.jsonl"
    _write(audits, lines)
    total = sum(json.loads(line)["id"] == audit_id for line in lines)
    for step in range(1, 60):
        account = Account(tmp_path, audits, tmp_path / f"out-{step}.jsonl", 1, shards=shards)
        job = _stopped_after(account, step)
        cursor, counted = _rows_at(job)
        if cursor == audit_id and least <= counted < total:
            return account, job
    raise AssertionError(f"no stop among the rows of id {audit_id}")


def _rows_at(job: MigrationJob) -> tuple[int, int]:
    at = job.shards[0] if job.shards else job
    return at.last_audit_id, at.rows_at_cursor


def _without(lines: list[str], audit_id: int, keep: int) -> list[str]:
    """``lines`` keeping only the first ``keep`` lines of ``audit_id``."""
    kept: list[str] = []
    seen = 0
    for line in lines:
        if json.loads(line)["id"] == audit_id:
            seen += 1
            if seen > keep:
                continue
        kept.append(line)
    return kept


def _fewer(lines: list[str], counted: int) -> list[str]:
    return _without(lines, LONG_ID, counted - 1)


def _none(lines: list[str], counted: int) -> list[str]:
    return _without(lines, LONG_ID, 0)


def _ending_there(lines: list[str], counted: int) -> list[str]:
    """The file cut after its first ``counted - 1`` rows of the id: no other id comes after them."""
    kept = _without(lines, LONG_ID, counted - 1)
    last = max(i for i, line in enumerate(kept) if json.loads(line)["id"] == LONG_ID)
    return kept[: last + 1]


REWRITES: dict[str, Callable[[list[str], int], list[str]]] = {
    "fewer-repeats": _fewer,
    "id-gone": _none,
    "file-ends-there": _ending_there,
}


@pytest.mark.parametrize("workers", [1, 2], ids=["one-process", "two-workers"])
@pytest.mark.parametrize("rewrite", sorted(REWRITES))
def test_a_resume_over_fewer_rows_of_its_cursor_id_raises(tmp_path: Path, rewrite: str, workers: int) -> None:
    account, stopped = _stopped_among(tmp_path, LINES, LONG_ID)
    cursor, counted = _rows_at(stopped)
    written = account.out.read_bytes()
    lines = REWRITES[rewrite](LINES, counted)
    found = sum(json.loads(line)["id"] == LONG_ID for line in lines)
    _write(account.audits, lines)
    account.workers = workers
    account.anew(keep_sink=False)
    with pipelines(workers) as pool, pytest.raises(SourceChanged) as raised:
        account.run(pool)
    account.sink.close()
    assert (raised.value.audit_id, raised.value.counted, raised.value.found) == (LONG_ID, counted, found)
    assert (error_code(raised.value), exit_code_for(raised.value)) == ("BAD_INPUT", BAD_INPUT)
    job = account.jobs.latest(COMPANY)
    assert job is not None
    assert (job.status, _rows_at(job), job.tally, job.lease_owner) == (
        "in_progress",
        (cursor, counted),
        stopped.tally,
        None,
    )
    assert account.out.read_bytes() == written


def test_a_resume_over_more_rows_of_its_cursor_id_counts_the_new_ones(tmp_path: Path) -> None:
    account, _ = _stopped_among(tmp_path, LINES, LONG_ID)
    at = LINES.index(LINES[9]) + 1
    lines = [*LINES[:at], *[LINES[9]] * 5, *LINES[at:]]
    _write(account.audits, lines)
    account.anew(keep_sink=False)
    job = account.run(None)
    account.sink.close()
    assert job.status == "completed"
    assert job.tally.processed == len(lines)
    assert job.tally.failed["duplicate_audit_id"] == len(lines) - 40


@pytest.mark.parametrize("workers", [1, 2], ids=["one-process", "two-workers"])
def test_a_shard_resumed_over_fewer_rows_of_its_range_end_raises(tmp_path: Path, workers: int) -> None:
    """The first shard, stopped among the rows of its range's last id, resumed over a file with
    fewer of them: the shard's walk ends at its range, and the rows it did not meet are told."""
    lines = thrice()
    account, stopped = _stopped_among(tmp_path, lines, CUT, least=1, shards=2)
    cursor, counted = _rows_at(stopped)
    _write(account.audits, _without(lines, CUT, counted - 1))
    # A job stored before its file's mark (``source_mark``, which refuses any rewrite first: see
    # test_files_source_marks): the rows at its shard's cursor are still checked.
    unmarked = account.jobs.latest(COMPANY)
    assert unmarked is not None
    assert unmarked.source_mark is not None
    account.jobs.save(attrs.evolve(unmarked, source_mark=None))
    account.workers = workers
    account.anew(keep_sink=False)
    with pipelines(workers) as pool, pytest.raises(SourceChanged) as raised:
        account.run(pool)
    account.sink.close()
    assert (raised.value.audit_id, raised.value.counted, raised.value.found) == (CUT, counted, counted - 1)
    job = account.jobs.latest(COMPANY)
    assert job is not None
    assert (_rows_at(job), job.shards[0].tally, job.shards[0].lease_owner) == (
        (cursor, counted),
        stopped.shards[0].tally,
        None,
    )
