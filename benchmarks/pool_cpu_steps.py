"""Where a ``--workers 2`` run's CPU goes, by process and by step, against one process's.

    .venv/bin/python benchmarks/pool_cpu_steps.py --dsn DSN --rows 100000 \
        --stages end_to_end,end_to_end_workers_early [--repeat 2] [--rate 200] [--idle] [--keep DIR]

Runs each stage of ``scale_stages.py`` (``bench_<rows>`` loaded by ``run_scale.py --reuse`` or
``generate.py``) in a fresh process under ``py-spy record --subprocesses --threads --nonblocking``
(py-spy on ``PATH`` or beside this interpreter: a profiler installed by hand, not a dependency),
then sorts every sample of each process (the runner, each worker; the fork server's and the
resource tracker's are left out) into a step, by the innermost frame of its stack that names one
(``STEPS``): reading rows or page ids, loading (``Transformer.prepare``), lookups, the rules,
encoding the logs, packing and unpacking a worker's page, sending and receiving on the pipes
(pickling included), the executor's other thread work, writing, saving the cursor; ``other`` is
the rest (freeing a page's objects, the collector, the loop's own lines). A step's seconds are its
share of the process's samples times the process's CPU seconds as the stage measured them
(``/proc``; the runner's are its loop's, so its main thread is counted inside ``RunLoop.run``
only), so the columns add up to what ``run_scale.py`` reports. The PostgreSQL server's CPU is the
stage's ``server_cpu_seconds``. With ``--idle`` every thread is sampled, waiting or not: each
main thread's wall seconds by step (what it waits for), at ``--rate`` samples a second.

Sampling adds its own cost (a few per cent at 200 Hz; ``--nonblocking`` never stops the process):
read the shares, not the speed, and compare stages of one run.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _machine import arguments

HERE = Path(__file__).resolve().parent

STEPS: tuple[tuple[str, str], ...] = (
    # (a frame's qualified name, step): the innermost frame of a stack found here names its step.
    ("PostgresAuditSource.span_rows", "read rows"),
    ("PostgresAuditSource.page", "read rows"),
    ("PostgresAuditSource.page_ids", "read page ids"),
    ("_SpanReads.take", "wait for rows"),
    ("Transformer.prepare", "load (prepare)"),
    ("Transformer.plan", "plan"),
    ("RunLookups.__call__", "lookups"),
    ("Transformer.transform", "rules (transform)"),
    ("jsonl_log", "encode logs"),
    ("sink_line", "encode logs"),
    ("pack_outcomes", "pack a page"),
    ("read_ids", "pack a page"),
    ("unpack", "unpack a page"),
    ("RunLoop._apply", "write and count"),
    ("RunLoop._steps", "cut steps"),
    ("RunLoop._save", "save cursor"),
    ("RunLoop._finish", "save cursor"),
    ("RunPages.send", "hand pages out"),
    ("RunPages.look_up", "look up (runner)"),
    ("RunPages.result", "wait for a worker"),
    ("RunPages.look_up_own", "wait for a worker"),
    ("_ConnectionBase.send", "send (pickle, write a pipe)"),
    ("_ConnectionBase.send_bytes", "send (pickle, write a pipe)"),
    ("ForkingPickler.dumps", "send (pickle, write a pipe)"),
    ("_ConnectionBase.recv", "receive (read a pipe, unpickle)"),
    ("_ConnectionBase.recv_bytes", "receive (read a pipe, unpickle)"),
    ("Queue.get", "receive (read a pipe, unpickle)"),
    ("_ExecutorManagerThread", "executor threads (other)"),
    ("Queue._feed", "executor threads (other)"),
    ("_process_worker", "task (other)"),
    ("Starting", "worker start"),
    ("start (crm_audit_adapters/page_pool/worker.py", "worker start"),
    ("begin (crm_audit_adapters/page_pool/worker.py", "worker start"),
)
LOOP = "RunLoop.run "
"""The runner's main thread is counted inside the run loop only (its CPU seconds are the loop's)."""
PROCESS = re.compile(r'process (?P<pid>\d+):"(?P<command>[^"]*)";')
"""A process frame: its command line may hold ``;`` (the fork server's ``-c`` code), never ``"``."""
THREAD = re.compile(r"^thread \(\d+\)(?:: (?P<name>.*))?$")


def find_py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise SystemExit("py-spy not found: pip install py-spy (a profiler; not a dependency)")
    return found


def step_of(frames: list[str]) -> str:
    """The step of a stack, root first: the innermost frame that names one, else ``other``."""
    for frame in reversed(frames):
        for marker, step in STEPS:
            if frame.startswith(marker) and frame[len(marker) : len(marker) + 1] in (" ", ".", ":"):
                return step
    return "other"


Counts = collections.Counter[tuple[str, str]]


def samples(raw: Path) -> dict[int, tuple[str, Counts]]:
    """Per process id: its command line and its samples by (thread name, step) (``py-spy --format
    raw --subprocesses --threads``: a stack starts with its process's ancestors, then its thread)."""
    per: dict[int, tuple[str, Counts]] = {}
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        pid, command, thread, depth = 0, "", "", 0
        while (process := PROCESS.match(stack)) is not None:
            pid, command, depth = int(process["pid"]), process["command"], depth + 1
            stack = stack[process.end() :]
        frames = stack.split(";")
        if frames and (named := THREAD.match(frames[0])) is not None:
            thread = named["name"] or ""
            frames.pop(0)
        if not pid:
            continue
        entry = per.setdefault(pid, (command, collections.Counter()))
        # The runner (the first process) is counted in its loop only: its CPU seconds are the loop's.
        inside = depth > 1 or thread != "MainThread" or any(frame.startswith(LOOP) for frame in frames)
        entry[1][(thread, step_of(frames) if inside else "outside the loop")] += int(count)
    return per


def account(stage: str, args: argparse.Namespace, py_spy: str) -> dict[str, Any]:
    schema = f"bench_{args.rows}"
    with tempfile.TemporaryDirectory(prefix="pool-cpu-") as directory:
        raw = Path(directory) / "profile.txt"
        command = [
            py_spy, "record", "--subprocesses", "--nonblocking", "--threads", "--format", "raw",
            "--rate", str(args.rate), "--output", str(raw), *(["--idle"] if args.idle else []), "--",
            sys.executable, str(HERE / "scale_stages.py"), stage, "--dsn", args.dsn, "--schema", schema,
            "--data-dir", str(HERE / "data" / schema), "--out-dir", str(HERE / "out"),
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode:
            return {"stage": stage, "error": done.stderr.strip()[-800:]}
        # py-spy writes its own lines too: the stage's is the JSON one.
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        result: dict[str, Any] = json.loads(lines[-1])
        per = samples(raw)
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            shutil.copy(raw, args.keep / f"{stage}-{int(time.time())}.txt")
    rate = args.rate if args.idle else None
    runner_cpu = float(result["cpu_seconds"])
    worker_cpu = [float(cpu) for cpu in result.get("worker_cpu_seconds") or []]
    runner_pid = min(per)  # the stage's own process starts first
    # A worker is forked from the fork server, whose command line it keeps; the server itself imports,
    # then waits, and the resource tracker waits: the busiest of the others are the workers.
    others = sorted((pid for pid in per if pid != runner_pid), key=lambda pid: -sum(per[pid][1].values()))
    report: dict[str, Any] = {
        "stage": stage,
        "seconds": result.get("seconds"),
        "runner_cpu_seconds": round(runner_cpu, 2),
        "worker_cpu_seconds": worker_cpu,
        "server_cpu_seconds": result.get("server_cpu_seconds"),
        "load": round(os.getloadavg()[0], 2),
        "idle_sampled": args.idle,
        "runner": _spread(per[runner_pid][1], runner_cpu, rate),
    }
    for index, (pid, cpu) in enumerate(zip(others, worker_cpu, strict=False)):
        report[f"worker{index}"] = _spread(per[pid][1], cpu, rate)
    return report


def _spread(counts: Counts, cpu: float, rate: int | None) -> dict[str, Any]:
    """The process's CPU seconds split by its samples' steps, largest first, and by thread; with
    ``rate`` (``--idle``: every thread sampled, waiting or not) each thread's wall seconds at that
    many samples a second instead, and the main thread's by step."""
    counts = collections.Counter({key: n for key, n in counts.items() if key[1] != "outside the loop"})
    total = sum(counts.values()) or 1
    steps: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    for (thread, step), count in counts.items():
        steps[step] += count
        threads[thread] += count
    if rate:
        scale = 1 / rate
        main = {step: round(n * scale, 3) for (t, step), n in counts.most_common() if t == "MainThread"}
        return {
            "main_thread_wall": main,
            "threads_wall": {t: round(n * scale, 3) for t, n in threads.items()},
        }
    return {
        "steps": {step: round(cpu * count / total, 3) for step, count in steps.most_common()},
        "threads": {thread: round(cpu * count / total, 3) for thread, count in threads.most_common()},
    }


def main() -> int:
    parser = arguments(__doc__, repeat=1)
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--stages", default="end_to_end,end_to_end_workers_early")
    parser.add_argument("--keep", type=Path, help="copy each run's raw py-spy profile into this folder")
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples a second")
    parser.add_argument(
        "--idle", action="store_true", help="sample waiting threads too: the main threads' wall by step"
    )
    args = parser.parse_args()
    py_spy = find_py_spy()
    (HERE / "out").mkdir(exist_ok=True)
    for round_ in range(args.repeat):
        for stage in args.stages.split(","):
            print(f"round {round_ + 1} {json.dumps(account(stage, args, py_spy))}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
