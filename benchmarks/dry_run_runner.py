"""The dry run's runner alone: its CPU when every page is a worker's, this tree against a git ref.

    .venv/bin/python benchmarks/dry_run_runner.py --ref main --rows 100000 --repeat 3

Runs ``dry-run --workers 2 --out`` on ``dry_run_scale.py``'s inputs with the page pool not sharing
(``ProcessPagePipeline(share=False)``: two worker processes transform every range, the runner only
cuts the ranges, merges the reports, writes and saves), so the runner's CPU is what it spends on the
workers' pages — the part of a ``--workers`` run no other core can take — plus its setup. Each
command also runs at ``--rows`` 1,000 (start-up, a small setup), and ``us_per_row`` is
``(cpu(rows) - cpu(1000)) / (rows - 1000)``: an upper bound, since the contacts file's index (the
setup) grows with the rows too. The summary compares the best runner CPU at ``--rows``. The ref's
``src/`` is exported as ``ab_trees.py`` exports it; the trees alternate round by round. CPU is
``RUSAGE_SELF`` of the runner's process (user + system), so load inflates it less than wall time.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from _machine import arguments, uptime

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

_RUNNER = """
import json, resource, sys, time
import crm_audit_adapters.page_pool.pipeline as pipeline
from crm_audit_adapters.cli import main

original = pipeline.ProcessPagePipeline.__init__

def unshared(self, workers, recipe, **options):
    options["share"] = False
    original(self, workers, recipe, **options)

pipeline.ProcessPagePipeline.__init__ = unshared
started = time.perf_counter()
try:
    main()
except SystemExit as exit:
    if exit.code:
        raise
usage = resource.getrusage(resource.RUSAGE_SELF)
seen = {"cpu": usage.ru_utime + usage.ru_stime, "wall": time.perf_counter() - started}
print(json.dumps(seen), file=sys.stderr)
"""


def once(rows: int, pythonpath: str | None) -> dict[str, float]:
    from dry_run_scale import COMPANY_SSO_ID, TENANT, installed_env, prepare

    data = prepare(rows)
    target = HERE / "out" / f"runner_{rows}.jsonl"
    target.unlink(missing_ok=True)
    env = installed_env()
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    command = [
        sys.executable, "-c", _RUNNER, "dry-run", "--company-sso-id", COMPANY_SSO_ID, "--tenant", TENANT,
        "--audits", str(data / "audits.jsonl"), "--users", str(data / "users.jsonl"),
        "--contacts", str(data / "contacts.jsonl"), "--sso-directory", str(data / "sso.jsonl"),
        "--no-progress", "--out", str(target), "--workers", "2",
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(done.stderr[-800:])
    result: dict[str, float] = json.loads(done.stderr.strip().splitlines()[-1])
    return result


def main() -> int:
    from ab_trees import export

    parser = arguments(__doc__, repeat=3)
    parser.add_argument("--ref", default="main")
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    (HERE / "out").mkdir(exist_ok=True)
    trees: dict[str, str | None] = {args.ref: str(export(args.ref)), "this tree": None}
    print(f"load before: {uptime()}")
    seen: dict[str, list[dict[str, Any]]] = {}
    for round_ in range(args.repeat):
        for name in list(trees) if round_ % 2 == 0 else list(trees)[::-1]:
            small, big = once(1000, trees[name]), once(args.rows, trees[name])
            per_row = (big["cpu"] - small["cpu"]) / (args.rows - 1000) * 1e6
            result = {
                "setup_cpu": small["cpu"],
                "cpu": big["cpu"],
                "wall": big["wall"],
                "us_per_row": per_row,
            }
            seen.setdefault(name, []).append(result)
            print(f"round {round_ + 1} [{name}]: {json.dumps(result)}", flush=True)
    print(f"load after: {uptime()}")
    best = {name: min(r["cpu"] for r in results) for name, results in seen.items()}
    for name, value in best.items():
        print(f"{name}: best {value:.2f} s of the runner's CPU at {args.rows} rows")
    print(f"this tree / {args.ref}: {best['this tree'] / best[args.ref]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
