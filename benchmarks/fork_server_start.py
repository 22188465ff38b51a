"""How long a ``run --workers N`` process waits for its fork server: the server's preload, timed.

    .venv/bin/python benchmarks/fork_server_start.py [--repeat 10] [--src NAME=PATH ...] [--bytecode source]

In each round, for each tree (``--src``: a ``src`` directory put first on ``PYTHONPATH``, e.g. a
reference tree's with its compiled extensions copied in; by default this tree's), a fresh
interpreter starts the fork server as ``run --workers N`` does (``fork_server.RUN_PRELOAD``,
``ensure_fork_server``) and at once asks it for a process (a one-process ``forkserver`` pool) and
runs a task of no cost there: what a page pool's worker waits for before its first page, when the
runner's own set-up is shorter than the preload. Printed per tree: the wall seconds from the
server's start to that task's end, the server's CPU seconds (its preload, mostly) and the modules
the forked process holds; the best of each over the rounds, which alternate the trees.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from _machine import arguments, uptime

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run_scale import BYTECODE, add_bytecode_option, stage_env  # noqa: E402 - benchmarks are scripts beside each other

PROBE = """
import json, multiprocessing, time
from multiprocessing import forkserver
started = time.monotonic()
from crm_audit_adapters.fork_server import RUN_PRELOAD, ensure_fork_server

ensure_fork_server(RUN_PRELOAD)
with multiprocessing.get_context("forkserver").Pool(1) as pool:
    modules = pool.apply(eval, ("len(__import__('sys').modules)",))
    first_task = time.monotonic() - started
pid = forkserver._forkserver._forkserver_pid
fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
cpu = (int(fields[11]) + int(fields[12])) / __import__("os").sysconf("SC_CLK_TCK")
print(json.dumps({"first_task_s": round(first_task, 3), "server_cpu_s": cpu, "modules": modules}))
"""


def main() -> int:
    parser = arguments(__doc__, repeat=10)
    parser.add_argument("--src", action="append", default=[], help="NAME=PATH of a src directory")
    add_bytecode_option(parser)
    args = parser.parse_args()
    BYTECODE["cached"] = args.bytecode == "cached"
    trees = dict(item.split("=", 1) for item in args.src) or {"this": str(HERE.parent / "src")}
    seen: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    print(f"bytecode: {args.bytecode}; load before: {uptime()}", flush=True)
    for round_ in range(args.repeat):
        for name, src in trees.items():
            env = stage_env({**os.environ, "PYTHONPATH": src})
            done = subprocess.run(
                [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
            )
            got = json.loads(done.stdout.strip().splitlines()[-1])
            seen[name].append(got)
            print(f"round {round_ + 1} {name} {json.dumps(got)}", flush=True)
    print(f"load after: {uptime()}")
    for name, runs in seen.items():
        best_wall = min(run["first_task_s"] for run in runs)
        best_cpu = min(run["server_cpu_s"] for run in runs)
        median_cpu = sorted(run["server_cpu_s"] for run in runs)[len(runs) // 2]
        print(
            f"{name}: first task best {best_wall:.3f} s, server CPU best {best_cpu:.2f} s "
            f"(median {median_cpu:.2f} s), {runs[0]['modules']} modules"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
