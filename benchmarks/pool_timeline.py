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

It prints per run the stage's figures and: the run's start to its first page handed back to the
run loop (``first_written``); the runner's busy and waiting seconds by kind; each
worker's busy seconds, and its idle seconds — before its first task, after its last, and in
between, split by what the runner was doing meanwhile; inside each worker's tasks, the seconds its
main thread waited for its reader thread's rows (``take_wait``) and made its lookups, and its first
task's parts (``first_task``: a worker opens its connections at its first page). The tracer's cost is
a line written per task and per step (a few hundred a run): the timeline's shape, not a speed figure
(those are ``run_scale.py``'s and ``ab_trees.py``'s).

**Cores by phase** (``phases``): while the stage runs, this process reads every 10 ms the CPU time
(``/proc/PID/task/*/schedstat``, in nanoseconds) of each process of the stage's tree (the runner,
its workers, the fork server) and of the PostgreSQL server's (the postmaster and its backends), and
splits the run into ``start`` (the run's start to the end of the first worker's first task: the
worker's fork, its start and its first page, which opens its connections), ``steady`` (to the
feed's end: the last page read) and ``tail`` (to the run's end: the last pages finished and
written). Per phase: its seconds, the cores each side kept busy on average, the idle core seconds
(``nproc`` × seconds − the CPU of all of them), and by the tracer's marks the runner's seconds
waiting for a worker and each worker's seconds out of a task. The sampler takes a few percent of a core
of its own, so read it on a quiet machine.
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

from _machine import arguments

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


def start_early(stage: str) -> None:
    """The fork server started first for ``stage``, before the package is imported, as
    ``scale_stages.py`` starts it (``stage_start``), with this module in its preload (``install``)."""
    from crm_audit_adapters import fork_server

    fork_server.RUN_PRELOAD = (*fork_server.RUN_PRELOAD, __name__)  # type: ignore[misc]
    import stage_start

    stage_start.start_fork_server_for(stage)


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
    # Inside a worker's task: its wait for the reader thread's rows, and its lookups.
    worker._SpanReads.take = _timed("take", worker._SpanReads.take)  # type: ignore[method-assign]
    from crm_audit_transform import lookup

    lookup.RunLookups.__call__ = _timed("lookup", lookup.RunLookups.__call__)  # type: ignore[method-assign]
    worker.begin = _timed("begin", worker.begin)
    # A task's result written back on the executor's result pipe: the worker waits there until the
    # runner's thread reading that pipe has taken all of it (a page's result is larger than the pipe).
    process._sendback_result = _timed("send", process._sendback_result)  # type: ignore[attr-defined]
    pipeline.WRITER_ENCODERS = (*pipeline.WRITER_ENCODERS, __name__)  # the fork server imports it
    # ... and so does one started first, as `run --workers N` starts it (the `_early` stages).
    if __name__ not in fork_server.RUN_PRELOAD:  # not yet put there by ``start_early``
        fork_server.RUN_PRELOAD = (*fork_server.RUN_PRELOAD, __name__)  # type: ignore[misc]
    pool = pipeline.ProcessPagePipeline
    pool._start = _timed("start", pool._start)  # type: ignore[method-assign]
    pages = run_pages.RunPages
    pages.work_here = _timed("own", pages.work_here)  # type: ignore[method-assign]
    # Handing pages to the workers (the next pages' ids read there: the run loop's page source),
    # and the head's result (unpacked from its worker, or a page of its own transformed now).
    pages.send = _timed("send", pages.send)  # type: ignore[method-assign]
    pages.result = _timed("result", pages.result)  # type: ignore[method-assign]
    from crm_audit_adapters.page_pool import in_flight

    feed_next = in_flight.Feed.next
    ended: set[int] = set()  # the feeds whose end is noted (a Feed has slots: no mark on it)

    def next_page(self: Any) -> Any:
        got = feed_next(self)
        if got is None and id(self) not in ended:
            ended.add(id(self))
            at = time.monotonic()
            _note("fed_end", at, at)
        return got

    in_flight.Feed.next = next_page  # type: ignore[method-assign]
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


def _union(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """``spans`` sorted, those that overlap merged (a wait inside another counts once)."""
    merged: list[tuple[float, float]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


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
    written = runner.get("written", [])
    report: dict[str, Any] = {
        "run_seconds": round(span, 3),
        # The run's start to its first page handed back to the run loop (which then writes it).
        "first_written": round(written[0][0] - run_start, 3) if written else None,
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
        takes, lookups = kinds.get("take", []), kinds.get("lookup", [])
        first_task = tasks[0]
        report["workers"].append(
            {
                "tasks": len(tasks),
                "busy": round(sum(b - a for a, b in tasks), 3),
                # inside the tasks: waiting for the reader thread's rows, and the lookups
                "take_wait": round(sum(b - a for a, b in takes), 3),
                "lookups": round(sum(b - a for a, b in lookups), 3),
                "first_task": {
                    "seconds": round(first_task[1] - first_task[0], 3),
                    "take_wait": round(_overlap(first_task, takes), 3),
                    "lookups": round(_overlap(first_task, lookups), 3),
                    "median_task": round(sorted(b - a for a, b in tasks)[len(tasks) // 2], 3),
                },
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


SAMPLE_PERIOD_S = 0.01
"""How often ``Sampler`` reads the processes' CPU time."""


def _cpu_ns(pid: int) -> int | None:
    """The CPU nanoseconds of ``pid``'s live threads (``schedstat``); None once it is gone."""
    total, seen = 0, False
    for path in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        try:
            total += int(path.read_text().split()[0])
            seen = True
        except (OSError, ValueError, IndexError):
            continue
    return total if seen else None


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants, as /proc tells them now."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for path in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                todo.extend(int(child) for child in path.read_text().split())
            except (OSError, ValueError):
                continue
    return found


class Sampler:
    """Every ``SAMPLE_PERIOD_S`` in a thread: the CPU nanoseconds of each process of ``root``'s tree
    and of ``server``'s (the postmaster, None: none), until ``stop``."""

    def __init__(self, root: int, server: int | None) -> None:
        import threading

        self.samples: dict[int, list[tuple[float, int]]] = {}
        self.server: set[int] = set()
        self._roots = (root, server)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        root, server = self._roots
        while not self._stop.is_set():
            at = time.monotonic()
            serving = _tree(server) if server is not None else []
            self.server.update(serving)
            for pid in _tree(root) + serving:
                ns = _cpu_ns(pid)
                if ns is not None:
                    self.samples.setdefault(pid, []).append((at, ns))
            self._stop.wait(SAMPLE_PERIOD_S)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def cpu(self, pid: int, start: float, end: float) -> float:
        """``pid``'s CPU seconds between ``start`` and ``end`` (monotonic), read between samples
        linearly; a process first seen after ``start`` counts from zero (a new process starts at 0)."""
        return (self._at(pid, end) - self._at(pid, start)) / 1e9

    def _at(self, pid: int, when: float) -> float:
        samples = self.samples.get(pid, [])
        if not samples or when <= samples[0][0]:
            return 0.0 if not samples or samples[0][0] > when else samples[0][1]
        index = bisect.bisect_left(samples, (when, -1))
        if index >= len(samples):
            return samples[-1][1]
        (t0, v0), (t1, v1) = samples[index - 1], samples[index]
        return v0 + (v1 - v0) * (when - t0) / (t1 - t0) if t1 > t0 else v1


def phases(directory: Path, sampler: Sampler) -> dict[str, Any]:
    """The run's cores by phase (module docstring): seconds, each side's average cores busy, and the
    idle core seconds against ``os.cpu_count()`` cores."""
    processes = _spans(directory)
    runner_pid, runner = next((pid, kinds) for pid, kinds in processes.items() if "run" in kinds)
    run_start, run_end = runner["run"][0]
    worker_pids = [pid for pid, kinds in processes.items() if kinds.get("task")]
    first_end = min((processes[pid]["task"][0][1] for pid in worker_pids), default=run_start)
    fed_end = runner.get("fed_end", [(run_end, run_end)])[0][0]
    cut = [run_start, min(max(first_end, run_start), run_end), min(max(fed_end, first_end), run_end), run_end]
    sides = {
        "runner": [runner_pid],
        "workers": worker_pids,
        "server": sorted(sampler.server),
        "other": [
            pid
            for pid in sampler.samples
            if pid not in sampler.server and pid != runner_pid and pid not in worker_pids
        ],
    }
    cores = os.cpu_count() or 1
    report: dict[str, Any] = {}
    for name, start, end in zip(
        ("start", "steady", "tail", "run"), [*cut[:3], cut[0]], [*cut[1:], cut[3]], strict=True
    ):
        seconds = end - start
        busy = {side: sum(sampler.cpu(pid, start, end) for pid in pids) for side, pids in sides.items()}
        waits = _union(runner.get("wait", []) + runner.get("wait_plan", []))
        report[name] = {
            "seconds": round(seconds, 3),
            "cores": {side: round(cpu / seconds, 2) if seconds > 0 else 0.0 for side, cpu in busy.items()},
            "idle_core_seconds": round(cores * seconds - sum(busy.values()), 3),
            # by the tracer's marks: the runner waiting for a worker, each worker out of a task
            "runner_wait": round(_overlap((start, end), waits), 3),
            "worker_idle": [
                round(seconds - _overlap((start, end), processes[pid]["task"]), 3) for pid in worker_pids
            ],
        }
    return report


def run(stage: str, args: argparse.Namespace) -> dict[str, Any]:
    schema = f"bench_{args.rows}"
    with tempfile.TemporaryDirectory(prefix="pool-timeline-") as directory:
        argv = [
            stage, "--dsn", args.dsn, "--schema", schema, "--data-dir", str(HERE / "data" / schema),
            "--out-dir", str(HERE / "out"),
        ]  # fmt: skip
        code = (
            f"import sys; sys.path.insert(0, {str(HERE)!r}); import pool_timeline; "
            f"pool_timeline.start_early({stage!r}); pool_timeline.install(); "
            f"import scale_stages; sys.exit(scale_stages.main({argv!r}))"
        )
        # On PYTHONPATH: the fork server imports its preload without the runner's sys.path.
        path = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
        from run_scale import stage_env  # here: the stage process imports this module too

        env = stage_env({**os.environ, TRACE_DIR: directory, "PYTHONPATH": path})  # bytecode cached
        from scale_pipeline import _postmaster

        with subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        ) as stage_process:
            sampler = Sampler(stage_process.pid, _postmaster(args.dsn))
            try:
                stdout, stderr = stage_process.communicate()
            finally:
                sampler.stop()
        if stage_process.returncode:
            return {"stage": stage, "error": stderr.strip()[-800:]}
        result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
        figures = {key: result.get(key) for key in ("seconds", "cpu_seconds", "worker_cpu_seconds")}
        return {
            "stage": stage,
            **figures,
            "load": round(os.getloadavg()[0], 2),
            **timeline(Path(directory)),
            "phases": phases(Path(directory), sampler),
        }


def main() -> int:
    parser = arguments(__doc__, repeat=1)
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--stages", default="end_to_end_workers")
    args = parser.parse_args()
    (HERE / "out").mkdir(exist_ok=True)  # the stages write their logs there (as ab_trees.py makes it)
    for round_ in range(args.repeat):
        for stage in args.stages.split(","):
            print(f"round {round_ + 1} {json.dumps(run(stage, args))}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
