"""A worker's page through the wire and the run loop's write, per row: the tuples a row the wire sent
before the ninth round against the packed page (``packed``), CPU clock, one process.

    .venv/bin/python benchmarks/bench_packed_pages.py

The corpus world's outcomes (tenant ``acme``, one process's run), the first 500 as a page, 60 pages
with their ids shifted, each log encoded by ``jsonl_log``. Worker side: pack and pickle. Runner side:
unpickle, unpack, cut the steps (20 logs), write them to ``JsonlActivityLogSink.over_stream`` (to
``/dev/null``) and count them: before, ``migrate_batch`` → ``insert_batch``, ``settle_outcomes``,
``Tally.of`` on the rebuilt outcomes; now ``insert_packed`` and ``PackedOutcomes.tally`` on the arrays.
Three rounds, the two alternating; no save, no merge (the loop's per-step work is not in it).
"""

from __future__ import annotations

import os
import pickle
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from _machine import Stopwatch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from crm_audit_adapters.files.sink import JsonlActivityLogSink, jsonl_log
from crm_audit_adapters.page_pool.wire import pack, unpack
from crm_audit_transform.domain import EncodedLog, Failed, Migrated, Outcome, Skipped
from crm_audit_transform.packed import PackedOutcomes
from crm_audit_transform.tally import Tally
from crm_audit_transform.transformer import PageResult
from crm_audit_transform.usecases import RunSettings
from crm_audit_transform.usecases._run_steps import cut_steps, settle_outcomes
from crm_audit_transform.usecases.migrate_batch import migrate_batch
from support.corpus_account import World

PAGES = 60
ROWS = 500


def corpus_outcomes() -> list[Outcome]:
    world = World()
    seen: list[Outcome] = []
    world.trigger()
    world.run(settings=RunSettings(halt_threshold=1.0), on_outcomes=seen.extend)
    return seen


def page(base: Sequence[Outcome], shift: int) -> list[Outcome]:
    out: list[Outcome] = []
    for outcome in base[:ROWS]:
        audit_id = outcome.audit_id + shift
        if isinstance(outcome, Migrated):
            assert not isinstance(outcome.log, EncodedLog)
            encoded = jsonl_log(outcome.log)
            external_id = f"crm:acme:audit:{audit_id}"
            fields = (encoded.action, encoded.encoding, encoded.data, encoded.problem, encoded.source_tag)
            out.append(Migrated(audit_id, EncodedLog(encoded.company_sso_id, external_id, *fields)))
        else:
            out.append(type(outcome)(audit_id, outcome.reason, outcome.detail))
    return out


def old_pack(outcomes: Sequence[Outcome]) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    for o in outcomes:
        if isinstance(o, Migrated):
            log = o.log
            assert isinstance(log, EncodedLog)
            rows.append((o.audit_id, log.company_sso_id, log.external_id, log.action, log.encoding, log.data,
                         log.problem, log.source_tag, log.named))  # fmt: skip
        else:
            rows.append((o.audit_id, o.reason, o.detail, type(o) is Skipped))
    return rows


def old_unpack(rows: list[tuple[Any, ...]]) -> tuple[Outcome, ...]:
    out: list[Outcome] = []
    for row in rows:
        if len(row) == 9:
            out.append(Migrated(row[0], EncodedLog(*row[1:])))
        else:
            out.append((Skipped if row[3] else Failed)(row[0], row[1], row[2]))
    return tuple(out)


def write_old(sink: JsonlActivityLogSink, outcomes: Sequence[Outcome], ids: Sequence[int]) -> None:
    flags = (False,) * len(outcomes)
    for step in cut_steps(ids, outcomes, flags, flags, 20, first_check=10**9, every=200):
        logs = [o.log for o in step.outcomes if isinstance(o, Migrated)]
        result = migrate_batch(logs, sink, max_size=20)
        Tally.of(tuple(settle_outcomes(step.outcomes, result.results)))


def write_new(sink: JsonlActivityLogSink, outcomes: Sequence[Outcome], ids: Sequence[int]) -> None:
    flags = (False,) * len(outcomes)
    for step in cut_steps(ids, outcomes, flags, flags, 20, first_check=10**9, every=200):
        view = step.outcomes
        assert isinstance(view, PackedOutcomes)
        if view.has_packed:
            assert sink.insert_packed(view) is None
        view.tally()


def before_worker(pages: Sequence[Sequence[Outcome]]) -> list[bytes]:
    return [pickle.dumps(old_pack(p), 5) for p in pages]


def before_runner(sink: JsonlActivityLogSink, wired: Sequence[bytes], ids: Sequence[Sequence[int]]) -> None:
    for data, page_ids in zip(wired, ids, strict=True):
        write_old(sink, old_unpack(pickle.loads(data)), page_ids)


def packed_worker(pages: Sequence[Sequence[Outcome]]) -> list[bytes]:
    return [pickle.dumps(pack(PageResult(tuple(p))), 5) for p in pages]


def packed_runner(sink: JsonlActivityLogSink, wired: Sequence[bytes], ids: Sequence[Sequence[int]]) -> None:
    for data, page_ids in zip(wired, ids, strict=True):
        write_new(sink, unpack(pickle.loads(data)).outcomes, page_ids)


def clock(step: Callable[..., Any], *args: Any) -> tuple[float, Any]:
    with Stopwatch() as took:
        got = step(*args)
    return took.cpu, got


def main() -> int:
    base = corpus_outcomes()
    pages = [page(base, 10_000 * (index + 1)) for index in range(PAGES)]
    ids = [[o.audit_id for o in p] for p in pages]
    rows = PAGES * min(ROWS, len(base))
    print(f"corpus outcomes {len(base)}, migrated {sum(isinstance(o, Migrated) for o in base)}; {rows} rows")
    sides = {"before": (before_worker, before_runner), "packed": (packed_worker, packed_runner)}
    with open(os.devnull, "wb") as nowhere:
        for round_ in range(3):
            for kind in ("before", "packed") if round_ % 2 == 0 else ("packed", "before"):
                sink = JsonlActivityLogSink.over_stream(nowhere)
                worker_side, runner_side = sides[kind]
                worker, wired = clock(worker_side, pages)
                runner, _ = clock(runner_side, sink, wired, ids)
                print(
                    f"round {round_ + 1} {kind}: worker pack + pickle {worker / rows * 1e6:.2f} us a row, "
                    f"runner unpickle + unpack + write + count {runner / rows * 1e6:.2f} us a row, "
                    f"{len(wired[0])} bytes a page"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
