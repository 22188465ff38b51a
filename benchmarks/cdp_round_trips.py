"""What one worker's run sends to the CDP, per 1,000 rows: commands by kind, documents, bytes, and
the CPU each kind costs the stand-in CDP (mongoeco's wire server).

The same parts as bench_workers.py (a throwaway PostgreSQL with one synthetic tenant, mongoeco, a
local USMAN, no contacts in the CDP), but the run is made in this process, through the same call a
Celery task makes (``account_run.run_account`` / ``run_account_shard``), with a pymongo
``CommandListener`` registered. Each command is keyed by its name, collection and shape (an update
pipeline or an update document), and charged:

- the request's and the reply's BSON bytes;
- the documents it carries (inserted, returned by a find);
- mongoeco's CPU nanoseconds between the command's start and its reply (``/proc/PID/task/*/schedstat``
  field 1 of the server, summed over its threads): what that command cost the server.

The client's own time is not measured here (bench_workers.py does that); this script counts.

    .venv/bin/python benchmarks/cdp_round_trips.py --rows 20000 [--shards 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import uuid
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bson
from pymongo import monitoring

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))

from crm_audit_adapters.crm_postgres.throwaway import create_database, throwaway_server  # noqa: E402
from support.mongo_emulator import MongoEmulator  # noqa: E402
from support.usman_server import TOKEN, UsmanServer  # noqa: E402

CLI = Path(sys.executable).with_name("crm-audit-migrate")
SCHEMA = "bench_round_trips"
ACCOUNT = "bench-round-trips"


def server_cpu_ns(pid: int) -> int:
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            continue
    return total


@dataclass
class Kind:
    count: int = 0
    request_bytes: int = 0
    reply_bytes: int = 0
    documents: int = 0
    server_ns: int = 0


class Counter(monitoring.CommandListener):
    """Every command to the CDP while ``on`` is set, keyed by ``kind_of``."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid
        self.kinds: dict[str, Kind] = defaultdict(Kind)
        self.on = False
        self._open: dict[int, tuple[str, int, int]] = {}

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if not self.on:
            return
        key = kind_of(event.command_name, event.command)
        size = len(bson.encode(event.command))
        self._open[event.request_id] = (key, size, server_cpu_ns(self.server_pid))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        opened = self._open.pop(event.request_id, None)
        if opened is None:
            return
        key, size, cpu = opened
        kind = self.kinds[key]
        kind.count += 1
        kind.request_bytes += size
        kind.reply_bytes += len(bson.encode(event.reply))
        kind.documents += documents_of(event.command_name, event.reply)
        kind.server_ns += server_cpu_ns(self.server_pid) - cpu

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self._open.pop(event.request_id, None)


def kind_of(name: str, command: Any) -> str:
    collection = command.get(name)
    collection = collection if isinstance(collection, str) else ""
    shape = ""
    if name == "findAndModify":
        update = command.get("update")
        shape = " pipeline" if isinstance(update, list) else " $set"
        shape += f" fields={len(_set_of(update))}"
    elif name == "update":
        first = (command.get("updates") or [{}])[0]
        update = first.get("u")
        shape = " pipeline" if isinstance(update, list) else " $set"
        shape += f" fields={len(_set_of(update))}"
    elif name == "find":
        shape = " projected" if command.get("projection") else " whole"
    return f"{name} {collection.removeprefix('crm_activity_log_migration_')}{shape}"


def _set_of(update: Any) -> dict[str, Any]:
    if isinstance(update, list):
        return dict(update[0].get("$set", {})) if update else {}
    if isinstance(update, dict):
        return dict(update.get("$set", {}))
    return {}


def documents_of(name: str, reply: Any) -> int:
    if name == "find":
        return len(reply.get("cursor", {}).get("firstBatch", []))
    if name == "findAndModify":
        return 1 if reply.get("value") is not None else 0
    return int(reply.get("n", 0))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--shards", type=int, default=1, help="1 = unsharded; N: run N shards in turn")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cdp-round-trips-") as tmp, throwaway_server() as pg:
        dsn = create_database(pg.dsn, "bench_round_trips")
        generate = [sys.executable, str(HERE / "generate.py"), "--rows", str(args.rows), "--dsn", dsn]
        subprocess.run(
            [*generate, "--schema", SCHEMA, "--data-dir", f"{tmp}/data"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        import psycopg

        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"CREATE TABLE IF NOT EXISTS {SCHEMA}.crm_people (id bigint PRIMARY KEY)")
        emulator = MongoEmulator()
        uri = emulator.__enter__()
        assert emulator._process is not None
        try:
            with UsmanServer(directory={}) as usman:
                env = {
                    "CRM_AUDIT_DATABASE_URL": dsn,
                    "CRM_AUDIT_MONGO_URI": uri,
                    "CRM_AUDIT_MONGO_DATABASE": f"bench_{uuid.uuid4().hex[:8]}",
                    "CRM_AUDIT_USMAN_BASE_URL": usman.url,
                    "CRM_AUDIT_USMAN_TOKEN": TOKEN,
                    "CRM_AUDIT_ENABLED_COMPANIES": "*",
                    "CRM_AUDIT_TENANTS": f"{ACCOUNT}={SCHEMA}",
                    "CRM_AUDIT_COVERAGE_THRESHOLD": "0",
                    "CRM_AUDIT_HALT_THRESHOLD": "1.0",
                    "CRM_AUDIT_SETTINGS": "",
                }
                counter = Counter(emulator._process.pid)
                monitoring.register(counter)
                rows = run(env, args.shards, counter)
        finally:
            emulator.__exit__(None, None, None)
    report(counter, rows, args)
    return 0


def run(env: dict[str, str], shards: int, counter: Counter) -> int:
    from crm_audit_adapters.bootstrap import build_runtime
    from crm_audit_adapters.celery.account_run import run_account, run_account_shard
    from crm_audit_adapters.settings import load_settings

    for name, value in env.items():
        os.environ[name] = value
    trigger = ["trigger", "--company-sso-id", ACCOUNT] + (["--shards", str(shards)] if shards > 1 else [])
    for command in (["indexes", "up"], trigger):
        subprocess.run([str(CLI), *command], check=True, capture_output=True)
    with build_runtime(load_settings()) as runtime:
        counter.on = True
        owner = f"bench:{os.getpid()}"
        if shards > 1:
            for shard in range(shards):
                result = run_account_shard(runtime, ACCOUNT, shard, owner=owner, should_stop=lambda: False)
        else:
            result = run_account(runtime, ACCOUNT, owner=owner, should_stop=lambda: False)
        counter.on = False
        if result.job.status != "completed":
            raise RuntimeError(f"the job ended {result.job.status}")
        return result.job.tally.processed


def report(counter: Counter, rows: int, args: argparse.Namespace) -> None:
    per = 1000 / rows
    what = "unsharded" if args.shards == 1 else f"{args.shards} shards run in turn"
    print(f"{rows:,} rows, {what}; per 1,000 rows:")
    print("| command | calls | documents | request bytes | reply bytes | mongoeco µs | µs a call |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    total = Kind()
    for key, kind in sorted(counter.kinds.items(), key=lambda item: -item[1].server_ns):
        total.count += kind.count
        total.request_bytes += kind.request_bytes
        total.reply_bytes += kind.reply_bytes
        total.documents += kind.documents
        total.server_ns += kind.server_ns
        print(line(key, kind, per))
    print(line("**all**", total, per))
    print(f"mongoeco CPU a row: {total.server_ns / rows / 1000:.1f} µs")


def line(key: str, kind: Kind, per: float) -> str:
    return (
        f"| {key} | {kind.count * per:.1f} | {kind.documents * per:.1f} "
        f"| {kind.request_bytes * per:,.0f} | {kind.reply_bytes * per:,.0f} "
        f"| {kind.server_ns / 1000 * per:,.0f} | {kind.server_ns / 1000 / max(kind.count, 1):,.0f} |"
    )


if __name__ == "__main__":
    raise SystemExit(main())
