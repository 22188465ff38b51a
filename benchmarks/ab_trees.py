"""One scale stage on this work tree against a git ref of it, interleaved: what a change bought.

    .venv/bin/python benchmarks/ab_trees.py --ref main --dsn DSN --rows 100000 \
        --stages parse,end_to_end --repeat 5
    .venv/bin/python benchmarks/ab_trees.py --ref main --rows 100000 --stages dry_run_parse,dry_run

Stages ``dry_run`` (the file dry run's whole command, ``--out``, on ``dry_run_scale.py``'s inputs),
``dry_run_workers`` (the same with ``--workers 2``) and ``dry_run_parse`` (that benchmark's floor)
need no database. The CPU of ``dry_run_workers`` is its whole process tree's: this process is made
the subreaper of its descendants (``PR_SET_CHILD_SUBREAPER``), so the fork server and the workers,
orphaned when the command ends, are waited for here and counted; ``runner_cpu_seconds`` is the
command's own process (the runner).

``run_scale.py --reuse`` (or ``generate.py``) must have loaded ``bench_<rows>`` into ``--dsn``
first. The ref's ``src/`` is exported (``git archive``) under ``benchmarks/out/ab-<ref>/`` and put
first on ``PYTHONPATH``, so the same interpreter and packages run the older code; each compiled
extension of this tree is copied beside it when its ``.pyx`` is the same in both, and built from the
ref's own ``.pyx`` when it differs. Each round
runs every stage of both trees in a fresh process (``scale_stages.py``), the order of the trees
alternating round by round, so a busy moment of the shared machine hits both alike. It prints each
run's JSON line, then per stage the best wall and CPU seconds of each tree and their ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from _machine import Stopwatch, arguments, uptime

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
EXTENSIONS = {  # the compiled extensions: module -> (source, libraries), as setup.py builds them
    "crm_audit_transform.loading._cbuild": ("src/crm_audit_transform/loading/_cbuild.pyx", ["yaml"]),
    "crm_audit_adapters.mongo._cline": ("src/crm_audit_adapters/mongo/_cline.pyx", []),
    "crm_audit_transform._cslots": ("src/crm_audit_transform/_cslots.pyx", []),
}


def export(ref: str) -> Path:
    """The ref's ``src/`` under ``out/ab-<ref>/src``, with its compiled extensions: this tree's where
    the ``.pyx`` is the same, else built from the ref's own (Cython and a compiler needed; without
    them the ref runs that part on its pure path, and a note says so)."""
    target = HERE / "out" / f"ab-{ref.replace('/', '_')}"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", ref, "src"], cwd=ROOT, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    for module, (source, libraries) in EXTENSIONS.items():
        theirs, ours = target / source, ROOT / source
        if not theirs.exists():
            continue  # not in the ref: it runs the pure path there, as it did
        if ours.exists() and theirs.read_bytes() == ours.read_bytes():
            for built in ours.parent.glob(f"{ours.stem}*.so"):
                shutil.copy2(built, theirs.parent / built.name)
        elif not _build(target, module, source, libraries):
            print(f"warning: {source} differs at {ref} and could not be built: the ref runs its pure path")
    return target / "src"


def _build(target: Path, module: str, source: str, libraries: list[str]) -> bool:
    """Build ``module`` of the exported tree in place (``setup.py``'s build, for that one extension)."""
    script = (
        "import sys\n"
        "from setuptools import Extension, setup\n"
        "from Cython.Build import cythonize\n"
        f"ext = Extension({module!r}, [{source!r}], libraries={libraries!r})\n"
        "setup(name='ab', package_dir={'': 'src'}, ext_modules=cythonize([ext], quiet=True),\n"
        "      script_args=['build_ext', '--inplace'])\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=target, capture_output=True, check=False)
    return done.returncode == 0


def run(stage: str, args: argparse.Namespace, pythonpath: str | None) -> dict[str, Any]:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    if args.bytecode == "cached":  # as installed: no process compiles our sources (run_scale.stage_env)
        from dry_run_scale import installed_env

        env = installed_env(env)
    if stage in ("dry_run", "dry_run_workers", "dry_run_parse"):
        return dry_run(stage, args.rows, env)
    schema = f"bench_{args.rows}"
    argv = [
        sys.executable, str(HERE / "scale_stages.py"), stage, "--dsn", args.dsn, "--schema", schema,
        "--data-dir", str(HERE / "data" / schema), "--out-dir", str(HERE / "out"),
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if done.returncode:
        return {"error": done.stderr.strip()[-800:]}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def dry_run(stage: str, rows: int, env: dict[str, str]) -> dict[str, Any]:
    """``dry_run``: the file dry run's whole command with ``--out`` (``dry_run_scale.py``'s inputs,
    its wall and CPU time from ``wait4``); ``dry_run_parse``: that benchmark's floor over the same file."""
    from dry_run_scale import _PARSE, COMPANY_SSO_ID, TENANT, installed_env, prepare

    data = prepare(rows)
    if stage == "dry_run_parse":
        command = [sys.executable, "-c", _PARSE, str(data / "audits.jsonl")]
    else:
        target = HERE / "out" / f"ab_dryrun_{rows}.jsonl"
        target.unlink(missing_ok=True)
        command = [
            # The CLI's main by module, not the venv's console script: the script names this tree's
            # entry point (crm_audit_adapters.console), which a ref's src may not have.
            sys.executable, "-c", "from crm_audit_adapters.cli import main; main()", "dry-run",
            "--company-sso-id", COMPANY_SSO_ID, "--tenant", TENANT, "--audits", str(data / "audits.jsonl"),
            "--users", str(data / "users.jsonl"), "--contacts", str(data / "contacts.jsonl"),
            "--sso-directory", str(data / "sso.jsonl"), "--no-progress", "--out", str(target),
            *(["--workers", "2"] if stage == "dry_run_workers" else []),
        ]  # fmt: skip
    before = _children_cpu()
    with Stopwatch() as took:
        done = subprocess.run(command, env=installed_env(env), capture_output=True, check=False)
    wall = took.wall
    runner = _children_cpu() - before  # the command's own: it never waits for the pool's fork server
    _reap_orphans()  # a pool's fork server and workers, reparented here when the command ended
    cpu = _children_cpu() - before  # the command's user + system time, and its descendants' (waited for)
    if done.returncode:
        return {"error": done.stderr.decode()[-800:]}
    if stage == "dry_run_parse":
        seconds, cpu = (float(x) for x in done.stdout.split())
        return {"stage": stage, "rows": rows, "seconds": seconds, "cpu_seconds": cpu}
    result = {"stage": stage, "rows": rows, "seconds": wall, "cpu_seconds": cpu}
    return {**result, "runner_cpu_seconds": runner} if stage == "dry_run_workers" else result


def _become_subreaper() -> None:
    """Have this process's orphaned descendants reparented to it (Linux), to wait for them."""
    import ctypes

    pr_set_child_subreaper = 36
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_child_subreaper, 1, 0, 0, 0)


def _reap_orphans() -> None:
    """Wait for every descendant reparented here, so its CPU is in ``RUSAGE_CHILDREN``."""
    while True:
        try:
            os.wait()
        except ChildProcessError:
            return


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    from run_scale import add_bytecode_option

    parser = arguments(__doc__, repeat=3)
    parser.add_argument("--ref", default="main")
    parser.add_argument("--dsn", default="", help="the database of run_scale.py (not for dry_run stages)")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--stages", default="end_to_end")
    add_bytecode_option(parser)
    args = parser.parse_args()
    _become_subreaper()
    (HERE / "out").mkdir(exist_ok=True)
    trees = {args.ref: str(export(args.ref)), "this tree": None}
    stages = args.stages.split(",")
    print(f"bytecode: {args.bytecode}; load before: {uptime()}")
    seen: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for round_ in range(args.repeat):
        order = list(trees) if round_ % 2 == 0 else list(trees)[::-1]
        for stage in stages:
            for name in order:
                result = run(stage, args, trees[name])
                seen.setdefault((stage, name), []).append(result)
                print(f"round {round_ + 1} {stage} [{name}]: {json.dumps(result)}", flush=True)
    print(f"load after: {uptime()}")
    print("\n| stage | tree | best wall s | best CPU s | rows/s (best wall) |\n|---|---|---:|---:|---:|")
    best: dict[tuple[str, str], tuple[float, float]] = {}
    for (stage, name), results in seen.items():
        good = [r for r in results if "seconds" in r]
        if not good:
            continue
        wall = min(r["seconds"] for r in good)
        cpu = min(r.get("cpu_seconds", float("nan")) for r in good)
        best[(stage, name)] = (wall, cpu)
        print(f"| {stage} | {name} | {wall:.2f} | {cpu:.2f} | {good[0]['rows'] / wall:,.0f} |")
    for stage in stages:
        old, new = best.get((stage, args.ref)), best.get((stage, "this tree"))
        if old and new:
            speed = f"{old[0] / new[0]:.2f}× faster wall, {old[1] / new[1]:.2f}× CPU"
            print(f"{stage}: this tree / {args.ref}: {speed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
