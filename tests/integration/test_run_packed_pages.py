"""A worker's packed pages (``packed``) are written and counted as one process writes and counts them:
the same bytes, outcomes, counts, cursor and halts, on the arrays or, for anything unusual, row by row."""

from __future__ import annotations

import pickle
import random
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest
from test_run_fault_injection import Crashing

from crm_audit_adapters.cli.row_outcomes import OutcomeLines, outcome_record
from crm_audit_adapters.files import JsonlActivityLogSink
from crm_audit_adapters.files.keys import WrittenKeys
from crm_audit_adapters.files.sink import jsonl_log
from crm_audit_adapters.page_pool.wire import pack, unpack
from crm_audit_transform.domain import AuditRow, Migrated, Outcome
from crm_audit_transform.enrichment_tally import EnrichmentTally
from crm_audit_transform.errors import StoreUnavailable
from crm_audit_transform.jobs import MigrationJob
from crm_audit_transform.packed import PACKED, PackedOutcomes, join, pack_outcomes
from crm_audit_transform.ports import PagePipeline
from crm_audit_transform.tally import Tally
from crm_audit_transform.transformer import PageResult
from crm_audit_transform.usecases import RunSettings, _step_counts
from crm_audit_transform.usecases.pages import InProcessPages
from support.corpus_account import World, audit_rows
from support.packed_pages import PackedPages

BAD = "--- [unclosed"
ROWS = audit_rows("acme")


def hostile_rows() -> list[AuditRow]:
    """The corpus rows with every seventh one's changes unreadable (a failed row)."""
    return [attrs.evolve(r, audited_changes=BAD) if r.id % 7 == 0 else r for r in ROWS]


Ran = tuple[MigrationJob, list[dict[str, object]], bytes, int]


def deep_rows() -> list[AuditRow]:
    """The corpus rows with every fifth person update's changes nested 98 levels deep: the JSONL
    sink refuses their logs (a write failure: "nests more than 100 levels")."""
    deep = "---\nnotes:\n-\n- " + "[" * 98 + "x" + "]" * 98 + "\n"
    updates = [r.id for r in ROWS if (r.auditable_type, r.action) == ("Crm::Person", "update")]
    refused = set(updates[4::5])
    return [attrs.evolve(r, audited_changes=deep) if r.id in refused else r for r in ROWS]


def unlinked_rows() -> list[AuditRow]:
    """The corpus rows with the linked entity's id left out of every link row's changes: their
    association logs name no referent (``may_be_named`` refuses them), so a run naming entities
    packs them like any other log and counts them from the arrays."""
    link = re.compile(r"\ncrm_(deal|company|ticket|task)_id:")
    return [
        attrs.evolve(r, audited_changes=link.sub(r"\nold_\1:", r.audited_changes))
        if r.auditable_type != "Crm::Person" and r.auditable_type.endswith("Person")
        else r
        for r in ROWS
    ]


def recorder(seen: list[dict[str, object]], tenant: str) -> Callable[[Sequence[Outcome]], None]:
    def on_outcomes(outcomes: Sequence[Outcome]) -> None:
        # As the --outcomes file has them: a migrated row's log is an EncodedLog from a worker.
        seen.extend(outcome_record(outcome, tenant) for outcome in outcomes)

    return on_outcomes


def ran(
    path: Path,
    pipeline: PagePipeline,
    settings: RunSettings,
    *,
    rows: list[AuditRow] | None = None,
    enrich: bool = False,
    held: bytes = b"",
) -> Ran:
    """Run the world's job into a JSONL file (holding ``held`` first); the job, outcomes, bytes and
    the sink's ``count_migrated`` (what ``dry-run`` tells of the logs written before an error)."""
    world = World(rows=rows, enrich=enrich)
    path.write_bytes(held)
    sink = JsonlActivityLogSink(path, fsync="never")
    world.logs = sink  # type: ignore[assignment]
    world.trigger()
    seen: list[dict[str, object]] = []
    result = world.run(settings=settings, pipeline=pipeline, on_outcomes=recorder(seen, world.tenant))
    counted = sink.count_migrated(world.company)
    sink.close()
    return result.job, seen, path.read_bytes(), counted


def same(job: MigrationJob, other: MigrationJob) -> None:
    assert (job.status, job.last_audit_id, job.tally, job.enrichment, job.halted_reason) == (
        other.status,
        other.last_audit_id,
        other.tally,
        other.enrichment,
        other.halted_reason,
    )


def alike(packed: Ran, one: Ran) -> None:
    """The same job, outcomes, bytes and count of migrated logs."""
    same(packed[0], one[0])
    assert packed[1] == one[1]
    assert packed[2] == one[2]
    assert packed[3] == one[3]


SETTINGS = [
    RunSettings(halt_threshold=1.0),
    RunSettings(page_size=37, batch_size=7, halt_sample=13, halt_threshold=1.0),
    RunSettings(page_size=500, batch_size=1, halt_threshold=1.0),
]


class TestTheSameAsOneProcess:
    @pytest.mark.parametrize("settings", SETTINGS, ids=["default", "short-pages", "batch-1"])
    def test_bytes_outcomes_and_counts(self, tmp_path: Path, settings: RunSettings) -> None:
        one = ran(tmp_path / "one.jsonl", InProcessPages(), settings, rows=hostile_rows())
        packed = ran(tmp_path / "packed.jsonl", PackedPages(), settings, rows=hostile_rows())
        alike(packed, one)
        assert one[3] == one[0].tally.migrated > 0  # both kinds were written
        assert one[0].tally.failed_total > 0

    def test_a_halt_mid_page_stops_where_one_process_stops(self, tmp_path: Path) -> None:
        """Over 10 % failed at a check point inside a page: the same halt, cursor and bytes."""
        settings = RunSettings(page_size=200, batch_size=20, halt_sample=30)
        one = ran(tmp_path / "one.jsonl", InProcessPages(), settings, rows=hostile_rows())
        packed = ran(tmp_path / "packed.jsonl", PackedPages(), settings, rows=hostile_rows())
        assert one[0].status == "halted"
        assert one[0].last_audit_id < ROWS[-1].id
        alike(packed, one)

    def test_a_file_holding_some_of_the_logs_is_written_row_by_row_as_one_process_writes_it(
        self, tmp_path: Path
    ) -> None:
        """Logs already in the file (a replay) are duplicates: the step goes row by row, the same
        outcomes (counted migrated) and bytes."""
        _, _, whole, _ = ran(tmp_path / "whole.jsonl", InProcessPages(), SETTINGS[0])
        held = b"".join(line for index, line in enumerate(whole.splitlines(keepends=True)) if index % 3 == 0)
        one = ran(tmp_path / "one.jsonl", InProcessPages(), SETTINGS[1], held=held)
        packed = ran(tmp_path / "packed.jsonl", PackedPages(), SETTINGS[1], held=held)
        alike(packed, one)
        assert len(packed[2]) == len(whole)  # every log once

    def test_an_enriching_run_names_and_counts_as_one_process(self, tmp_path: Path) -> None:
        one = ran(tmp_path / "one.jsonl", InProcessPages(), SETTINGS[1], enrich=True)
        packed = ran(tmp_path / "packed.jsonl", PackedPages(), SETTINGS[1], enrich=True)
        assert one[0].enrichment.logs > 0
        alike(packed, one)

    def test_packed_association_logs_of_a_naming_run_are_counted_from_the_arrays(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Association logs naming no referent are packed: their steps go to ``insert_packed`` and
        their names are counted on the arrays (``packed_names_tally``), as one process counts them."""
        counted: list[EnrichmentTally] = []

        def spied(outcomes: PackedOutcomes) -> EnrichmentTally:
            counted.append(tally := packed_names_tally(outcomes))
            return tally

        packed_names_tally = _step_counts.packed_names_tally
        monkeypatch.setattr(_step_counts, "packed_names_tally", spied)
        one = ran(tmp_path / "one.jsonl", InProcessPages(), SETTINGS[1], rows=unlinked_rows(), enrich=True)
        packed = ran(tmp_path / "packed.jsonl", PackedPages(), SETTINGS[1], rows=unlinked_rows(), enrich=True)
        assert sum(tally.logs for tally in counted) > 0  # the packed path counted association logs
        assert one[0].enrichment.logs > sum(tally.logs for tally in counted)  # and named ones fell back
        alike(packed, one)

    @pytest.mark.parametrize("enrich", [False, True], ids=["plain", "enriching"])
    def test_a_store_refusing_some_logs_fails_the_rows_one_process_fails(
        self, tmp_path: Path, enrich: bool
    ) -> None:
        one = ran(tmp_path / "one.jsonl", InProcessPages(), SETTINGS[1], rows=deep_rows(), enrich=enrich)
        packed = ran(tmp_path / "packed.jsonl", PackedPages(), SETTINGS[1], rows=deep_rows(), enrich=enrich)
        refused = [r for r in one[1] if r["outcome"] == "failed" and "nests more than" in str(r["detail"])]
        assert refused
        alike(packed, one)

    @pytest.mark.parametrize("how", ["stopped", "crashed"])
    def test_a_run_stopped_or_crashed_and_resumed_writes_what_one_process_writes(
        self, tmp_path: Path, how: str
    ) -> None:
        """Stopped after 9 steps, then resumed with a fresh sink on the file; or its 6th save failing
        after its step was written, then resumed with the same sink (the step replays: duplicates)."""
        runs: list[Ran] = []
        for name, pipeline in (("one", InProcessPages()), ("packed", PackedPages())):
            world = World()
            path = tmp_path / f"{name}.jsonl"
            world.trigger()
            seen: list[dict[str, object]] = []
            sink = JsonlActivityLogSink(path, fsync="never")
            world.logs = sink  # type: ignore[assignment]
            if how == "stopped":
                first = world.run(
                    settings=SETTINGS[1],
                    pipeline=pipeline,
                    on_outcomes=recorder(seen, world.tenant),
                    should_stop=iter([False] * 8 + [True]).__next__,
                )
                assert first.stopped
                sink.close()
                sink = JsonlActivityLogSink(path, fsync="never")
                world.logs = sink  # type: ignore[assignment]
            else:
                jobs = world.jobs
                world.jobs = Crashing(jobs, "save_progress", 6, "before", StoreUnavailable("down"))  # type: ignore[assignment]
                with pytest.raises(StoreUnavailable):
                    world.run(
                        settings=SETTINGS[1], pipeline=pipeline, on_outcomes=recorder(seen, world.tenant)
                    )
                world.jobs = jobs
            second = world.run(
                settings=SETTINGS[1], pipeline=pipeline, on_outcomes=recorder(seen, world.tenant)
            )
            runs.append((second.job, seen, path.read_bytes(), sink.count_migrated(world.company)))
            sink.close()
        one, packed = runs
        assert one[0].status == "completed"
        assert one[2] == ran(tmp_path / "whole.jsonl", InProcessPages(), SETTINGS[1])[2]
        alike(packed, one)

    def test_a_writer_without_packed_writes_gets_the_outcomes_row_by_row(self) -> None:
        """The in-memory timeline has no ``insert_packed``: the same documents and counts."""
        worlds = [World(rows=hostile_rows()), World(rows=hostile_rows())]
        jobs = []
        for world, pipeline in zip(worlds, (InProcessPages(), PackedPages()), strict=True):
            world.trigger()
            jobs.append(world.run(settings=SETTINGS[1], pipeline=pipeline).job)
        same(jobs[1], jobs[0])
        assert worlds[1].logs.documents == worlds[0].logs.documents


def outcomes_of(rows: list[AuditRow]) -> Sequence[Outcome]:
    """The outcomes one process gives ``rows``, the logs encoded as the JSONL sink encodes them."""
    world = World(rows=rows)
    seen: list[Outcome] = []
    world.trigger()
    world.run(settings=SETTINGS[0], on_outcomes=seen.extend)
    return seen


class TestPackedOutcomes:
    def test_read_row_by_row_sliced_and_pickled_it_is_what_was_packed(self, tmp_path: Path) -> None:
        encoder = jsonl_log
        outcomes = [
            Migrated(o.audit_id, encoder(o.log)) if isinstance(o, Migrated) else o
            for o in outcomes_of(hostile_rows()[:120])
        ]
        packed = pack_outcomes(outcomes)
        assert list(packed) == outcomes
        assert packed == outcomes
        assert packed[5:40] == outcomes[5:40]
        assert packed[-1] == outcomes[-1]
        assert packed.rows.kinds.count(PACKED) == sum(isinstance(o, Migrated) for o in outcomes)
        assert packed[3:90].tally(2, 1) == Tally.of(outcomes[3:90], 2, 1)
        assert pickle.loads(pickle.dumps(packed.rows)).data == packed.rows.data
        assert list(join([packed[:50], packed[50:70], packed[70:]])) == outcomes
        joined = join([packed[:50], tuple(outcomes[50:])])
        assert not isinstance(joined, PackedOutcomes)
        assert list(joined) == outcomes
        with pytest.raises(IndexError):
            packed[len(outcomes)]

    def test_a_log_whose_external_id_is_not_the_prefix_and_id_stays_a_log(self, tmp_path: Path) -> None:
        encoder = jsonl_log
        migrated = [o for o in outcomes_of(ROWS[:40]) if isinstance(o, Migrated)]
        odd = Migrated(migrated[1].audit_id, encoder(migrated[0].log))  # another row's external id
        outcomes = [Migrated(migrated[0].audit_id, encoder(migrated[0].log)), odd]
        packed = pack_outcomes(outcomes)
        assert packed.rows.kinds == b"ML"
        assert not packed.plain
        assert list(packed) == outcomes

    def test_a_log_its_writer_refuses_crosses_as_its_encoded_log(self) -> None:
        """``encode`` gives a log with a ``problem`` (too large, unencodable): a LOG row that reads
        back as the ``Migrated`` of that encoded log, not of the log given."""
        migrated = [o for o in outcomes_of(ROWS[:40]) if isinstance(o, Migrated)][:3]
        refused = attrs.evolve(jsonl_log(migrated[1].log), data=b"", problem="too large")

        def encode(log: Any) -> Any:
            return refused if log is migrated[1].log else jsonl_log(log)

        packed = pack_outcomes(migrated, encode)
        assert packed.rows.kinds == b"MLM"
        assert packed[1] == Migrated(migrated[1].audit_id, refused)
        assert packed[0] == Migrated(migrated[0].audit_id, jsonl_log(migrated[0].log))

    def test_an_outcome_of_a_subclass_of_migrated_is_a_log_written_row_by_row(self, tmp_path: Path) -> None:
        """Kind ``LOG``, as every path counts a ``Migrated`` (``isinstance``): counted against the
        batch size, its step not written from the arrays, its log written and counted migrated."""

        class Resent(Migrated):
            pass

        migrated = [o for o in outcomes_of(ROWS[:40]) if isinstance(o, Migrated)]
        first, second = (Migrated(o.audit_id, jsonl_log(o.log)) for o in migrated[:2])
        outcomes = [first, Resent(second.audit_id, second.log)]
        packed = pack_outcomes(outcomes)
        assert packed.rows.kinds == b"ML"
        assert (packed.plain, packed.logs, packed.log_marks()) == (False, 2, b"\x01\x01")
        assert list(packed) == outcomes
        assert packed.tally() == Tally.of(outcomes) == Tally(2, 2, {}, {}, 0, 0)
        with JsonlActivityLogSink(tmp_path / "x.jsonl") as sink:
            results = sink.insert_packed(packed)
            assert results is not None
            assert [r.status for r in results] == ["inserted", "inserted"]
            assert sink.count_migrated(first.log.company_sso_id) == 2

    def test_the_wire_gives_back_the_outcomes_the_worker_held(self) -> None:
        outcomes = tuple(outcomes_of(hostile_rows()[:80]))
        result = PageResult(outcomes, None, (False,) * len(outcomes), (False,) * len(outcomes))
        back = unpack(pickle.loads(pickle.dumps(pack(result))))
        assert repr(tuple(back.outcomes)) == repr(outcomes)  # repr: a Decimal('NaN') is no NaN's equal


class TestOutcomeLines:
    def test_packed_outcomes_make_the_lines_their_rows_make(self, tmp_path: Path) -> None:
        """The ``--outcomes`` file from a packed step: the text ``json.dumps`` gives each row."""
        outcomes = [
            Migrated(o.audit_id, jsonl_log(o.log)) if isinstance(o, Migrated) else o
            for o in outcomes_of(hostile_rows()[:150])
        ]
        packed = pack_outcomes(outcomes)
        for name, given in (("rows", tuple(outcomes[7:140])), ("packed", packed[7:140])):
            with OutcomeLines(tmp_path / name, "ácme \u2028") as lines:
                lines(given)
        assert (tmp_path / "packed").read_bytes() == (tmp_path / "rows").read_bytes()
        assert b'"outcome": "migrated"' in (tmp_path / "rows").read_bytes()


class TestWrittenKeysInBulk:
    @pytest.mark.parametrize("seed", range(6))
    def test_none_of_and_add_ascending_agree_with_one_key_at_a_time(self, seed: int) -> None:
        """Over arrays and bitmaps (blocks of more than 4,096 ids), across block boundaries."""
        chance = random.Random(seed)
        bulk, single = WrittenKeys(), WrittenKeys()
        group = ("co", "crm:acme:audit")
        written: set[int] = set()
        top = 1 << chance.choice((13, 17, 20))
        for _ in range(300):
            start = chance.randrange(top)
            numbers = sorted(
                {start + chance.randrange(70_000 if chance.random() < 0.1 else 60) for _ in range(20)}
            )
            expected = not written.intersection(numbers)
            assert bulk.none_of(group, numbers) is expected
            if expected:
                bulk.add_ascending(group, numbers)
                for number in numbers:
                    single.add((group[0], f"{group[1]}:{number}"))
                written.update(numbers)
        for number in range(0, top + 70_100, 7):
            key = (group[0], f"{group[1]}:{number}")
            assert (key in bulk) is (key in single) is (number in written)


def test_a_packed_page_of_another_encoding_is_refused(tmp_path: Path) -> None:
    encoder = jsonl_log
    migrated = [o for o in outcomes_of(ROWS[:40]) if isinstance(o, Migrated)]
    packed = pack_outcomes([Migrated(o.audit_id, encoder(o.log)) for o in migrated])
    packed.rows.encoding = "bson"
    with JsonlActivityLogSink(tmp_path / "y.jsonl") as sink, pytest.raises(TypeError):
        sink.insert_packed(packed)
