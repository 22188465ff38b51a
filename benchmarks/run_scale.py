"""Scale benchmark: our extraction, transform and dry run against the physical floor, at any size.

    .venv/bin/python benchmarks/run_scale.py --rows 100000 --rows 1000000

For each size it generates a synthetic tenant (``generate.py``) into one throwaway PostgreSQL (or
``--dsn``), then runs every stage in a fresh subprocess (``scale_stages.py``) on the same data, so each
peak RSS is that stage's alone. The floor is the slower of PostgreSQL's COPY of the extractor's query
and a bare libyaml parse of the same ``audited_changes``; every other stage is reported as a ratio of
it. The end-to-end stage is also run once under cProfile. The report (Markdown + JSON) goes to
``benchmarks/out/`` unless ``--report`` says otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from crm_audit_transform.loading import available_backends

HERE = Path(__file__).resolve().parent
STAGES = (
    "copy",
    "parse",
    "parse_events",
    "extract",
    "transform",
    "end_to_end",
    "end_to_end_ideal",
    "end_to_end_shards",
    "end_to_end_shards_late",
    "end_to_end_shards_one",
    "end_to_end_preloaded",
    "end_to_end_workers",
    "end_to_end_workers_early",
    "end_to_end_workers_early_n3",
    "end_to_end_workers_early_ppw3",
    "end_to_end_workers_early_p3o3",
    "end_to_end_workers_early_p4o4",
    "end_to_end_workers_early_si05ms",
    "end_to_end_workers_early_si1ms",
    "end_to_end_workers_unshared",
    "end_to_end_workers_two_trips",
    "end_to_end_workers_rows",
    "end_to_end_workers_deep",
    "end_to_end_workers_w3",
    "end_to_end_workers_own1",
    "mongo_write",
    "verify_files",
    "end_to_end_http",
    "naive",
    "naive_memo",
)
HTTP_STAGES = frozenset({"end_to_end_http", "naive", "naive_memo"})
"""Stages whose SSO lookups go to a USMAN over HTTP (``usman_peer.py``, started per size)."""
PIPELINE = ("extract", "transform", "end_to_end")


@contextmanager
def database(dsn: str | None) -> Iterator[str]:
    """The given DSN, or an empty database in a throwaway server stopped on exit."""
    if dsn:
        yield dsn
        return
    from crm_audit_adapters.crm_postgres.throwaway import create_database, throwaway_server

    with throwaway_server() as server:
        yield create_database(server.dsn, "crm_bench")


@contextmanager
def usman(data_dir: Path, needed: set[str] | frozenset[str]) -> Iterator[str | None]:
    """A USMAN process serving this size's SSO directory, while ``needed`` stages run; else None."""
    if not needed:
        yield None
        return
    company = json.loads((data_dir / "manifest.json").read_text())["company_sso_id"]
    with usman_peer(data_dir, company) as url:
        yield url


@contextmanager
def usman_peer(data_dir: Path, company: str) -> Iterator[str]:
    """``usman_peer.py`` serving ``data_dir``'s SSO directory for ``company``: its base URL."""
    peer = subprocess.Popen(
        [sys.executable, str(HERE / "usman_peer.py"), str(data_dir), company],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert peer.stdout is not None
        yield peer.stdout.readline().strip()
    finally:
        assert peer.stdin is not None
        peer.stdin.close()  # the peer stops when its stdin closes
        peer.wait(timeout=30)


STAGE_TIMEOUT_S = 3 * 3600
"""A stage process still running after this is stopped and reported: a stage that hangs must not
hold a quiet window (and every other run waiting on it) for ever. 1M rows take minutes."""


def _child(argv: Sequence[str]) -> dict[str, Any]:
    """Run a stage process and return its JSON line; a crash or a hang becomes an ``error`` entry.

    ``process_wall_seconds`` is the process's whole life, from its start to its exit (the
    interpreter's start, the imports, the setup and the end included): what a command's user waits
    for, where ``seconds`` times a stage's loop and ``wall_seconds`` the stage from its call."""
    started = time.perf_counter()
    try:
        done = subprocess.run(
            [sys.executable, *argv],
            capture_output=True,
            text=True,
            check=False,
            timeout=STAGE_TIMEOUT_S,
            env=stage_env(),
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {STAGE_TIMEOUT_S} s"}
    process_wall = time.perf_counter() - started
    if done.returncode != 0:
        return {"error": f"exit {done.returncode}: {done.stderr.strip()[-1500:]}"}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return {**result, "process_wall_seconds": round(process_wall, 3)}


BYTECODE = {"cached": True}
"""Whether stage processes find our modules' bytecode cached (``--bytecode``)."""


def add_bytecode_option(parser: argparse.ArgumentParser) -> None:
    """``--bytecode cached|source``, the same in every script that starts stage processes."""
    parser.add_argument(
        "--bytecode",
        choices=("cached", "source"),
        default="cached",
        help="stage processes find our bytecode cached, as installed (default), or compile the sources "
        "when PYTHONDONTWRITEBYTECODE is set (as before)",
    )


def stage_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """A stage process's environment: with ``--bytecode cached`` (the default) our modules' bytecode
    cached as an installed package has it (``dry_run_scale.installed_env``), else ``base`` as given
    (``--bytecode source``: under ``PYTHONDONTWRITEBYTECODE=1``, set on some machines, every process
    compiles our sources again, a pool's fork server included, which its worker waits for)."""
    env = dict(os.environ if base is None else base)
    if not BYTECODE["cached"]:
        return env
    from dry_run_scale import installed_env

    return installed_env(env)


def _generate(dsn: str, rows: int, schema: str, data_dir: Path, reuse: bool) -> dict[str, Any]:
    manifest = data_dir / "manifest.json"
    if reuse and manifest.exists() and json.loads(manifest.read_text())["rows"] == rows:
        try:
            import psycopg
            from psycopg import sql

            with psycopg.connect(dsn) as conn:
                row = conn.execute(
                    sql.SQL("SELECT count(*) FROM {}.audits").format(sql.Identifier(schema))
                ).fetchone()
            if row and row[0] == rows:
                return {**json.loads(manifest.read_text()), "reused": True}
        except Exception:  # any doubt means: generate afresh
            pass
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            str(HERE / "generate.py"),
            "--dsn",
            dsn,
            "--rows",
            str(rows),
            "--schema",
            schema,
            "--data-dir",
            str(data_dir),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return {**json.loads(manifest.read_text()), "wall_seconds": round(time.perf_counter() - started, 1)}


def _stage(
    name: str,
    dsn: str,
    schema: str,
    data_dir: Path,
    out_dir: Path,
    mongo_uri: str | None,
    profile: Path | None = None,
    limit: int | None = None,
    usman_url: str | None = None,
) -> dict[str, Any]:
    argv = [
        str(HERE / "scale_stages.py"),
        name,
        "--dsn",
        dsn,
        "--schema",
        schema,
        "--data-dir",
        str(data_dir),
        "--out-dir",
        str(out_dir),
    ]
    if mongo_uri:
        argv += ["--mongo-uri", mongo_uri]
    if profile:
        argv += ["--profile", str(profile)]
    if limit:
        argv += ["--limit", str(limit)]
    if usman_url:
        argv += ["--usman-url", usman_url]
    return {"stage": name, **_child(argv)}


def _best(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Of repeated runs, the fastest (the one least disturbed by others sharing the machine)."""
    timed = [r for r in results if r.get("rows_per_s")]
    return max(timed, key=lambda r: r["rows_per_s"]) if timed else results[0]


def _machine() -> dict[str, str]:
    def sh(command: str) -> str:
        done = subprocess.run(command, shell=True, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    return {
        "nproc": sh("nproc"),
        "lscpu": sh("lscpu | head -n 15"),
        "free": sh("free -h"),
        "python": platform.python_version(),
        "libyaml": sh(f"{sys.executable} -c 'import yaml; print(yaml.__with_libyaml__, yaml.__version__)'"),
        # A tree without the compiled builder silently measures the slower path: say which it had.
        "loader_backends": ",".join(available_backends()),
        "compiled_line": _compiled_line(),
        "postgres": sh("/usr/lib/postgresql/15/bin/postgres --version"),
        "loadavg_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def _compiled_line() -> bool:
    """Whether the sink's line is written by the compiled extension (``extended_json.COMPILED_LINE``):
    a tree without it measures the pure line, as a tree without the compiled builder the pure loader."""
    from crm_audit_adapters.mongo.extended_json import COMPILED_LINE

    return bool(COMPILED_LINE)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, action="append", help="size to run (repeatable); default 100000")
    parser.add_argument("--dsn", help="use this PostgreSQL database instead of a throwaway server")
    parser.add_argument("--mongo-uri", default=os.environ.get("CRM_AUDIT_TEST_MONGO_URI"))
    parser.add_argument(
        "--stages", default=",".join(STAGES), help="comma-separated subset of " + ",".join(STAGES)
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per stage; the fastest is reported")
    parser.add_argument(
        "--profile-rows",
        type=int,
        default=50_000,
        help="rows of the smallest size to profile end to end (cProfile is slow)",
    )
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--reuse", action="store_true", help="with --dsn: keep data already generated")
    add_bytecode_option(parser)
    parser.add_argument("--report", type=Path, default=HERE / "out" / "scale-report.md")
    args = parser.parse_args(argv)
    BYTECODE["cached"] = args.bytecode == "cached"
    sizes = sorted(set(args.rows or [100_000]))
    stages = [s for s in args.stages.split(",") if s]
    out_dir = args.report.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "command": shlex.join([".venv/bin/python", "benchmarks/run_scale.py", *(argv or sys.argv[1:])]),
        "machine": _machine(),
        "sizes": {},
    }
    report["machine"]["bytecode"] = args.bytecode
    print(f"bytecode: {args.bytecode}", flush=True)
    print(f"loader backends: {report['machine']['loader_backends']}", flush=True)
    print(f"compiled JSONL line: {report['machine']['compiled_line']}", flush=True)
    if "compiled" not in available_backends():
        print("warning: no compiled builder in this tree: the figures are the slower path's", flush=True)
    if not report["machine"]["compiled_line"]:
        print("warning: no compiled JSONL line in this tree: the figures are the slower path's", flush=True)
    with database(args.dsn) as dsn:
        for rows in sizes:
            schema, data_dir = f"bench_{rows}", HERE / "data" / f"bench_{rows}"
            print(f"[{rows}] generating", flush=True)
            entry: dict[str, Any] = {"generate": _generate(dsn, rows, schema, data_dir, args.reuse)}
            runs: dict[str, list[dict[str, Any]]] = {name: [] for name in stages}
            with usman(data_dir, HTTP_STAGES.intersection(stages)) as usman_url:
                # Rounds alternate the stages, so a busy moment of the shared machine hits each alike.
                for round_ in range(max(1, args.repeat)):
                    for name in stages:
                        if name == "mongo_write" and round_:
                            continue
                        result = _stage(
                            name, dsn, schema, data_dir, out_dir, args.mongo_uri, usman_url=usman_url
                        )
                        runs[name].append(result)
                        print(f"[{rows}] round {round_ + 1} {name}: {json.dumps(result)}", flush=True)
            for name in stages:
                entry[name] = _best(runs[name])
                walls = [r["process_wall_seconds"] for r in runs[name] if r.get("process_wall_seconds")]
                if walls and "rows" in entry[name]:  # the best of each measure, each on its own
                    entry[name]["best_process_wall_seconds"] = min(walls)
            if rows == sizes[0] and not args.no_profile:
                for name in ("end_to_end", "transform"):
                    profiled = _stage(
                        name,
                        dsn,
                        schema,
                        data_dir,
                        out_dir,
                        args.mongo_uri,
                        profile=out_dir / f"profile-{name}-{rows}.pstats",
                        limit=args.profile_rows,
                    )
                    if "missing" not in profiled:
                        entry["profile"] = profiled
                        break
            report["sizes"][str(rows)] = entry
    report["machine"]["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    args.report.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    from scale_report import render

    args.report.write_text(render(report))
    print(f"report: {args.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
