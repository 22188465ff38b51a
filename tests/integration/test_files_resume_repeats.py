"""A file source's repeated ids at the cursor: a run stopped (or crashed) at any step and resumed
counts, writes and lists exactly what a clean run does, in one process and with ``--workers 2``.

The file repeats ids where the old loop split them: at page ends (the repeat of a page's last row
is read with the next page), at the halt rule's check points, in runs of three, and after a line
that cannot become a row with the same id (the line is the id's first, the readable row its
repeat). A stop lands on every step; a crash fails every progress write once (``kill -9`` between
a step's write and its save). The resumed run reads with the same source (this process) or with a
new one (another process: its rows set aside are reported from the file's start again)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
from test_files_audits import TEXT_AUDITS

from crm_audit_adapters.bootstrap import DryRunFiles, dry_run_service
from crm_audit_adapters.cli.row_outcomes import outcome_record
from crm_audit_adapters.files import CheckedRows, FileAuditSource, audit_ranges, audit_source
from crm_audit_adapters.files.sink import JsonlActivityLogSink
from crm_audit_adapters.page_pool import ProcessPagePipeline
from crm_audit_transform.domain import Outcome
from crm_audit_transform.errors import StoreUnavailable
from crm_audit_transform.jobs import MigrationJob
from crm_audit_transform.ports import PagePipeline
from crm_audit_transform.tally import Tally
from crm_audit_transform.usecases.guards import new_job
from crm_audit_transform.usecases.run import run_job
from crm_audit_transform.usecases.settings import RunSettings
from crm_audit_transform.usecases.shards import run_shard
from support.corpus_account import company_sso_id, contact_docs, dump_jsonl, sso_docs
from support.corpus_world import CORPUS
from support.page_workers import page_pool
from support.stop_points import stop_points

TENANT = "acme"
COMPANY = company_sso_id(TENANT)
SETTINGS = RunSettings(page_size=9, batch_size=3, halt_sample=7, halt_threshold=1.0, enforce_halt=False)
OWNER = "test-resume"


def repeating_lines(rows: int = 120) -> list[str]:
    """The first ``rows`` acme rows of the corpus, with ids repeated at page ends (every 9th row),
    at check points (every 7th), thrice (every 11th), and after an unreadable line of the same id
    (every 13th)."""
    docs = [json.loads(line) for line in TEXT_AUDITS.read_text(encoding="utf-8").splitlines() if line.strip()]
    ours = [doc for doc in docs if doc["tenant"] == TENANT][:rows]
    lines: list[str] = []
    for index, doc in enumerate(ours, 1):
        line = json.dumps(doc)
        if index % 13 == 0:
            # Its id's first line, not a row (no action): invalid_audit_row; the row after is the repeat.
            lines.append(
                json.dumps({"tenant": TENANT, "id": doc["id"], "auditable_type": doc["auditable_type"]})
            )
        lines.append(line)
        if index % 9 == 0 or index % 7 == 0 or index % 11 == 0:
            lines.append(line)
        if index % 11 == 0:
            lines.append(line)
    return lines


class Account:
    """The dry run's ports over ``audits``, with a job store that outlives a run (a resume); with
    ``shards`` > 1 a sharded job (library use), whose unfinished shards a run takes in turn; with
    ``marked`` (or ``shards`` > 1) a job as ``trigger`` makes it, keeping the file's mark
    (``MigrationJob.source_mark``)."""

    def __init__(
        self,
        tmp_path: Path,
        audits: Path,
        out: Path,
        workers: int,
        settings: RunSettings = SETTINGS,
        shards: int = 1,
        *,
        marked: bool = False,
    ) -> None:
        contacts, sso = tmp_path / "contacts.jsonl", tmp_path / "sso.jsonl"
        contacts.write_text(dump_jsonl(contact_docs(TENANT)), encoding="utf-8")
        sso.write_text(dump_jsonl(sso_docs(TENANT)), encoding="utf-8")
        files = DryRunFiles(audits, CORPUS / "users.jsonl", contacts, sso, None)
        self.audits, self.out, self.workers, self.settings = audits, out, workers, settings
        self.shards = shards
        self.outcomes: list[dict[str, object]] = []
        self.sink = JsonlActivityLogSink(out, fsync="never")
        service = dry_run_service(COMPANY, TENANT, files, self.sink)
        self.transformer = service._transformer
        self.ports = attrs.evolve(service._run_ports(), source=self._source())
        self.jobs = self.ports.jobs
        job = new_job(
            COMPANY,
            TENANT,
            source=self.ports.source,
            scope=tuple(self.transformer.scope),
            now=self.ports.clock.now(),
            every_row=shards == 1 and not marked,  # marked: trigger's job, which keeps the file's mark
            shards=shards,
        )
        self.jobs.create(job)  # type: ignore[attr-defined]

    def _source(self) -> FileAuditSource:
        kind = audit_ranges.FileRangeSource if self.workers > 1 else FileAuditSource
        return kind(self.audits, TENANT, checked=CheckedRows(self.audits))

    def anew(self, *, keep_sink: bool, jobs: Any = None) -> None:
        """Another process: a new source (its rows set aside not yet reported) and, unless the sink
        is kept (a crash that left it open), the output file opened again."""
        if not keep_sink:
            self.sink.close()
            self.sink = JsonlActivityLogSink(self.out, fsync="never")
        self.ports = attrs.evolve(self.ports, source=self._source(), logs=self.sink, jobs=jobs or self.jobs)

    def run(self, pipeline: PagePipeline | None, **options: Any) -> MigrationJob:
        if self.shards > 1:
            return self._run_shards(pipeline, **options)

        def on_outcomes(outcomes: Sequence[Outcome]) -> None:
            self.outcomes.extend(outcome_record(outcome, TENANT) for outcome in outcomes)

        return run_job(
            COMPANY,
            self.ports,
            self.transformer,
            owner=OWNER,
            settings=self.settings,
            on_outcomes=on_outcomes,
            pipeline=pipeline,
            **options,
        ).job

    def _run_shards(
        self, pipeline: PagePipeline | None, should_stop: Callable[[], bool] = lambda: False
    ) -> MigrationJob:
        """The job's unfinished shards in turn (``run_shard``: no outcome listed), until a stop."""
        job = self.ports.jobs.latest(COMPANY)
        assert job is not None
        assert len(job.shards) == self.shards
        for shard in range(self.shards):
            if job.shards[shard].status == "completed":
                continue
            ran = run_shard(
                COMPANY, shard, self.ports, self.transformer, jobs=self.ports.jobs, owner=OWNER,
                settings=self.settings, should_stop=should_stop, pipeline=pipeline,
            )  # fmt: skip
            job = ran.job
            if ran.stopped:
                break
        return job


Ran = tuple[Tally, str, int, str | None, bytes, list[dict[str, object]]]
"""The job's counts, status, cursor and halt reason, the bytes written and the outcomes listed."""


def result(account: Account, job: MigrationJob) -> Ran:
    account.sink.close()
    written = account.out.read_bytes()
    return job.tally, job.status, job.last_audit_id, job.halted_reason, written, account.outcomes


class FailingSave:
    """A job store whose ``save_progress`` (or a shard's ``save_shard_progress``) fails its
    ``on_call``-th call: the step was written, its progress not (a process killed between the two)."""

    def __init__(self, inner: Any, on_call: int) -> None:
        self._inner, self._on_call, self.calls = inner, on_call, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def save_progress(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls == self._on_call:
            raise StoreUnavailable("the runner died here")
        return self._inner.save_progress(*args, **kwargs)

    def save_shard_progress(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls == self._on_call:
            raise StoreUnavailable("the runner died here")
        return self._inner.save_shard_progress(*args, **kwargs)


@contextmanager
def pipelines(workers: int) -> Iterator[PagePipeline | None]:
    if workers == 1:
        yield None
        return
    pool: ProcessPagePipeline = page_pool(workers)
    try:
        yield pool
    finally:
        pool.close()


def clean(
    tmp_path: Path,
    audits: Path,
    workers: int,
    pipeline: PagePipeline | None,
    settings: RunSettings = SETTINGS,
    shards: int = 1,
) -> Ran:
    account = Account(tmp_path, audits, tmp_path / "clean.jsonl", workers, settings, shards)
    return result(account, account.run(pipeline))


def stopped_at(
    tmp_path: Path,
    audits: Path,
    workers: int,
    pipeline: PagePipeline | None,
    step: int,
    same_source: bool,
    settings: RunSettings = SETTINGS,
    shards: int = 1,
) -> Ran:
    """Stopped after its ``step``-th step (a Ctrl-C), then run again to its end."""
    out = tmp_path / f"stopped-{step}-{same_source}.jsonl"
    account = Account(tmp_path, audits, out, workers, settings, shards)
    calls = iter(range(1, 10_000))
    first = account.run(pipeline, should_stop=lambda: next(calls) == step)
    if first.status != "in_progress":
        return result(account, first)
    if not same_source:
        account.anew(keep_sink=False)
    return result(account, account.run(pipeline))


def crashed_at(
    tmp_path: Path,
    audits: Path,
    workers: int,
    pipeline: PagePipeline | None,
    save: int,
    settings: RunSettings = SETTINGS,
    shards: int = 1,
) -> Ran:
    """Its ``save``-th progress write failing after its step was written (``kill -9``), then run
    again in a new process to its end."""
    account = Account(tmp_path, audits, tmp_path / f"crashed-{save}.jsonl", workers, settings, shards)
    account.anew(keep_sink=True, jobs=FailingSave(account.jobs, save))
    try:
        job = account.run(pipeline)
    except StoreUnavailable:
        account.anew(keep_sink=True)
        job = account.run(pipeline)
    return result(account, job)


@pytest.fixture(scope="module")
def audits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("repeats") / "audits.jsonl"
    path.write_text("\n".join(repeating_lines()) + "\n", encoding="utf-8")
    return path


def steps_of(tmp_path: Path, audits: Path, shards: int = 1) -> int:
    """How many steps (and so should_stop calls) a clean run has."""
    account = Account(tmp_path, audits, tmp_path / "count.jsonl", 1, shards=shards)
    calls = [0]

    def count() -> bool:
        calls[0] += 1
        return False

    account.run(None, should_stop=count)
    account.sink.close()
    return calls[0]


def reference_of(tmp_path: Path, audits: Path, shards: int = 1) -> Ran:
    """A clean run's results in one process; a sharded job's, once checked to be an unsharded
    run's (its counts, status, cursor and bytes: ``run_shard`` lists no outcomes)."""
    unsharded = clean(tmp_path, audits, 1, None)
    if shards == 1:
        return unsharded
    sharded = clean(tmp_path, audits, 1, None, shards=shards)
    assert sharded[:5] == unsharded[:5]
    return sharded


def assert_stopped_at_every_step_as_clean(
    tmp_path: Path, audits: Path, same_source: bool, case: int, shards: int = 1
) -> None:
    """One process stopped after each step in turn (``stop_points``: this ``case``'s share of
    them), then resumed (by the same source or a new one): each time a clean run's results (a
    sharded job's: its shards run in turn)."""
    reference = reference_of(tmp_path, audits, shards)
    for step in stop_points(1, steps_of(tmp_path, audits, shards), case):
        assert stopped_at(tmp_path, audits, 1, None, step, same_source, shards=shards) == reference, (
            f"stopped at step {step}"
        )


def assert_crashed_at_every_save_as_clean(tmp_path: Path, audits: Path, shards: int = 1) -> None:
    """One process crashed at each save in turn, then resumed in a new one: a clean run's results.
    Every save, in every session: a crash anywhere resuming to a clean run's final state is the
    rule these tests hold (each case costs a few seconds; the stops are the ones shared out)."""
    reference = reference_of(tmp_path, audits, shards)
    for save in range(1, steps_of(tmp_path, audits, shards) + 1):
        assert crashed_at(tmp_path, audits, 1, None, save, shards=shards) == reference, (
            f"crashed at save {save}"
        )


@pytest.fixture(params=[1000, 2], ids=["pages", "pauses"])
def hold(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """The outcomes set aside a source holds before it pauses (``HOLD_SET_ASIDE``): 2 makes it pause
    in runs of rows set aside, between the repeats of one id too, and hand a page's last id's repeats
    with a page of no rows; the run loop then asks after the highest id handed."""
    monkeypatch.setattr(audit_source, "HOLD_SET_ASIDE", request.param)
    monkeypatch.setattr(audit_ranges, "HOLD_SET_ASIDE", request.param)
    return int(request.param)


class TestResumedAsClean:
    def test_the_file_repeats_ids_where_steps_were_cut(self, tmp_path: Path, audits: Path) -> None:
        """The clean run has repeats and unreadable lines to count, and enough steps to stop in."""
        tally, status, _, _, written, outcomes = clean(tmp_path, audits, 1, None)
        assert status == "completed"
        assert tally.failed["duplicate_audit_id"] > 30
        assert tally.failed["invalid_audit_row"] == 9
        assert tally.processed == len(outcomes) == 120 + tally.failed["duplicate_audit_id"]
        assert written.count(b"\n") == tally.migrated > 50
        assert steps_of(tmp_path, audits) > 40

    @pytest.mark.parametrize("same_source", [True, False], ids=["same-process", "new-process"])
    def test_one_process_stopped_at_every_step(
        self, tmp_path: Path, audits: Path, same_source: bool, hold: int
    ) -> None:
        """Together, the two resumes stop at every step for each hold, the two holds for each resume."""
        assert_stopped_at_every_step_as_clean(tmp_path, audits, same_source, (hold != 1000) + same_source)

    def test_one_process_crashed_at_every_save(self, tmp_path: Path, audits: Path, hold: int) -> None:
        assert_crashed_at_every_save_as_clean(tmp_path, audits)

    def test_two_workers_stopped_and_crashed_where_ids_repeat(
        self, tmp_path: Path, audits: Path, hold: int
    ) -> None:
        """With a page pool reading byte ranges: every stop point of the first steps, each in a new
        process, and crashes at the same points (together, the two holds visit each point); the
        outputs of one process's clean run."""
        reference = clean(tmp_path, audits, 1, None)
        with pipelines(2) as pool:
            assert clean(tmp_path, audits, 2, pool) == reference
            for step in stop_points(1, 24, hold != 1000):
                assert stopped_at(tmp_path, audits, 2, pool, step, False) == reference, f"stopped at {step}"
                assert crashed_at(tmp_path, audits, 2, pool, step) == reference, f"crashed at {step}"


class TestHaltedAsClean:
    @pytest.mark.parametrize(
        ("threshold", "processed"),
        [(0.2, 14), (0.35, 42)],
        ids=["check-point-among-equal-ids", "check-point-between-ids"],
    )
    def test_a_halting_run_stopped_or_crashed_anywhere_halts_where_a_clean_run_halts(
        self, tmp_path: Path, audits: Path, threshold: float, processed: int
    ) -> None:
        """The check point at 14 rows falls between an id's row and its repeat: the run halts
        there, as over unique ids (the job keeps how many rows of its cursor id it counted); the one
        at 42 falls between two ids. Stopped after any step or crashed at any save before the halt,
        then resumed: the same halt, cursor, counts and outputs."""
        settings = RunSettings(page_size=9, batch_size=3, halt_sample=7, halt_threshold=threshold)
        reference = clean(tmp_path, audits, 1, None, settings)
        tally, status, _, reason, _, _ = reference
        assert (status, tally.processed) == ("halted", processed)
        assert reason is not None
        assert f"of {processed} rows" in reason
        for point in range(1, 12):
            for same_source in (True, False):
                stopped = stopped_at(tmp_path, audits, 1, None, point, same_source, settings)
                assert stopped == reference, f"stopped at step {point}"
            assert crashed_at(tmp_path, audits, 1, None, point, settings) == reference, f"crashed at {point}"
