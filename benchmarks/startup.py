"""Start-up of the ops runner: a tiny job run by ``crm-audit-migrate run``, so its time is nearly all
start-up (imports, the fork server, each process's clients, the lease, the first query).

    .venv/bin/python benchmarks/startup.py [--dsn DSN] [--rows 2000] [--repeat 5] [--src NAME=PATH ...]

A synthetic tenant of ``--rows`` rows (``generate.py``) goes into PostgreSQL (``--dsn``, else a
throwaway server), its contacts into the MongoDB emulator of the tests (or ``--mongo-uri``), its
SSO ids behind ``usman_peer.py``. Then, in each round, for each tree (``--src``: a ``src``
directory put first on ``PYTHONPATH``, e.g. a reference tree's with its compiled extensions; by
default this tree's) and each variant, a fresh job is triggered (untimed) and ``run`` is timed:

- ``one``: one process (``run``);
- ``shards``: ``run --workers 2`` on a job of 2 shards (the shards side by side, a process each);
- ``pool``: ``run --workers 2`` on a job of one shard (a page pool of one worker beside the runner).

Wall is from the command's start to its exit, what a user waits for. CPU is the whole process
tree's: the command runs under a child subreaper (``PR_SET_CHILD_SUBREAPER``) that reaps every
descendant, so the fork server and the processes it forked count too. Rounds alternate the trees
and variants; the best of each is reported (the least disturbed by others on the machine).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # the emulator harness lives with the tests

from run_scale import database, usman_peer  # noqa: E402 - benchmarks are scripts beside each other

VARIANTS = {
    "one": ((), ()),
    "shards": (("--shards", "2"), ("--workers", "2")),
    "pool": ((), ("--workers", "2")),
}
"""Variant: (trigger's options, run's options)."""
CLI = str(Path(sys.executable).with_name("crm-audit-migrate"))
_PR_SET_CHILD_SUBREAPER = 36


@contextlib.contextmanager
def mongo(uri: str | None) -> Iterator[str]:
    if uri:
        yield uri
        return
    from support.mongo_emulator import MongoEmulator

    with MongoEmulator() as emulated:
        yield emulated


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


def measure(argv: Sequence[str], env: dict[str, str]) -> dict[str, Any]:
    """``argv`` in a child of a subreaper process (``_reaped``): its wall and the tree's CPU."""
    done = subprocess.run(
        [sys.executable, __file__, "--reap", json.dumps(list(argv))],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
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
    _, err = command.communicate()
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
                "cpu_s": round(tree.ru_utime + tree.ru_stime, 3),
                "stderr": err.strip()[-400:] if command.returncode else "",
            }
        )
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reap", help=argparse.SUPPRESS)
    parser.add_argument("--dsn")
    parser.add_argument("--mongo-uri")
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument(
        "--src", action="append", default=[], help="NAME=PATH of a src directory to measure (repeatable)"
    )
    args = parser.parse_args(argv)
    if args.reap:
        return _reaped(json.loads(args.reap))
    trees = dict(item.split("=", 1) for item in args.src) or {"this": ""}
    variants = [v for v in args.variants.split(",") if v]
    schema = f"bench_startup_{args.rows}"
    data_dir = Path(tempfile.mkdtemp(prefix="startup-"))
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    with database(args.dsn) as dsn, mongo(args.mongo_uri) as mongo_uri:
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
        with usman_peer(data_dir, company) as usman_url:
            from support.usman_server import TOKEN

            base = {k: v for k, v in os.environ.items() if not k.startswith("CRM_AUDIT_")}
            base.update(
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
            envs = {name: {**base, **({"PYTHONPATH": path} if path else {})} for name, path in trees.items()}
            first = next(iter(envs.values()))
            up = subprocess.run(
                [CLI, "indexes", "up"], env=first, capture_output=True, text=True, check=False
            )
            if up.returncode:
                raise RuntimeError(f"indexes up: {up.stderr.strip()}")
            print(
                f"{args.rows} rows, {len(person_ids)} contacts; trees {trees}; variants {variants}",
                flush=True,
            )
            runs: dict[str, list[dict[str, Any]]] = {}
            for round_ in range(args.repeat):
                for tree, env in envs.items():
                    for variant in variants:
                        trigger_options, run_options = VARIANTS[variant]
                        triggered = subprocess.run(
                            [CLI, "trigger", "--company-sso-id", company, "--fresh", *trigger_options],
                            env=env,
                            capture_output=True,
                            text=True,
                            check=False,
                        )
                        if triggered.returncode:
                            raise RuntimeError(f"trigger: {triggered.stderr.strip()}")
                        result = measure(
                            [CLI, "run", "--company-sso-id", company, "--no-progress", *run_options], env
                        )
                        result["load_1m"] = round(os.getloadavg()[0], 2)
                        runs.setdefault(f"{tree} {variant}", []).append(result)
                        print(f"round {round_ + 1} {tree} {variant}: {json.dumps(result)}", flush=True)
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"## best of {args.repeat} ({dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC)")
    print("| tree variant | wall s (best) | CPU s, whole tree (best) | failed runs |")
    print("|---|---:|---:|---:|")
    for key, results in runs.items():
        good = [r for r in results if r.get("exit") == 0]
        wall = min((r["wall_s"] for r in good), default=float("nan"))
        cpu = min((r["cpu_s"] for r in good), default=float("nan"))
        print(f"| {key} | {wall:.2f} | {cpu:.2f} | {len(results) - len(good)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
