"""A sharded job over a file (library use: ``run_shard`` over a file source) whose first shard's
range ends on a repeated id: every row of that id is counted once, by that shard, however the
shard was stopped or crashed, in one process and with ``--workers 2``, and verify agrees.

The walk used to end at the page that reached the range's ``until_id`` (its row), so the repeats
of that id, which a file source hands with the next page, were read by no shard: the next shard
counts no id at or below its ``after_id``. A two-shard job over 40 rows written thrice completed
with 118 of its 120 rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_files_audits import TEXT_AUDITS
from test_files_resume_repeats import (
    COMPANY,
    TENANT,
    Account,
    assert_crashed_at_every_save_as_clean,
    assert_stopped_at_every_step_as_clean,
    clean,
    crashed_at,
    pipelines,
    reference_of,
    steps_of,
    stopped_at,
)
from test_files_verify_at_cursor import verified_mismatches

from crm_audit_adapters.files import audit_ranges, audit_source
from crm_audit_transform.jobs import MigrationJob

CUT = 20
"""The first shard's ``until_id``: the ids 1..40 cut at equal id spans (``split_shards``)."""


def _docs(rows: int = 40) -> list[dict[str, object]]:
    docs = [json.loads(line) for line in TEXT_AUDITS.read_text(encoding="utf-8").splitlines() if line.strip()]
    ours = [doc for doc in docs if doc["tenant"] == TENANT][:rows]
    assert [doc["id"] for doc in ours] == list(range(1, rows + 1))
    return ours


def thrice() -> list[str]:
    """The first 40 acme rows, each written three times (its row and two repeats)."""
    return [json.dumps(doc) for doc in _docs() for _ in range(3)]


def edge() -> list[str]:
    """The first 40 acme rows; the cut's id first as a line that cannot become a row (its
    ``invalid_audit_row``), then its readable line and five more, all set aside as its repeats
    (an id's first line is the one used: the id has no row); the ids on either side of it repeated
    once, the next shard's first after an unreadable line of its own. A source that pauses among
    lines set aside leaves the shard at the cut id with none of its rows handed."""
    lines: list[str] = []
    for doc in _docs():
        audit_id, line = doc["id"], json.dumps(doc)
        unreadable = json.dumps({"tenant": TENANT, "id": audit_id, "auditable_type": doc["auditable_type"]})
        if audit_id in (CUT, CUT + 1):
            lines.append(unreadable)
        lines.append(line)
        lines.extend([line] * (5 if audit_id == CUT else 1 if audit_id in (CUT - 1, CUT + 1) else 0))
    return lines


FILES = {"thrice": thrice, "edge": edge}


@pytest.fixture(scope="module", params=sorted(FILES))
def audits(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp(f"shard-edge-{request.param}") / "audits.jsonl"
    path.write_text("\n".join(FILES[request.param]()) + "\n", encoding="utf-8")
    return path


@pytest.fixture(params=[1000, 2], ids=["pages", "pauses"])
def hold(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """The outcomes set aside a source holds before it pauses (``HOLD_SET_ASIDE``): at 2 it pauses
    among the cut id's repeats, and hands them in pages of no rows."""
    monkeypatch.setattr(audit_source, "HOLD_SET_ASIDE", request.param)
    monkeypatch.setattr(audit_ranges, "HOLD_SET_ASIDE", request.param)
    return int(request.param)


def _lines_of(audits: Path, audit_id: int) -> int:
    return sum(json.loads(line)["id"] == audit_id for line in audits.read_text(encoding="utf-8").splitlines())


def _sharded(tmp_path: Path, audits: Path, name: str) -> tuple[Account, MigrationJob]:
    account = Account(tmp_path, audits, tmp_path / f"{name}.jsonl", 1, shards=2)
    job = account.run(None)
    account.sink.close()
    return account, job


def _stopped(tmp_path: Path, audits: Path, name: str, step: int) -> tuple[Account, MigrationJob]:
    """The sharded job's shards run in turn, stopped after the ``step``-th step."""
    account = Account(tmp_path, audits, tmp_path / f"{name}.jsonl", 1, shards=2)
    calls = iter(range(1, 10_000))
    job = account.run(None, should_stop=lambda: next(calls) == step)
    account.sink.close()
    return account, job


class TestCountedOnceByItsShard:
    def test_the_cut_falls_on_a_repeated_id(self, tmp_path: Path, audits: Path) -> None:
        account = Account(tmp_path, audits, tmp_path / "out.jsonl", 1, shards=2)
        account.sink.close()
        job = account.jobs.latest(COMPANY)
        assert job is not None
        assert [(s.after_id, s.until_id) for s in job.shards] == [(0, CUT), (CUT, None)]
        assert _lines_of(audits, CUT) >= 3

    def test_each_row_is_counted_once_by_the_shard_of_its_id(self, tmp_path: Path, audits: Path) -> None:
        """The shards' counts and logs are an unsharded run's; the first shard's cursor is its
        range's end, with every row of that id counted there (``JobShard.rows_at_cursor``)."""
        lines = len(audits.read_text(encoding="utf-8").splitlines())
        tally, status, last, reason, written, _ = clean(tmp_path, audits, 1, None)
        assert (tally.processed, status, reason) == (lines, "completed", None)
        _, job = _sharded(tmp_path, audits, "sharded")
        first, second = job.shards
        assert (job.status, first.status, second.status) == ("completed", "completed", "completed")
        assert (first.last_audit_id, first.rows_at_cursor) == (CUT, _lines_of(audits, CUT))
        assert first.tally.processed == sum(_lines_of(audits, i) for i in range(1, CUT + 1))
        assert job.tally == tally  # was 118 of the 120 rows written thrice
        assert (job.last_audit_id, (tmp_path / "sharded.jsonl").read_bytes()) == (last, written)

    def test_two_workers_count_as_one_process(self, tmp_path: Path, audits: Path, hold: int) -> None:
        """With a page pool reading the shards' pages (``FileRangeSource``'s spans), clean."""
        reference = reference_of(tmp_path, audits, 2)
        with pipelines(2) as pool:
            assert clean(tmp_path, audits, 2, pool, shards=2) == reference


class TestStoppedOrCrashedAsClean:
    @pytest.mark.parametrize("same_source", [True, False], ids=["same-process", "new-process"])
    def test_one_process_stopped_at_every_step(
        self, tmp_path: Path, audits: Path, same_source: bool, hold: int
    ) -> None:
        """Together, the two resumes stop at every step for each hold, the two holds for each resume."""
        case = (hold != 1000) + same_source
        assert_stopped_at_every_step_as_clean(tmp_path, audits, same_source, case, shards=2)

    def test_one_process_crashed_at_every_save(self, tmp_path: Path, audits: Path, hold: int) -> None:
        """Every save, for each hold."""
        assert_crashed_at_every_save_as_clean(tmp_path, audits, shards=2)

    def test_two_workers_stopped_and_crashed_at_every_step(self, tmp_path: Path, audits: Path) -> None:
        reference = reference_of(tmp_path, audits, 2)
        with pipelines(2) as pool:
            for step in range(1, steps_of(tmp_path, audits, 2) + 1):
                stopped = stopped_at(tmp_path, audits, 2, pool, step, False, shards=2)
                assert stopped == reference, f"stopped at {step}"
                assert crashed_at(tmp_path, audits, 2, pool, step, shards=2) == reference, (
                    f"crashed at {step}"
                )

    def test_stops_land_among_the_cut_ids_rows(self, tmp_path: Path, audits: Path) -> None:
        """Some of the stops above leave the first shard at the cut id, not all of its rows counted."""
        among = []
        for step in range(1, steps_of(tmp_path, audits, 2) + 1):
            _, job = _stopped(tmp_path, audits, f"probe-{step}", step)
            if job.shards[0].last_audit_id == CUT and job.shards[0].status == "in_progress":
                among.append(job.shards[0].rows_at_cursor)
        assert among, "no stop among the cut id's rows"
        assert min(among) < _lines_of(audits, CUT)


class TestVerifyAgrees:
    def test_over_the_completed_shards(self, tmp_path: Path, audits: Path) -> None:
        account, job = _sharded(tmp_path, audits, "verified")
        assert job.status == "completed"
        assert verified_mismatches(account, audits) == []

    def test_over_a_first_shard_stopped_anywhere(self, tmp_path: Path, audits: Path) -> None:
        """The first shard stopped after each of its steps (some among the cut id's rows), the
        second not yet run: verify finds what the job counted."""
        for step in range(1, steps_of(tmp_path, audits, 2) + 1):
            account, job = _stopped(tmp_path, audits, f"stopped-{step}", step)
            if job.shards[0].status != "in_progress":
                break
            assert verified_mismatches(account, audits) == [], f"stopped at {step}"
