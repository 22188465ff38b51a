"""One id repeated many times in an audits file (hostile input): the run saves, renews its lease
and reports progress among that id's rows, holds no more memory for more of them, and a run
stopped or crashed among them resumes to a clean run's counts, outcomes and ``--out`` bytes, in
one process and with ``--workers 2`` (``MigrationJob.rows_at_cursor``)."""

from __future__ import annotations

import gc
import json
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_files_audits import TEXT_AUDITS
from test_files_resume_repeats import (
    COMPANY,
    OWNER,
    SETTINGS,
    TENANT,
    Account,
    assert_crashed_at_every_save_as_clean,
    assert_stopped_at_every_step_as_clean,
    clean,
    crashed_at,
    pipelines,
    steps_of,
    stopped_at,
)

from crm_audit_adapters.files import audit_ranges, audit_source
from crm_audit_transform.jobs import MigrationJob
from crm_audit_transform.tally import Tally
from crm_audit_transform.testing import InMemoryJobStore
from crm_audit_transform.usecases.guards import new_job
from crm_audit_transform.usecases.run import run_job
from crm_audit_transform.usecases.settings import RunSettings
from crm_audit_transform.usecases.shards import run_shard
from support.stop_points import stop_points

LONG = 150
"""The repeats of the long id: more than a page of rows set aside when the source pauses at 25."""


def long_repeat_lines(long: int = LONG, rows: int = 40) -> list[str]:
    """The first ``rows`` acme rows of the corpus, the 10th repeated ``long`` times, the 25th after
    an unreadable line of its id and then repeated ``long // 3`` times."""
    docs = [json.loads(line) for line in TEXT_AUDITS.read_text(encoding="utf-8").splitlines() if line.strip()]
    ours = [doc for doc in docs if doc["tenant"] == TENANT][:rows]
    lines: list[str] = []
    for index, doc in enumerate(ours, 1):
        line = json.dumps(doc)
        if index == 25:
            lines.append(
                json.dumps({"tenant": TENANT, "id": doc["id"], "auditable_type": doc["auditable_type"]})
            )
        lines.append(line)
        lines.extend([line] * (long if index == 10 else long // 3 if index == 25 else 0))
    return lines


@pytest.fixture(scope="module")
def audits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("long") / "audits.jsonl"
    path.write_text("\n".join(long_repeat_lines()) + "\n", encoding="utf-8")
    return path


@pytest.fixture(params=[1000, 25], ids=["one-page", "pauses"])
def hold(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """The rows set aside a source holds before it pauses (``HOLD_SET_ASIDE``): at 25 the long id's
    repeats come over several pages, none with a row."""
    monkeypatch.setattr(audit_source, "HOLD_SET_ASIDE", request.param)
    monkeypatch.setattr(audit_ranges, "HOLD_SET_ASIDE", request.param)
    return int(request.param)


class CountingSaves:
    """A job store that keeps each saved job (the cursor and its counted rows, per save)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.saved: list[MigrationJob] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def save_progress(self, *args: Any, **kwargs: Any) -> Any:
        job = self._inner.save_progress(*args, **kwargs)
        self.saved.append(job)
        return job


class TestLongRepeatResumedAsClean:
    def test_the_file_holds_the_long_repeats(self, tmp_path: Path, audits: Path) -> None:
        """The clean run counts every repeat of the long ids as a ``duplicate_audit_id``."""
        tally, status, _, _, _, outcomes = clean(tmp_path, audits, 1, None)
        assert status == "completed"
        assert tally.failed["duplicate_audit_id"] == LONG + LONG // 3 + 1
        assert tally.processed == len(outcomes) == 40 + LONG + LONG // 3 + 1

    @pytest.mark.parametrize("same_source", [True, False], ids=["same-process", "new-process"])
    def test_one_process_stopped_at_every_step(
        self, tmp_path: Path, audits: Path, same_source: bool, hold: int
    ) -> None:
        """Stopped after any step (many among one id's rows) and resumed: a clean run's results.
        Together, the two resumes stop at every step for each hold, the two holds for each resume."""
        assert_stopped_at_every_step_as_clean(tmp_path, audits, same_source, (hold != 1000) + same_source)

    def test_one_process_crashed_at_every_save(self, tmp_path: Path, audits: Path, hold: int) -> None:
        """A crash between any step's write and its save, resumed in a new process: a clean run's."""
        assert_crashed_at_every_save_as_clean(tmp_path, audits)

    def test_two_workers_stopped_and_crashed_anywhere(self, tmp_path: Path, audits: Path, hold: int) -> None:
        """With a page pool reading byte ranges, stopped after each step and crashed at each save
        (together, the two holds visit every step)."""
        reference = clean(tmp_path, audits, 1, None)
        with pipelines(2) as pool:
            assert clean(tmp_path, audits, 2, pool) == reference
            for step in stop_points(1, steps_of(tmp_path, audits), hold != 1000):
                assert stopped_at(tmp_path, audits, 2, pool, step, False) == reference, f"stopped at {step}"
                assert crashed_at(tmp_path, audits, 2, pool, step) == reference, f"crashed at {step}"


def test_saves_go_on_among_one_ids_rows(
    tmp_path: Path, audits: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job is saved (its lease renewed, its progress told) among the long id's rows, each time
    with how many of them are counted; it used to be saved once, after the last of them. The
    source hands them 25 at a time (as it hands any file's 1,000 at a time: ``HOLD_SET_ASIDE``),
    and a page's end saves the job."""
    monkeypatch.setattr(audit_source, "HOLD_SET_ASIDE", 25)
    account = Account(tmp_path, audits, tmp_path / "out.jsonl", 1)
    saves = CountingSaves(account.jobs)
    account.anew(keep_sink=False, jobs=saves)
    try:
        account.run(None)
    finally:
        account.sink.close()
    long_id = json.loads(long_repeat_lines()[9])["id"]
    among = [job.rows_at_cursor for job in saves.saved if job.last_audit_id == long_id]
    assert len(among) >= 4, [(job.last_audit_id, job.rows_at_cursor) for job in saves.saved]
    assert among == sorted(among)
    assert 0 < among[0] < among[-1] == LONG + 1


def _traced_peak(tmp_path: Path, repeats: int) -> int:
    """The tracemalloc peak of a one-process run over the example audits with one id repeated."""
    path = tmp_path / f"repeats-{repeats}.jsonl"
    lines = long_repeat_lines(long=0)
    path.write_text("\n".join([lines[0], *[lines[0]] * repeats, *lines[1:]]) + "\n", encoding="utf-8")
    settings = RunSettings(page_size=500, batch_size=500, enforce_halt=False)
    account = Account(tmp_path, path, tmp_path / f"out-{repeats}.jsonl", 1, settings)
    gc.collect()
    tracemalloc.start()
    try:
        # No outcome listed (Account.run keeps each): what the run itself holds.
        job = run_job(COMPANY, account.ports, account.transformer, owner=OWNER, settings=settings).job
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        account.sink.close()
    assert job.tally.failed["duplicate_audit_id"] == repeats + 1  # and the 25th row's repeat
    return peak


def test_memory_stays_flat_as_one_id_repeats_more(tmp_path: Path) -> None:
    """Four times the repeats of one id, about the same peak: nothing of the id is held past its
    page (the run loop used to hold all of its rows until the id ended). The peaks are about 0.7 MB
    each; an object held a repeat (each repeat's outcome kept) makes them 0.9 and 2.5 MB."""
    small, large = _traced_peak(tmp_path, 2_500), _traced_peak(tmp_path, 10_000)
    assert large / small < 1.3, (small, large)


def _first_shard(tmp_path: Path, audits: Path, name: str, stop_at: int | None) -> tuple[Tally, str, bytes]:
    """Shard 0 of a two-shard job over the file (which holds both long ids), stopped after its
    ``stop_at``-th step and run again with a new source (another process): its counts, status
    and the bytes it wrote."""
    account = Account(tmp_path, audits, tmp_path / f"{name}.jsonl", 1)
    clock = account.ports.clock
    jobs = InMemoryJobStore(clock=clock)
    scope = tuple(account.transformer.scope)
    jobs.create(new_job(COMPANY, TENANT, source=account.ports.source, scope=scope, now=clock.now(), shards=2))

    def run(should_stop: Callable[[], bool]) -> MigrationJob:
        return run_shard(
            COMPANY, 0, account.ports, account.transformer, jobs=jobs, owner=OWNER,
            settings=SETTINGS, should_stop=should_stop,
        ).job  # fmt: skip

    calls = iter(range(1, 10_000))
    job = run(lambda: stop_at is not None and next(calls) == stop_at)
    if job.shards[0].status == "in_progress":
        account.anew(keep_sink=False)
        job = run(lambda: False)
    account.sink.close()
    return job.shards[0].tally, job.shards[0].status, account.out.read_bytes()


def test_a_shard_stopped_among_one_ids_rows_resumes_as_clean(tmp_path: Path, audits: Path) -> None:
    """A sharded job keeps the rows counted at each shard's cursor (``JobShard.rows_at_cursor``):
    a shard over a file with long repeats, stopped after any step, ends as a clean shard run."""
    reference = _first_shard(tmp_path, audits, "clean", None)
    tally, status, _ = reference
    assert status == "completed"
    assert tally.failed["duplicate_audit_id"] >= LONG
    for step in range(1, 60):
        assert _first_shard(tmp_path, audits, f"stopped-{step}", step) == reference, f"step {step}"
