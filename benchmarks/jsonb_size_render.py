"""What measuring a jsonb ``audited_changes`` costs the PostgreSQL page query.

Usage: .venv/bin/python benchmarks/jsonb_size_render.py [--rows 20000] [--kib 1] [--rounds 5]
       [--large-rows 120] [--large-kib 640] [--large-budget-kib 1024]

A throwaway PostgreSQL server holds two jsonb tenants, built on the server:

* ``small``: ``--rows`` audits of a few attributes' ``[old, new]`` pairs, about ``--kib`` KiB of
  text each, read in keyset pages of 500 rows under the default 32 MiB budget;
* ``large``: ``--large-rows`` audits of one ``--large-kib`` KiB string of hex digits (which pglz
  barely compresses, like an inline image's base64), read under a budget of ``--large-budget-kib``
  (pages of one or two rows; each page's 500 candidates are every row left after the cursor).

Each round reads each tenant whole, as a run does, with each query shape, in an order that
alternates between rounds; the best round of each is kept:

* ``fetch``: the keyset page alone, neither budget nor size (the floor: the fetch renders each value);
* ``budget``: the byte budget's window over ``octet_length(audited_changes::text)`` (the query before
  oversized values were omitted);
* ``two renders``: that budget and, in another expression, the size that decides the omission
  (``63717b9``);
* ``one render``: ``PostgresAuditSource``'s page query without its cut by stored size
  (``audits._LEAST_CUT``): one measure a row, shared by the budget and the omission;
* ``now``: ``PostgresAuditSource``'s page query.

Every shape runs on one connection with the source's cursor (jsonb as ``JsonbText``), so the
client's share is the same. ``server CPU`` is the CPU time (user + system) of the connection's
backend process over the read, from ``/proc/<pid>/stat`` (the throwaway server runs on this machine).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
from psycopg import sql

from crm_audit_adapters.crm_postgres import PostgresAuditSource, ReadOnlySession, audits
from crm_audit_adapters.crm_postgres.throwaway import create_database, throwaway_server

SCOPE = ["Crm::Person"]
EPOCH = dt.datetime(1970, 1, 1)
PAGE = 500
SHAPES = ["fetch", "budget", "two renders", "one render", "now"]
_WINDOW = (
    " sum(coalesce(octet_length(audited_changes::text), 0) + coalesce(octet_length(comment), 0))"
    " OVER (ORDER BY id ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS bytes_before"
)
_KEYSET = (
    f"SELECT {{columns}} FROM {{schema}}.audits WHERE id > %s AND {audits._IN_SCOPE} ORDER BY id LIMIT %s"
)
# The shapes of the page query before, as their templates built them for a jsonb column.
_BEFORE = {
    "fetch": _KEYSET,
    "budget": (
        f"SELECT {{columns}} FROM (SELECT *,{_WINDOW} FROM ({_KEYSET}) AS candidates) AS page"
        " WHERE coalesce(bytes_before, 0) < %s ORDER BY id"
    ),
    "two renders": (
        "SELECT {columns}, CASE WHEN changes_bytes > 33554432 THEN changes_bytes END FROM (SELECT *,"
        f" octet_length(audited_changes::text) AS changes_bytes,{_WINDOW} FROM ({_KEYSET}) AS candidates)"
        " AS page WHERE coalesce(bytes_before, 0) < %s ORDER BY id"
    ),
}
_CREATE = (
    "CREATE SCHEMA {schema}; CREATE TABLE {schema}.audits (id bigint PRIMARY KEY, auditable_id integer,"
    " auditable_type varchar, associated_id integer, associated_type varchar, user_id integer,"
    " user_type varchar, username varchar, action varchar, audited_changes jsonb, version integer,"
    " comment varchar, remote_address varchar, request_uuid varchar, created_at timestamp)"
)
_INSERT = (
    "INSERT INTO {schema}.audits (id, auditable_id, auditable_type, action, audited_changes, version,"
    " created_at) SELECT i, i %% 997, 'Crm::Person', 'update', {changes}, 1, '2021-01-01'::timestamp"
    " + i * interval '1 minute' FROM generate_series(1, %s) AS i"
)
_SMALL = (
    "jsonb_build_object('name', jsonb_build_array(md5(i::text), md5((i + 1)::text)),"
    " 'description', jsonb_build_array(repeat(md5(i::text), %s), repeat(md5((i + 2)::text), %s)),"
    " 'amount', jsonb_build_array(i * 1.25, i * 2.5),"
    " 'tags', jsonb_build_array(jsonb_build_array('a', 'b'), jsonb_build_array('a', 'b', 'c')))"
)
_LARGE = (
    "jsonb_build_object('picture', jsonb_build_array(NULL, (SELECT string_agg(md5(random()::text || j), '')"
    " FROM generate_series(1, %s + 0 * i) AS j)))"
)


def fill(dsn: str, args: argparse.Namespace) -> None:
    repeats = max(1, args.kib * 1024 // 2 // 32 - 2)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for schema, changes, params in (
            ("small", _SMALL, (repeats, repeats, args.rows)),
            ("large", _LARGE, (args.large_kib * 1024 // 32, args.large_rows)),
        ):
            conn.execute(_CREATE.format(schema=schema))
            conn.execute(_INSERT.format(schema=schema, changes=changes), params)  # type: ignore[arg-type]
            conn.execute(f"VACUUM ANALYZE {schema}.audits")
            text, stored = conn.execute(
                f"SELECT avg(octet_length(audited_changes::text)), avg(pg_column_size(audited_changes))"
                f" FROM {schema}.audits"
            ).fetchone() or (0, 0)
            print(
                f"{schema}: {params[-1]} rows, {float(text):.0f} bytes of text a row,"
                f" {float(stored):.0f} stored"
            )


def backend_cpu(conn: psycopg.Connection) -> float:
    """Seconds of CPU (user + system) the connection's server process has used."""
    fields = Path(f"/proc/{conn.info.backend_pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def query_of(
    source: PostgresAuditSource, tenant: str, shape: str
) -> Callable[[psycopg.Connection], sql.Composed]:
    schema = sql.Identifier(tenant)
    columns = sql.SQL(", ").join(sql.Identifier(name) for name in audits.AUDIT_COLUMNS)
    if shape in _BEFORE:
        composed = sql.SQL(_BEFORE[shape]).format(columns=columns, schema=schema)
        return lambda _conn: composed
    query = source._query(audits._PAGE, tenant, "jsonb", source._max_changes_bytes, unrendered=False)
    if shape == "now":
        return query

    def uncut(conn: psycopg.Connection) -> sql.Composed:  # _query's, with the keyset page as it is
        return audits._PAGE.format(
            candidates=audits._KEYSET.format(columns=columns, schema=schema),
            columns=columns,
            fetched=audits._fetched(source._max_changes_bytes),
            size=sql.SQL("sent_bytes"),
            sent=audits._sent_bytes("jsonb"),
            schema=schema,
        )

    return uncut


def read_all(conn: psycopg.Connection, text: str, tenant: str, budget: int, fetch: bool) -> int:
    after, count = 0, 0
    while True:
        params = (after, SCOPE, EPOCH, PAGE) if fetch else (after, SCOPE, EPOCH, PAGE, budget)
        rows = audits._cursor(conn).execute(text, params).fetchall()  # type: ignore[call-overload]
        if not rows:
            return count
        count += len(rows)
        after = rows[-1][0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--kib", type=int, default=1)
    parser.add_argument("--large-rows", type=int, default=120)
    parser.add_argument("--large-kib", type=int, default=640)
    parser.add_argument("--large-budget-kib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    budgets = {"small": audits.DEFAULT_PAGE_BYTES, "large": args.large_budget_kib * 1024}
    rows = {"small": args.rows, "large": args.large_rows}
    with throwaway_server() as server:
        dsn = create_database(server.dsn, "jsonb_size_render")
        fill(dsn, args)
        with ReadOnlySession.from_dsn(dsn) as session, psycopg.connect(dsn, autocommit=True) as conn:
            texts = {}
            for tenant, budget in budgets.items():
                source = PostgresAuditSource(session, page_bytes=budget)
                for shape in SHAPES:
                    texts[tenant, shape] = query_of(source, tenant, shape)(conn).as_string(conn)
            wall: dict[tuple[str, str], float] = {}
            cpu: dict[tuple[str, str], float] = {}
            for tenant in budgets:
                for shape in SHAPES:  # warm the cache once
                    read_all(conn, texts[tenant, shape], tenant, budgets[tenant], shape == "fetch")
            for round_ in range(args.rounds):
                for tenant in budgets:
                    for shape in SHAPES if round_ % 2 == 0 else SHAPES[::-1]:
                        server_before, started = backend_cpu(conn), time.perf_counter()
                        count = read_all(
                            conn, texts[tenant, shape], tenant, budgets[tenant], shape == "fetch"
                        )
                        took, used = time.perf_counter() - started, backend_cpu(conn) - server_before
                        assert count == rows[tenant], (tenant, shape, count)
                        key = (tenant, shape)
                        wall[key] = min(wall.get(key, took), took)
                        cpu[key] = min(cpu.get(key, used), used)
    print(f"best of {args.rounds} alternating rounds:")
    print("| tenant | shape | read (s) | vs fetch | vs now | server CPU (s) | vs fetch | vs now |")
    print("|---|---|---|---|---|---|---|---|")
    for tenant in budgets:
        for shape in SHAPES:
            w, c = wall[tenant, shape], cpu[tenant, shape]
            w_fetch, w_now = w / wall[tenant, "fetch"], w / wall[tenant, "now"]
            c_fetch, c_now = c / cpu[tenant, "fetch"], c / cpu[tenant, "now"]
            print(
                f"| {tenant} | {shape} | {w:.3f} | {w_fetch:.2f} x | {w_now:.2f} x"
                f" | {c:.2f} | {c_fetch:.2f} x | {c_now:.2f} x |"
            )


if __name__ == "__main__":
    main()
