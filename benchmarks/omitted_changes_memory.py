"""Peak memory of reading one oversized ``audited_changes`` (150 MiB), fetched or left on the server.

Usage: .venv/bin/python benchmarks/omitted_changes_memory.py [--mib 150] [--rounds 2]

A throwaway PostgreSQL server holds two tenants (a ``text`` and a ``jsonb`` ``audited_changes``), each
with three audits: small, ``--mib`` MiB, small (the large value built on the server, so this process
never holds it). Each measurement is its own process (``ru_maxrss`` is a process's peak):

* ``explain``: ``PostgresAuditSource.audit_by_id`` of the large row, then its load
  (``Transformer.prepare``), as ``crm-audit-migrate explain`` reads one row;
* ``run``: every page read with ``PostgresAuditSource.page`` and loaded (``Transformer.prepare``), as
  a run reads the tenant;

each with the source's ``max_changes_bytes`` at the loader's ``max_bytes`` (32 MiB: the value sent as
its size, ``OmittedChanges``) and at 1 GiB (a limit no value reaches: the value fetched whole and
refused by the loader, as before the limit existed). ``floor`` is a process that imports the same
modules and reads the small row. The loader refuses the large row either way (``limit_exceeded``);
the script checks that and prints each process's outcome. Memory is measured here, not in the tests.
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import subprocess
import sys

import psycopg

from crm_audit_adapters.crm_postgres import PostgresAuditSource, ReadOnlySession
from crm_audit_adapters.crm_postgres.throwaway import create_database, throwaway_server
from crm_audit_transform.config import load_default_config
from crm_audit_transform.domain import Failed
from crm_audit_transform.loading import LoaderLimits
from crm_audit_transform.transformer import Transformer

SCOPE = ("Crm::Person",)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
FETCHED = LoaderLimits.MAXIMA["max_bytes"]
"""A source limit no value reaches: every value fetched (the behaviour before the limit)."""
LIMITS = {"omitted (32 MiB)": LoaderLimits().max_bytes, "fetched (1 GiB)": FETCHED}
TENANTS = {"yaml": "text", "json": "jsonb"}


def fill(dsn: str, mib: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for schema, kind in TENANTS.items():
            conn.execute(
                f"CREATE SCHEMA {schema}; CREATE TABLE {schema}.audits (id bigint PRIMARY KEY,"
                " auditable_id integer, auditable_type varchar, associated_id integer, associated_type"
                " varchar, user_id integer, user_type varchar, username varchar, action varchar,"
                f" audited_changes {kind}, version integer, comment varchar, remote_address varchar,"
                " request_uuid varchar, created_at timestamp)"
            )
            small, large = (
                ("'---\nnotes: a\n'", f"'---\nnotes: ' || repeat('x', {mib << 20})")
                if kind == "text"
                else ('\'{"notes": "a"}\'', f"jsonb_build_object('notes', repeat('x', {mib << 20}))")
            )
            for audit_id, value in ((1, small), (2, large), (3, small)):
                conn.execute(
                    f"INSERT INTO {schema}.audits (id, auditable_id, auditable_type, action, audited_changes,"
                    f" created_at) SELECT %s, 7, 'Crm::Person', 'update', {value}, '2020-01-01'",
                    (audit_id,),
                )


def measure(dsn: str, tenant: str, mode: str, limit: int) -> str:
    """What the process read and what the loader made of the large row."""
    transformer = Transformer(load_default_config())
    with ReadOnlySession.from_dsn(dsn) as session:
        source = PostgresAuditSource(session, max_changes_bytes=limit)
        if mode == "floor":
            row = source.audit_by_id(tenant, 1)
            assert row is not None
            rows = [row]
        elif mode == "explain":
            row = source.audit_by_id(tenant, 2)
            assert row is not None
            rows = [row]
        else:
            rows, after = [], 0
            while page := source.page(tenant, SCOPE, after_id=after, cutoff=EPOCH, limit=500):
                rows.extend(page)
                after = page[-1].id
        prepared = transformer.prepare(rows)
    failures = [item.problem.detail for item in prepared if isinstance(item.problem, Failed)]
    kind = type(rows[-1].audited_changes).__name__ if mode == "explain" else "-"
    return f"{len(rows)} rows, value as {kind}, failures {failures}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--child", nargs=4, metavar=("DSN", "TENANT", "MODE", "LIMIT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        dsn, tenant, mode, limit = args.child
        said = measure(dsn, tenant, mode, int(limit))
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        print(f"peak RSS {peak} MiB; {said}")
        return
    with throwaway_server() as server:
        dsn = create_database(server.dsn, "omitted_changes_memory")
        fill(dsn, args.mib)
        for round_ in range(1, args.rounds + 1):
            for tenant, kind in TENANTS.items():
                runs = [("floor", "omitted (32 MiB)")] + [
                    (mode, label) for mode in ("explain", "run") for label in LIMITS
                ]
                if round_ % 2 == 0:
                    runs.reverse()  # alternate the order between rounds
                for mode, label in runs:
                    found = subprocess.run(
                        [sys.executable, __file__, "--child", dsn, tenant, mode, str(LIMITS[label])],
                        check=True,
                        capture_output=True,
                        text=True,
                    )
                    print(f"round {round_}, {kind} {args.mib} MiB, {mode}, {label}: {found.stdout.strip()}")


if __name__ == "__main__":
    main()
