"""A page is bounded by bytes as well as rows: large audited_changes come a few rows a page, and
the run and verify read on until a page is empty, so every row is still migrated exactly once."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from crm_audit_adapters.bootstrap import Runtime
from crm_audit_adapters.crm_postgres import PostgresAuditSource, PostgresUserDirectory, ReadOnlySession
from crm_audit_adapters.settings import load_settings
from crm_audit_transform.jobs import COMPLETED
from crm_audit_transform.ports import AuditSource
from crm_audit_transform.usecases import RunSettings
from support.corpus_account import World
from support.postgres import create_audits, throwaway_database

pytestmark = pytest.mark.postgres

SCOPE = ("Crm::Person",)
CUTOFF = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
MIB = 1024 * 1024
SETTINGS = RunSettings(page_size=200, halt_threshold=1.0)


@pytest.fixture(scope="module")
def large_dsn(pg_server: str) -> Iterator[str]:
    """Rows 1-5 hold 1 MiB of audited_changes each (a text and a jsonb tenant), row 6 a few bytes."""
    with throwaway_database(pg_server, "pagebytes") as dsn:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for schema, kind in (("yaml", "text"), ("json", "jsonb")):
                create_audits(conn, schema, audited_changes=kind)
                for audit_id in range(1, 7):
                    notes = "x" * (MIB if audit_id < 6 else 10)
                    changes = (
                        f"---\nnotes:\n- a\n- {notes}\n"
                        if kind == "text"
                        else f'{{"notes": ["a", "{notes}"]}}'
                    )
                    conn.execute(
                        sql.SQL(
                            "INSERT INTO {}.audits (id, auditable_id, auditable_type, action,"
                            " audited_changes, created_at) VALUES (%s, 7, 'Crm::Person', 'update', %s, %s)"
                        ).format(sql.Identifier(schema)),
                        (audit_id, changes, dt.datetime(2020, 1, 1)),
                    )
        yield dsn


def pages(source: AuditSource, tenant: str, limit: int = 500) -> list[list[int]]:
    """The ids of each page a run reads, to the first empty page."""
    found: list[list[int]] = []
    after = 0
    while rows := source.page(tenant, SCOPE, after_id=after, cutoff=CUTOFF, limit=limit):
        found.append([row.id for row in rows])
        after = rows[-1].id
    return found


@pytest.mark.parametrize("tenant", ["yaml", "json"])
class TestPageBytes:
    def test_a_page_ends_after_the_row_that_reaches_the_budget(self, large_dsn: str, tenant: str) -> None:
        """With 2.5 MiB a page, 1 MiB rows come three a page (the third passes the budget); a row
        larger than the budget comes alone; every row once, in order."""
        with ReadOnlySession.from_dsn(large_dsn) as session:
            assert pages(PostgresAuditSource(session, page_bytes=5 * MIB // 2), tenant) == [
                [1, 2, 3],
                [4, 5, 6],
            ]
            assert pages(PostgresAuditSource(session, page_bytes=MIB // 2), tenant) == [
                [1],
                [2],
                [3],
                [4],
                [5],
                [6],
            ]
            assert pages(PostgresAuditSource(session), tenant, limit=4) == [[1, 2, 3, 4], [5, 6]]

    def test_the_runner_setting_is_the_runtimes_budget(self, large_dsn: str, tenant: str) -> None:
        """``page_bytes`` (``CRM_AUDIT_PAGE_BYTES``) is the budget of ``Runtime.source``'s pages: 2 MiB
        makes pages of two 1 MiB rows; unset, the 32 MiB default takes all six rows at once."""
        environ = {"CRM_AUDIT_DATABASE_URL": large_dsn, "CRM_AUDIT_PAGE_BYTES": str(2 * MIB)}
        with Runtime(load_settings(None, environ)) as runtime:
            assert pages(runtime.source, tenant) == [[1, 2], [3, 4], [5, 6]]
        with Runtime(load_settings(None, {"CRM_AUDIT_DATABASE_URL": large_dsn})) as runtime:
            assert pages(runtime.source, tenant) == [[1, 2, 3, 4, 5, 6]]

    def test_a_budget_must_be_positive(self, large_dsn: str, tenant: str) -> None:
        """page_bytes=0 would make no progress: refused."""
        with ReadOnlySession.from_dsn(large_dsn) as session, pytest.raises(ValueError, match="page_bytes"):
            PostgresAuditSource(session, page_bytes=0)


class TestRunWithShortPages:
    def test_a_run_over_byte_bounded_pages_migrates_what_a_row_bounded_run_does(self, crm_dsn: str) -> None:
        """The corpus read in pages of ~20 KB (a few rows each) gives the same job and logs as pages of
        200 rows: a short page is not the end of the rows."""

        def run(page_bytes: int | None) -> tuple[Any, ...]:
            with ReadOnlySession.from_dsn(crm_dsn) as session:
                world = World("acme")
                kwargs = {} if page_bytes is None else {"page_bytes": page_bytes}
                world.source = PostgresAuditSource(session, **kwargs)  # type: ignore[assignment]
                world.users = PostgresUserDirectory(session)  # type: ignore[assignment]
                world.trigger()
                job = world.run(settings=SETTINGS).job
                assert job.status == COMPLETED
                return job.tally, job.last_audit_id, repr(world.logs.logs)

        short = run(20_000)
        assert short == run(None)
        assert short[0].processed > 200


def test_the_budget_counts_what_is_sent(scratch_dsn: str) -> None:
    """A character(n) value is sent padded to n characters, and counted so: 3,000 bytes a row make
    pages of two under 5,000 (its trimmed text, a few bytes, made one page of all four). A bytea is
    sent as hex text (``\\x`` and two digits a byte), and counted so, from its header."""
    with psycopg.connect(scratch_dsn, autocommit=True) as conn:
        for schema, kind, value in (
            ("padded", "character(3000)", "---\n{}\n"),
            ("bytes", "bytea", b"x" * 1500),
        ):
            conn.execute(
                sql.SQL(
                    "CREATE SCHEMA {schema}; CREATE TABLE {schema}.audits (id bigint PRIMARY KEY,"
                    " auditable_id integer, auditable_type varchar, associated_id integer,"
                    " associated_type varchar, user_id integer, user_type varchar, username varchar,"
                    " action varchar, audited_changes {kind}, version integer, comment varchar,"
                    " remote_address varchar, request_uuid varchar, created_at timestamp)"
                ).format(schema=sql.Identifier(schema), kind=sql.SQL(kind))
            )
            for audit_id in range(1, 5):
                conn.execute(
                    sql.SQL(
                        "INSERT INTO {}.audits (id, auditable_id, auditable_type, action, audited_changes,"
                        " created_at) VALUES (%s, 7, 'Crm::Person', 'update', %s, '2021-01-01')"
                    ).format(sql.Identifier(schema)),
                    (audit_id, value),
                )
    with ReadOnlySession.from_dsn(scratch_dsn) as session:
        source = PostgresAuditSource(session, page_bytes=5000)
        assert pages(source, "padded") == [[1, 2], [3, 4]]
        rows = source.page("padded", SCOPE, after_id=0, cutoff=CUTOFF, limit=10)
        assert [len(row.audited_changes) for row in rows] == [3000, 3000]  # type: ignore[arg-type]
        assert pages(source, "bytes") == [[1, 2], [3, 4]]  # 3,002 bytes of hex a row
        assert pages(PostgresAuditSource(session, page_bytes=6005), "bytes") == [[1, 2, 3], [4]]
