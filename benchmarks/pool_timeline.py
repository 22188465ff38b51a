"""Where a ``--workers 2`` run waits: the runner's and each worker's timeline, from one pool stage.

    .venv/bin/python benchmarks/pool_timeline.py --dsn DSN --rows 100000 \
        --stages end_to_end_workers,end_to_end_workers_unshared [--repeat 2]

Runs each stage of ``scale_stages.py`` (``bench_<rows>`` loaded by ``run_scale.py --reuse`` or
``generate.py``) in a fresh process with a tracer: in the runner, ``ProcessPagePipeline``'s calls
are timed (``time.monotonic``) — the start of its workers (``_start``), each step of a page of its
own (``RunPages.work_here``), each wait for a worker's result (``WorkerProcesses.wait`` on a future
not yet done, and the ``wait`` behind a page being prepared), and the time the run loop holds each
page handed back (it writes and saves it); in each worker (the tracer is in the fork server's
preload, so every worker forked from it has it), each task (``worker.page_span`` and the others)
from its start to its end, and each result's sending back (``sending``: part of the idle time
between tasks).
The rest of the runner's time is the pool's own bookkeeping and reads: the next pages' ids, the
lookups, unpacking a worker's page, transforming a page of its own when it is the next to write.

It prints per run the stage's figures and: the runner's busy and waiting seconds by kind; each
worker's busy seconds, and its idle seconds — before its first task, after its last, and in
between, split by what the runner was doing meanwhile. The tracer's cost is a line written per
task and per step (a few hundred a run): the timeline's shape, not a speed figure (those are
``run_scale.py``'s and ``ab_trees.py``'s).
"""

from __future__ import annotations

import argparse
import bisect
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TRACE_DIR = "POOL_TIMELINE_DIR"
RUNNER_KINDS = ("start", "own", "wait", "wait_plan", "written", "send", "result")


def _note(kind: str, started: float, ended: float) -> None:
    """Append one span of this process to its file in ``$POOL_TIMELINE_DIR``."""
    with (Path(os.environ[TRACE_DIR]) / f"{os.getpid()}.txt").open("a") as out:
        out.write(f"{kind} {started:.6f} {ended:.6f}\n")


def _timed(kind: str, call: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(call)  # its module and name: a worker's task is pickled by reference
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.monotonic()
        try:
            return call(*args, **kwargs)
        finally:
            _note(kind, started, time.monotonic())

    return timed


def install() -> None:
    """Put the tracer in: the worker's tasks here (and, by the fork server's preload of this
    module, in every worker), the pool's calls in this process."""
    from concurrent.futures import process

    from crm_audit_adapters import fork_server
    from crm_audit_adapters.page_pool import pipeline, run_pages, worker, worker_processes

    for name in ("page_span", "page", "prepare_span", "prepare", "finish"):
        setattr(worker, name, _timed("task", getattr(worker, name)))
    # A worker's start: the executor's initializer (its transformer built, its reader thread) and
    # each run's begin (its encoder and lookups unpickled), both before its first task.
    worker.start = _timed("init", worker.start)
    worker.begin = _timed("begin", worker.begin)
    # A task's result written back on the executor's result pipe: the worker waits there until the
    # runner's thread reading that pipe has taken all of it (a page's result is larger than the pipe).
    process._sendback_result = _timed("send", process._sendback_result)  # type: ignore[attr-defined]
    pipeline.WRITER_ENCODERS = (*pipeline.WRITER_ENCODERS, __name__)  # the fork server imports it
    # ... and so does one started first, as `run --workers N` starts it (the `_early` stages).
    fork_server.RUN_PRELOAD = (*fork_server.RUN_PRELOAD, __name__)  # type: ignore[misc]
    pool = pipeline.ProcessPagePipeline
    pool._start = _timed("start", pool._start)  # type: ignore[method-assign]
    pages = run_pages.RunPages
    pages.work_here = _timed("own", pages.work_here)  # type: ignore[method-assign]
    # Handing pages to the workers (the next pages' ids read there: the run loop's page source),
    # and the head's result (unpacked from its worker, or a page of its own transformed now).
    pages.send = _timed("send", pages.send)  # type: ignore[method-assign]
    pages.result = _timed("result", pages.result)  # type: ignore[method-assign]
    processes = worker_processes.WorkerProcesses
    untimed_wait = processes.wait

    def wait(self: Any, future: Any) -> Any:
        return untimed_wait(self, future) if future.done() else _timed("wait", untimed_wait)(self, future)

    processes.wait = wait  # type: ignore[method-assign]
    run_pages.wait = _timed("wait_plan", run_pages.wait)  # type: ignore[attr-defined]
    untimed_transform = pool._transform

    def transform(self: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
        started = time.monotonic()
        pages = untimed_transform(self, *args, **kwargs)
        try:
            for page in pages:
                handed = time.monotonic()
                yield page
                _note("written", handed, time.monotonic())
        finally:
            pages.close()
            _note("run", started, time.monotonic())

    pool._transform = transform  # type: ignore[method-assign]


if os.environ.get(TRACE_DIR) and "crm_audit_adapters.page_pool.worker" in sys.modules:
    # Imported by the fork server's preload (after the worker module): trace its tasks there.
    install()


def _spans(directory: Path) -> dict[int, dict[str, list[tuple[float, float]]]]:
    processes: dict[int, dict[str, list[tuple[float, float]]]] = {}
    for path in directory.glob("*.txt"):
        kinds: dict[str, list[tuple[float, float]]] = {}
        for line in path.read_text().splitlines():
            kind, started, ended = line.split()
            kinds.setdefault(kind, []).append((float(started), float(ended)))
        processes[int(path.stem)] = {kind: sorted(spans) for kind, spans in kinds.items()}
    return processes


def _overlap(gap: tuple[float, float], spans: list[tuple[float, float]]) -> float:
    start, end = gap
    total = 0.0
    for begun, ended in spans[max(0, bisect.bisect_left(spans, (start, start)) - 1) :]:
        if begun >= end:
            break
        total += max(0.0, min(end, ended) - max(start, begun))
    return total


def _exclusive(seconds: dict[str, float]) -> dict[str, float]:
    """Each kind's seconds rounded, ``result`` without the ``wait`` inside it (a head's result
    waited for is counted as a wait)."""
    seconds["result"] = max(0.0, seconds["result"] - seconds["wait"])
    return {kind: round(value, 3) for kind, value in seconds.items()}


def timeline(directory: Path) -> dict[str, Any]:
    """The runner's seconds by kind and each worker's busy and idle seconds (module docstring)."""
    processes = _spans(directory)
    runner = next(kinds for kinds in processes.values() if "run" in kinds)
    run_start, run_end = runner["run"][0]
    span = run_end - run_start
    busy = _exclusive({kind: sum(b - a for a, b in runner.get(kind, [])) for kind in RUNNER_KINDS})
    report: dict[str, Any] = {
        "run_seconds": round(span, 3),
        "runner": {**busy, "other": round(span - sum(busy.values()), 3)},
        "workers": [],
    }
    for kinds in processes.values():
        tasks = kinds.get("task")
        if not tasks:
            continue
        gaps = [(run_start, tasks[0][0])]
        gaps += [(tasks[i][1], tasks[i + 1][0]) for i in range(len(tasks) - 1)]
        gaps.append((tasks[-1][1], run_end))
        between = gaps[1:-1]
        idle = sum(b - a for a, b in between)
        during = _exclusive(
            {kind: sum(_overlap(g, runner.get(kind, [])) for g in between) for kind in RUNNER_KINDS}
        )
        sends = kinds.get("send", [])
        first = tasks[0][0]
        init = kinds.get("init", [(run_start, run_start)])[0]
        begin = next((span for span in kinds.get("begin", []) if span[0] < first), (first, first))
        report["workers"].append(
            {
                "tasks": len(tasks),
                "busy": round(sum(b - a for a, b in tasks), 3),
                "sending": round(sum(b - a for a, b in sends), 3),
                "idle_before_first": round(gaps[0][1] - gaps[0][0], 3),
                # its parts: the run's start to the initializer's (the fork, the process's own start),
                # the initializer, then to the run's begin, the begin, then to the first task.
                "before_first": {
                    "to_init": round(init[0] - run_start, 3),
                    "init": round(init[1] - init[0], 3),
                    "to_begin": round(begin[0] - init[1], 3),
                    "begin": round(begin[1] - begin[0], 3),
                    "to_task": round(first - begin[1], 3),
                },
                "idle_after_last": round(gaps[-1][1] - gaps[-1][0], 3),
                "idle_between": round(idle, 3),
                "idle_between_while_runner": {**during, "other": round(idle - sum(during.values()), 3)},
            }
        )
    return report


def run(stage: str, args: argparse.Namespace) -> dict[str, Any]:
    schema = f"bench_{args.rows}"
    with tempfile.TemporaryDirectory(prefix="pool-timeline-") as directory:
        argv = [
            stage, "--dsn", args.dsn, "--schema", schema, "--data-dir", str(HERE / "data" / schema),
            "--out-dir", str(HERE / "out"),
        ]  # fmt: skip
        code = (
            f"import sys; sys.path.insert(0, {str(HERE)!r}); import pool_timeline; pool_timeline.install(); "
            f"import scale_stages; sys.exit(scale_stages.main({argv!r}))"
        )
        # On PYTHONPATH: the fork server imports its preload without the runner's sys.path.
        path = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
        from run_scale import stage_env  # here: the stage process imports this module too

        env = stage_env({**os.environ, TRACE_DIR: directory, "PYTHONPATH": path})  # bytecode cached
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
        )
        if done.returncode:
            return {"stage": stage, "error": done.stderr.strip()[-800:]}
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        figures = {key: result.get(key) for key in ("seconds", "cpu_seconds", "worker_cpu_seconds")}
        return {"stage": stage, **figures, "load": round(os.getloadavg()[0], 2), **timeline(Path(directory))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--stages", default="end_to_end_workers")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    (HERE / "out").mkdir(exist_ok=True)  # the stages write their logs there (as ab_trees.py makes it)
    for round_ in range(args.repeat):
        for stage in args.stages.split(","):
            print(f"round {round_ + 1} {json.dumps(run(stage, args))}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
