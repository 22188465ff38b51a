"""Peak memory of reading and loading a tenant of large rows, with and without a page byte budget.

Usage: .venv/bin/python benchmarks/page_bytes_memory.py [--rows 20] [--mib 20]

A throwaway PostgreSQL server holds ``--rows`` audits whose ``audited_changes`` carry ``--mib`` MiB
each. Each measurement is its own process (``ru_maxrss`` is a process's peak): it reads every page
with ``PostgresAuditSource`` and loads it as the run does (``Transformer.prepare``), once with the
default ``page_bytes`` (32 MiB) and once with a budget no page reaches (pages of rows only, as
before the budget). Memory is measured here, not in the tests.
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import subprocess
import sys

import psycopg

from crm_audit_adapters.crm_postgres import PostgresAuditSource, ReadOnlySession
from crm_audit_adapters.crm_postgres.audits import DEFAULT_PAGE_BYTES
from crm_audit_adapters.crm_postgres.throwaway import create_database, throwaway_server
from crm_audit_transform.config import load_default_config
from crm_audit_transform.transformer import Transformer

SCOPE = ("Crm::Person",)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
NO_BUDGET = 1 << 60


def fill(dsn: str, rows: int, mib: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE SCHEMA big; CREATE TABLE big.audits (id bigint PRIMARY KEY, auditable_id integer,"
            " auditable_type varchar, associated_id integer, associated_type varchar, user_id integer,"
            " user_type varchar, username varchar, action varchar, audited_changes text, version integer,"
            " comment varchar, remote_address varchar, request_uuid varchar, created_at timestamp)"
        )
        for audit_id in range(1, rows + 1):
            notes = f"{audit_id}" + "x" * (mib << 20)
            conn.execute(
                "INSERT INTO big.audits (id, auditable_id, auditable_type, action, audited_changes,"
                " created_at) VALUES (%s, 7, 'Crm::Person', 'update', %s, '2020-01-01')",
                (audit_id, f"---\nnotes:\n- a\n- {notes}\n"),
            )


def measure(dsn: str, page_bytes: int) -> tuple[int, int]:
    """Rows read and pages, in this process; prints the peak RSS in MiB."""
    transformer = Transformer(load_default_config())
    rows = pages = 0
    with ReadOnlySession.from_dsn(dsn) as session:
        source = PostgresAuditSource(session, page_bytes=page_bytes)
        after = 0
        while page := source.page("big", SCOPE, after_id=after, cutoff=EPOCH, limit=500):
            transformer.prepare(page)
            rows, pages, after = rows + len(page), pages + 1, page[-1].id
    return rows, pages


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20)
    parser.add_argument("--mib", type=int, default=20)
    parser.add_argument("--child", nargs=2, metavar=("DSN", "PAGE_BYTES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        rows, pages = measure(args.child[0], int(args.child[1]))
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        print(f"{rows} rows in {pages} pages, peak RSS {peak} MiB")
        return
    with throwaway_server() as server:
        dsn = create_database(server.dsn, "page_bytes_memory")
        fill(dsn, args.rows, args.mib)
        for label, budget in (
            (f"page_bytes={DEFAULT_PAGE_BYTES >> 20} MiB", DEFAULT_PAGE_BYTES),
            ("no byte budget", NO_BUDGET),
        ):
            found = subprocess.run(
                [sys.executable, __file__, "--child", dsn, str(budget)],
                check=True,
                capture_output=True,
                text=True,
            )
            print(f"{args.rows} rows of {args.mib} MiB, {label}: {found.stdout.strip()}")


if __name__ == "__main__":
    main()
