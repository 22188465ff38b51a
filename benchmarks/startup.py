"""What an operator waits for: ``crm-audit-migrate run`` and ``dry-run`` timed as commands, from
their start to their exit, on a tiny job (start-up alone) or at scale (``--rows 1000000``).

    .venv/bin/python benchmarks/startup.py [--dsn DSN [--reuse]] [--rows 2000] [--repeat 5]
        [--variants one,shards,pool,dry_run,dry_run_w2] [--src NAME=PATH ...]

A synthetic tenant of ``--rows`` rows (``generate.py``) goes into PostgreSQL (``--dsn``, else a
throwaway server; with ``--reuse`` a schema ``bench_startup_<rows>`` already generated there is
kept), its contacts into the MongoDB emulator of the tests (or ``--mongo-uri``), its SSO ids
behind ``usman_peer.py``. Then, in each round, for each tree (``--src``: a ``src`` directory put
first on ``PYTHONPATH``, e.g. a reference tree's with its compiled extensions; by default this
tree's) and each variant, the store is emptied but for its contacts, a fresh job is triggered
(untimed) and the command is timed:

- ``one``: one process (``run``);
- ``shards``: ``run --workers 2`` on a job of 2 shards (the shards side by side, a process each);
- ``pool``: ``run --workers 2`` on a job of one shard (a page pool of one worker beside the runner);
- ``dry_run``: ``dry-run --out FILE`` on ``dry_run_scale.py``'s files of the same rows (no server);
- ``dry_run_w2``: the same with ``--workers 2``.

Wall is from the command's start to its exit, what a user waits for; ``first_batch_s`` from its
start to its first batch written and saved (``run``'s progress line, not on a terminal, is first
written then; a dry run's is not read). CPU is the whole process
tree's: the command runs under a child subreaper (``PR_SET_CHILD_SUBREAPER``) that reaps every
descendant, so the fork server and the processes it forked count too. ``emulator_cpu_s`` is the
MongoDB emulator's CPU during the command (when this script started it): a separate process on the
same two cores, as a CDP on the same machine would be; PostgreSQL's and the USMAN's are not counted.
``logs`` (run) and ``out_bytes`` (dry run) show that every variant wrote the same. Rounds alternate
the trees and variants; the best of each is reported (the least disturbed by others on the machine),
and the ratios of one process's best wall to each ``--workers 2`` variant's.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime as dt
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _machine import arguments, uptime

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # the emulator harness lives with the tests

from dry_run_scale import COMPANY_SSO_ID, TENANT, installed_env, prepare  # noqa: E402 - beside it
from run_scale import database, usman_peer  # noqa: E402 - benchmarks are scripts beside each other

VARIANTS = {
    "one": ((), ()),
    "shards": (("--shards", "2"), ("--workers", "2")),
    "pool": ((), ("--workers", "2")),
}
"""Variant of ``run``: (trigger's options, run's options)."""
DRY_VARIANTS = {"dry_run": (), "dry_run_w2": ("--workers", "2")}
"""Variant of ``dry-run``: its options besides the files."""
PAIRS = (("one", "shards"), ("one", "pool"), ("dry_run", "dry_run_w2"))
"""(one process, ``--workers 2``): the ratios reported."""
CLI = str(Path(sys.executable).with_name("crm-audit-migrate"))
_PR_SET_CHILD_SUBREAPER = 36


@contextlib.contextmanager
def mongo(uri: str | None) -> Iterator[tuple[str, int | None]]:
    """The given URI, or the tests' emulator's; with the emulator's pid when it was started here."""
    if uri:
        yield uri, None
        return
    from support.mongo_emulator import MongoEmulator

    emulator = MongoEmulator()
    with emulator as emulated:
        process = emulator._process  # its CPU is read from /proc, nothing else
        yield emulated, process.pid if process is not None else None


def process_cpu(pid: int | None) -> float:
    """User + system CPU seconds of a live process (``/proc/PID/stat``), 0.0 without one."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def empty_store(uri: str, database_name: str) -> None:
    """Drop every collection of ``database_name`` but the contacts: a fresh start for the next run,
    quicker than rolling back what the last one wrote (``trigger --fresh``) at scale."""
    from pymongo import MongoClient

    with MongoClient(uri, tz_aware=True) as client:
        db = client[database_name]
        for name in db.list_collection_names():
            if name != "contacts":
                db.drop_collection(name)


def count_logs(uri: str, database_name: str) -> int:
    from pymongo import MongoClient

    with MongoClient(uri, tz_aware=True) as client:
        return int(client[database_name]["activity_logs"].estimated_document_count())


def entity_tables(dsn: str, schema: str, person_ids: Sequence[int]) -> None:
    """What ``generate.py`` leaves out and a real run reads: the people (``trigger``'s coverage
    guard counts them) and the entity tables association logs are named from, empty but people."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL(
                "DROP TABLE IF EXISTS {s}.crm_people; "
                "CREATE TABLE {s}.crm_people (id bigint PRIMARY KEY, first_name text, last_name text)"
            ).format(s=sql.Identifier(schema))
        )
        with conn.cursor().copy(
            sql.SQL("COPY {}.crm_people (id, first_name) FROM STDIN").format(sql.Identifier(schema))
        ) as copy:
            for person_id in sorted(set(person_ids)):
                copy.write_row((person_id, f"person {person_id}"))
        for table in ("crm_companies", "crm_deals", "crm_tickets", "crm_tasks"):
            conn.execute(
                sql.SQL("CREATE TABLE IF NOT EXISTS {}.{} (id bigint PRIMARY KEY, name text)").format(
                    sql.Identifier(schema), sql.Identifier(table)
                )
            )


def seed_contacts(uri: str, database_name: str, path: Path) -> list[int]:
    from bson import ObjectId
    from pymongo import MongoClient

    from crm_audit_adapters.files import read_contacts

    docs = [
        {
            "_id": ObjectId(c.id),
            "company_sso_id": c.company_sso_id,
            "crm_data": {"id": c.crm_person_id},
            "created_at": c.created_at,
        }
        for c in read_contacts(path)
    ]
    with MongoClient(uri, tz_aware=True) as client:
        client[database_name]["contacts"].drop()
        client[database_name]["contacts"].insert_many(docs)
    return [doc["crm_data"]["id"] for doc in docs]  # type: ignore[index]


def measure(argv: Sequence[str], env: dict[str, str], timeout: float = 600) -> dict[str, Any]:
    """``argv`` in a child of a subreaper process (``_reaped``): its wall and the tree's CPU."""
    done = subprocess.run(
        [sys.executable, __file__, "--reap", json.dumps(list(argv))],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )
    if done.returncode != 0:
        return {"error": f"exit {done.returncode}: {done.stderr.strip()[-800:]}"}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _reaped(argv: list[str]) -> int:
    """Run ``argv`` as a subreaper: every descendant is reaped here, so RUSAGE_CHILDREN is the tree's."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
    started = time.perf_counter()
    command = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert command.stderr is not None
    first_batch: float | None = None
    lines: list[str] = []
    for line in command.stderr:  # read as written: the progress line's first comes at the first batch
        if first_batch is None and line.startswith("["):
            first_batch = time.perf_counter() - started
        lines.append(line)
    command.wait()
    err = "".join(lines)
    wall = time.perf_counter() - started
    while True:  # the fork server and its processes, orphaned when the command ended
        try:
            os.wait()
        except ChildProcessError:
            break
    tree = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(
        json.dumps(
            {
                "exit": command.returncode,
                "wall_s": round(wall, 3),
                "first_batch_s": None if first_batch is None else round(first_batch, 3),
                "cpu_s": round(tree.ru_utime + tree.ru_stime, 3),
                "stderr": err.strip()[-400:] if command.returncode else "",
            }
        )
    )
    return 0


@dataclass(frozen=True)
class Store:
    """The MongoDB a run writes to: its URI, database, and the emulator's pid when started here."""

    uri: str
    database: str
    emulator_pid: int | None


def run(
    company: str,
    variant: tuple[Sequence[str], Sequence[str]],
    env: dict[str, str],
    store: Store,
    timeout: float,
) -> dict[str, Any]:
    """One ``run`` of a fresh job (the store emptied, ``indexes up``, ``trigger``: untimed), timed."""
    trigger_options, run_options = variant
    empty_store(store.uri, store.database)
    for argv in (
        ["indexes", "up"],
        ["trigger", "--company-sso-id", company, *trigger_options],
    ):
        done = subprocess.run([CLI, *argv], env=env, capture_output=True, text=True, check=False)
        if done.returncode:
            raise RuntimeError(f"{argv[0]}: {done.stderr.strip()}")
    before = process_cpu(store.emulator_pid)
    # With its progress line (not a terminal: one line at the first batch saved, then every 5 s):
    # the first's arrival is when the command wrote its first batch (``first_batch_s``).
    result = measure([CLI, "run", "--company-sso-id", company, *run_options], env, timeout)
    if store.emulator_pid is not None:
        result["emulator_cpu_s"] = round(process_cpu(store.emulator_pid) - before, 2)
    result["logs"] = count_logs(store.uri, store.database)
    return result


def dry_run(files: Path, options: Sequence[str], env: dict[str, str], timeout: float) -> dict[str, Any]:
    """One ``dry-run --out`` over ``dry_run_scale.py``'s files, timed; ``out_bytes``: what it wrote."""
    target = HERE / "out" / f"startup_dry_run_{files.name}.jsonl"
    target.parent.mkdir(exist_ok=True)
    target.unlink(missing_ok=True)
    command = [
        CLI, "dry-run", "--company-sso-id", COMPANY_SSO_ID, "--tenant", TENANT,
        "--audits", str(files / "audits.jsonl"), "--users", str(files / "users.jsonl"),
        "--contacts", str(files / "contacts.jsonl"), "--sso-directory", str(files / "sso.jsonl"),
        "--no-progress", "--out", str(target), *options,
    ]  # fmt: skip
    result = measure(command, env, timeout)
    result["out_bytes"] = target.stat().st_size if target.exists() else None
    return result


def report(runs: dict[str, list[dict[str, Any]]], trees: dict[str, str], repeat: int) -> None:
    """The best of each tree and variant, and one process's best wall over each ``--workers 2``'s."""
    print(f"## best of {repeat} ({dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC)")
    print(
        "| tree variant | wall s (best) | first batch written s (best / median) | CPU s, whole tree (best) "
        "| emulator CPU s (best) | failed runs |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    best: dict[str, float] = {}
    for key, results in runs.items():
        good = [r for r in results if r.get("exit") == 0]
        wall = min((r["wall_s"] for r in good), default=float("nan"))
        cpu = min((r["cpu_s"] for r in good), default=float("nan"))
        emulator = min((r["emulator_cpu_s"] for r in good if "emulator_cpu_s" in r), default=float("nan"))
        firsts = sorted(r["first_batch_s"] for r in good if r.get("first_batch_s") is not None)
        first = f"{firsts[0]:.2f} / {statistics.median(firsts):.2f}" if firsts else "—"
        best[key] = wall
        print(f"| {key} | {wall:.2f} | {first} | {cpu:.2f} | {emulator:.2f} | {len(results) - len(good)} |")
    for tree in trees:
        for single, double in PAIRS:
            one, two = best.get(f"{tree} {single}"), best.get(f"{tree} {double}")
            if one and two:
                print(f"{tree}: {double} = {one / two:.2f} × {single}, best wall against best wall")


@contextlib.contextmanager
def servers(args: argparse.Namespace) -> Iterator[tuple[str, Store, dict[str, str]]]:
    """What ``run`` needs, for as long as the rounds last: PostgreSQL holding the tenant, MongoDB
    holding its contacts, a USMAN; (the account, the store, the command's environment)."""
    schema = f"bench_startup_{args.rows}"
    data_dir = HERE / "data" / schema
    with database(args.dsn) as dsn, mongo(args.mongo_uri) as (mongo_uri, emulator_pid):
        if not (args.reuse and args.dsn and (data_dir / "manifest.json").exists()):
            generate = [str(HERE / "generate.py"), "--dsn", dsn, "--rows", str(args.rows), "--schema", schema]
            subprocess.run(
                [sys.executable, *generate, "--data-dir", str(data_dir)],
                check=True,
                stdout=subprocess.DEVNULL,
            )
        company = json.loads((data_dir / "manifest.json").read_text())["company_sso_id"]
        database_name = "crm_startup"
        person_ids = seed_contacts(mongo_uri, database_name, data_dir / "contacts.jsonl")
        entity_tables(dsn, schema, person_ids)
        print(f"{len(person_ids)} contacts", flush=True)
        with usman_peer(data_dir, company) as usman_url:
            from support.usman_server import TOKEN

            environment = {k: v for k, v in os.environ.items() if not k.startswith("CRM_AUDIT_")}
            environment.update(
                CRM_AUDIT_DATABASE_URL=dsn,
                CRM_AUDIT_MONGO_URI=mongo_uri,
                CRM_AUDIT_MONGO_DATABASE=database_name,
                CRM_AUDIT_USMAN_BASE_URL=usman_url,
                CRM_AUDIT_USMAN_TOKEN=TOKEN,
                CRM_AUDIT_ENABLED_COMPANIES=company,
                CRM_AUDIT_TENANTS=f"{company}={schema}",
                CRM_AUDIT_SETTINGS="",
                CRM_AUDIT_COVERAGE_THRESHOLD="0.5",
                CRM_AUDIT_HALT_THRESHOLD="1.0",
            )
            yield company, Store(mongo_uri, database_name, emulator_pid), environment


def main(argv: Sequence[str] | None = None) -> int:
    parser = arguments(__doc__, repeat=5)
    parser.add_argument("--reap", help=argparse.SUPPRESS)
    parser.add_argument("--dsn")
    parser.add_argument("--reuse", action="store_true", help="keep bench_startup_<rows> if --dsn has it")
    parser.add_argument("--mongo-uri")
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--timeout", type=float, default=600, help="seconds a command may take")
    parser.add_argument(
        "--src", action="append", default=[], help="NAME=PATH of a src directory to measure (repeatable)"
    )
    args = parser.parse_args(argv)
    if args.reap:
        return _reaped(json.loads(args.reap))
    trees = dict(item.split("=", 1) for item in args.src) or {"this": ""}
    variants = [v for v in args.variants.split(",") if v]
    unknown = set(variants) - set(VARIANTS) - set(DRY_VARIANTS)
    if unknown:
        parser.error(f"unknown variants: {', '.join(sorted(unknown))}")
    print(f"load before: {uptime()}", flush=True)
    runs: dict[str, list[dict[str, Any]]] = {}
    with contextlib.ExitStack() as stack:
        company, store, base = "", None, dict(os.environ)
        if set(variants) & set(VARIANTS):
            company, store, base = stack.enter_context(servers(args))
        envs = {
            name: installed_env({**base, **({"PYTHONPATH": path} if path else {})})
            for name, path in trees.items()
        }
        files = prepare(args.rows) if set(variants) & set(DRY_VARIANTS) else None
        print(f"{args.rows} rows; trees {trees}; variants {variants}", flush=True)
        for round_ in range(args.repeat):
            for tree, env in envs.items():
                for variant in variants:
                    if variant in DRY_VARIANTS:
                        assert files is not None
                        result = dry_run(files, DRY_VARIANTS[variant], env, args.timeout)
                    else:
                        assert store is not None
                        result = run(company, VARIANTS[variant], env, store, args.timeout)
                    result["load_1m"] = round(os.getloadavg()[0], 2)
                    runs.setdefault(f"{tree} {variant}", []).append(result)
                    print(f"round {round_ + 1} {tree} {variant}: {json.dumps(result)}", flush=True)
    print(f"load after: {uptime()}")
    report(runs, trees, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
