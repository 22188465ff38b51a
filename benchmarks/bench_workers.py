"""Scale-out on Celery: the same accounts migrated by 1 worker and by 2 workers, in rows/s; and one
big account migrated unsharded by 1 worker and in 2 shards by 2 workers (``--shards``).

Everything is real and local: a throwaway PostgreSQL holding one synthetic tenant per account
(generate.py, the same rows in each: a tenant belongs to one account), a throwaway redis-server,
mongoeco's MongoDB wire server (as in the tests), a local USMAN, and `crm-audit-migrate worker`
processes (solo pool, one task at a time each). Each of the N accounts is bound to its own tenant;
one `crm-audit-migrate enqueue --all-enabled` triggers and sends them all, and
the time is the span from the first job's `created_at` to the last job's `finished_at`. Runs alternate
(1, 2, 1, 2 workers by default) so a change in the shared machine's load shows; the speed-up is
against the best single-worker run.

The CDP holds no contacts, so every row ends `contact_not_found` and nothing is inserted: mongoeco
checks its unique index by scanning the collection (an insert costs time in proportion to the
logs already stored), so with writes the figure would measure mongoeco, not the workers. What is
measured is the per-row work a worker does — the keyset page from PostgreSQL, loading every
`audited_changes`, the rules, the per-page lookups and one job write per page — distributed by
Celery over Redis. docs/scale-out.md uses it, with the Mongo write-path figures, for the sizing.

With ``--shards 1 2 1 2`` the runs are of one account instead (``bench-big``, all the tenant's
rows): "1" is an unsharded job on one worker (``enqueue`` → ``migrate_account``), "2" the job split
in two shards (``enqueue --shards 2`` → two ``migrate_shard`` tasks) on two workers; the time is the
job's ``created_at`` → ``finished_at`` (the last shard settles it).

Every run is also accounted per process (proc_accounting.py), so a run on a busy machine shows
why it did not scale: each worker's, mongoeco's, Redis's and the PostgreSQL backends' CPU seconds
and run-queue wait (``/proc/PID/task/*/schedstat``: runnable, but another task had the core), the
`enqueue` command's CPU, and the machine's busy cores (ours and everyone else's) and CPU-pressure
stall. "rows per worker CPU-s" over the best single-worker run is the workers' own scaling (does
a second worker cost more CPU a row?); the wall speed-up is that times the CPU the workers got.
The scheduler's autogroups of the run's processes are printed too: with
``kernel.sched_autogroup_enabled`` every process of this script shares one session's CPU share.

    .venv/bin/python benchmarks/bench_workers.py --rows-per-account 20000 --accounts 4 --workers 1 2 1 2
    .venv/bin/python benchmarks/bench_workers.py --rows-per-account 80000 --shards 1 2 1 2
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from pymongo import MongoClient

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))

from crm_audit_adapters.crm_postgres.throwaway import create_database, throwaway_server  # noqa: E402
from proc_accounting import Members, Snapshot, Usage, autogroup, children_of, parent_pid  # noqa: E402
from support.mongo_emulator import MongoEmulator  # noqa: E402
from support.redis_server import die_with_parent, free_port, ping  # noqa: E402
from support.usman_server import TOKEN, UsmanServer  # noqa: E402

CLI = Path(sys.executable).with_name("crm-audit-migrate")
SCHEMA = "bench_workers"
"""The tenants' schemas are ``bench_workers_0``, ``bench_workers_1``, …: one per account."""


def start_redis(workdir: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(
        [*args, "--dir", workdir],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=die_with_parent,
    )
    while not ping(port):
        time.sleep(0.05)
    return process, f"redis://127.0.0.1:{port}/0"


def cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [str(CLI), *args], env={**os.environ, **env}, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{args}: {done.stderr}")
    return done.stdout


def postmaster_pid(dsn: str) -> int:
    """The PostgreSQL server's main process: the parent of one of its backends."""
    import psycopg

    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        return parent_pid(int(row[0]))  # while the backend lives


def measure(
    env: dict[str, str],
    accounts: list[str],
    workers: int,
    logdir: Path,
    servers: dict[str, int],
    enqueue: tuple[str, ...] = ("--all-enabled",),
) -> dict[str, Any]:
    cli(env, "indexes", "up")
    processes = []
    for index in range(workers):
        log = (logdir / f"w{workers}-{index}.log").open("wb")
        args = [str(CLI), "worker", "--pool", "solo", "-n", f"bench{index}@%h", "--without-gossip"]
        args += ["--without-mingle", "--loglevel", "WARNING"]
        processes.append(
            subprocess.Popen(
                args,
                env={**os.environ, **env},
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )
        )
    time.sleep(4)  # workers connect to Redis before the clock starts
    jobs = MongoClient(env["CRM_AUDIT_MONGO_URI"])[env["CRM_AUDIT_MONGO_DATABASE"]][
        "crm_activity_log_migration_jobs"
    ]
    load_before = os.getloadavg()
    groups: dict[str, Members] = {f"worker{i}": [p.pid] for i, p in enumerate(processes)}
    groups.update({name: [pid] for name, pid in servers.items()})
    # Backends that begin during the run count from zero; none ends before the workers do.
    groups["postgres"] = children_of(postmaster_pid(env["CRM_AUDIT_DATABASE_URL"]))
    groups_of = {
        name: autogroup(members()[0] if callable(members) else members[0]) for name, members in groups.items()
    }
    snapshot = Snapshot.take(groups)
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    cli(env, "enqueue", *enqueue)  # one process triggers the accounts and sends their tasks
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    polls = time.process_time()
    while True:
        docs = list(jobs.find({}, {"status": 1, "tally": 1, "created_at": 1, "finished_at": 1}))
        if len(docs) == len(accounts) and all(d["status"] == "completed" for d in docs):
            break
        if any(d["status"] not in ("in_progress", "completed") for d in docs):
            raise RuntimeError(f"a job did not complete: {docs}")
        time.sleep(0.2)
    usage, machine = snapshot.since()  # before any process of the run stops
    usage["enqueue"] = Usage(
        children_after.ru_utime
        + children_after.ru_stime
        - children_before.ru_utime
        - children_before.ru_stime,
        0.0,
    )
    usage["bench"] = Usage(time.process_time() - polls, 0.0)  # this script polling the jobs
    # From the first job's creation to the last job's finish, as the jobs themselves recorded it.
    seconds = (max(d["finished_at"] for d in docs) - min(d["created_at"] for d in docs)).total_seconds()
    load_after = os.getloadavg()
    for process in processes:
        process.terminate()
        process.wait(timeout=30)
    rows = sum(int(d["tally"]["processed"]) for d in docs)
    return {
        "workers": workers,
        "rows": rows,
        "seconds": seconds,
        "load": (load_before[0], load_after[0]),
        "usage": usage,
        "machine": machine,
        "autogroups": groups_of,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows-per-account", type=int, default=20000)
    parser.add_argument("--accounts", type=int, default=4)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 1, 2], help="runs, in order")
    parser.add_argument(
        "--shards",
        type=int,
        nargs="+",
        help="instead: runs of one big account in N shards on N workers (1 = unsharded), in order",
    )
    args = parser.parse_args()
    print(f"load 1/5/15-min at the start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is not installed (apt-get install redis-server)")
    sharded = args.shards is not None
    accounts = ["bench-big"] if sharded else [f"bench-account-{i}" for i in range(args.accounts)]
    runs = args.shards if sharded else args.workers
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp, throwaway_server() as pg:
        dsn = create_database(pg.dsn, "bench_workers")
        schemas = {account: f"{SCHEMA}_{i}" for i, account in enumerate(accounts)}
        for schema in schemas.values():  # the same rows in each: every account does the same work
            subprocess.run(
                [
                    sys.executable,
                    str(HERE / "generate.py"),
                    "--rows",
                    str(args.rows_per_account),
                    "--dsn",
                    dsn,
                    "--schema",
                    schema,
                    "--data-dir",
                    f"{tmp}/data-{schema}",
                ],
                check=True,
                stdout=subprocess.DEVNULL,
            )
        # The generator writes audits and users only; the coverage guard counts crm_people (none here).
        import psycopg

        with psycopg.connect(dsn, autocommit=True) as conn:
            for schema in schemas.values():
                conn.execute(f"CREATE TABLE IF NOT EXISTS {schema}.crm_people (id bigint PRIMARY KEY)")
        redis, broker = start_redis(tmp)
        emulator = MongoEmulator()
        mongo_uri = emulator.__enter__()
        assert emulator._process is not None
        mongo_pid = emulator._process.pid
        try:
            with UsmanServer(directory={}) as usman:
                results = []
                for workers in runs:
                    env = {
                        "CRM_AUDIT_DATABASE_URL": dsn,
                        "CRM_AUDIT_MONGO_URI": mongo_uri,
                        "CRM_AUDIT_MONGO_DATABASE": f"bench_{uuid.uuid4().hex[:8]}",
                        "CRM_AUDIT_USMAN_BASE_URL": usman.url,
                        "CRM_AUDIT_USMAN_TOKEN": TOKEN,
                        "CRM_AUDIT_ENABLED_COMPANIES": "*",
                        "CRM_AUDIT_TENANTS": ",".join(f"{a}={s}" for a, s in schemas.items()),
                        "CRM_AUDIT_COVERAGE_THRESHOLD": "0",
                        "CRM_AUDIT_HALT_THRESHOLD": "1.0",
                        "CRM_AUDIT_BROKER_URL": broker,
                        "CRM_AUDIT_SETTINGS": "",
                    }
                    servers = {"mongoeco": mongo_pid, "redis": redis.pid}
                    enqueue: tuple[str, ...] = ("--all-enabled",)
                    if sharded:
                        enqueue = ("--company-sso-id", accounts[0])
                        enqueue += ("--shards", str(workers)) if workers > 1 else ()
                    results.append(measure(env, accounts, workers, Path(tmp), servers, enqueue))
        finally:
            emulator.__exit__(None, None, None)
            redis.terminate()
            redis.wait(timeout=30)
    report(results, sharded=sharded, accounts=args.accounts, rows_per_account=args.rows_per_account)
    print(f"load 1/5/15-min at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


def report(results: list[dict[str, Any]], *, sharded: bool, accounts: int, rows_per_account: int) -> None:
    """The speed-up table, then where each run's wall time went, process by process.

    "rows per worker CPU-s" is the work the workers did per CPU-second they used; its ratio to the
    best single-worker run is the workers' own scaling (1.00 ×: two workers spent no more CPU a row
    than one). The wall speed-up is that times how much CPU the workers got per wall second:
    a worker's wall time is its CPU + its run-queue wait (runnable, another task had the core) +
    the rest (blocked on PostgreSQL, the CDP, Redis).
    """
    base = max(r["rows"] / r["seconds"] for r in results if r["workers"] == 1)
    base_cpu = max(r["rows"] / worker_cpu(r) for r in results if r["workers"] == 1)
    what = "1 account in N shards on N workers" if sharded else f"{accounts} accounts"
    print(f"machine: {os.cpu_count()} cores; {what} x {rows_per_account} rows")
    print(
        "| workers | rows | seconds | rows/s | speed-up | rows per worker CPU-s | own scaling "
        "| load 1-min before/after | machine busy (ours / others), cores | CPU stall |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---|---|---:|")
    for r in results:
        rate = r["rows"] / r["seconds"]
        per_cpu = r["rows"] / worker_cpu(r)
        machine = r["machine"]
        ours = sum(u.cpu_s for u in r["usage"].values())
        stall = "n/a" if machine.stall_s is None else f"{machine.stall_s / machine.wall_s:.0%}"
        print(
            f"| {r['workers']} | {r['rows']:,} | {r['seconds']:.1f} | {rate:,.0f} | {rate / base:.2f} x "
            f"| {per_cpu:,.0f} | {per_cpu / base_cpu:.2f} x | {r['load'][0]:.2f} / {r['load'][1]:.2f} "
            f"| {machine.busy_cpu_s / machine.wall_s:.2f} ({ours / machine.wall_s:.2f} / "
            f"{max(machine.busy_cpu_s - ours, 0.0) / machine.wall_s:.2f}) | {stall} |"
        )
    seen = {f"{name} {group}" for r in results for name, group in r["autogroups"].items()}
    print(f"scheduler autogroups (this script: {autogroup(os.getpid())}): {', '.join(sorted(seen))}")
    print()
    print("Per process over the run's wall time: CPU s (share of wall) / run-queue wait s (share).")
    names = sorted(
        {name for r in results for name in r["usage"]}, key=lambda n: (not n.startswith("worker"), n)
    )
    print("| workers | " + " | ".join(names) + " |")
    print("|---:|" + "---|" * len(names))
    for r in results:
        cells = []
        for name in names:
            got = r["usage"].get(name)
            if got is None:
                cells.append("")
                continue
            share = got.cpu_s / r["seconds"]
            wait = (
                ""
                if name in ("enqueue", "bench")
                else f" / {got.wait_s:.1f} ({got.wait_s / r['seconds']:.0%})"
            )
            cells.append(f"{got.cpu_s:.1f} ({share:.0%}){wait}")
        print(f"| {r['workers']} | " + " | ".join(cells) + " |")


def worker_cpu(result: dict[str, Any]) -> float:
    return sum(u.cpu_s for name, u in result["usage"].items() if name.startswith("worker"))


if __name__ == "__main__":
    raise SystemExit(main())
