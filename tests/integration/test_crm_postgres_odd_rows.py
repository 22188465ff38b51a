"""A SQL_ASCII CRM database with NULL created_at and ids <= 0: every row read, each its own outcome."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from crm_audit_adapters.crm_postgres import PostgresAuditSource, ReadOnlySession
from crm_audit_adapters.crm_postgres.throwaway import drop_database
from crm_audit_transform.config import load_default_config
from crm_audit_transform.transformer import Transformer
from crm_audit_transform.usecases.pages import PageSpan
from support.postgres import create_audits, unique_database_name

pytestmark = pytest.mark.postgres

SCOPE = ("Crm::Person",)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def ascii_dsn(pg_server: str) -> Iterator[str]:
    name = unique_database_name("sqlascii")
    with psycopg.connect(pg_server, autocommit=True) as admin:
        admin.execute(
            sql.SQL(
                "CREATE DATABASE {} TEMPLATE template0 ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C'"
            ).format(sql.Identifier(name))
        )
    dsn = psycopg.conninfo.make_conninfo(pg_server, dbname=name)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            create_audits(conn, "odd")
            insert = (
                "INSERT INTO odd.audits (id, auditable_id, auditable_type, action, audited_changes, comment,"
                " created_at) VALUES (%s, 7, 'Crm::Person', 'update', %s, {comment}, %s)"
            )
            changes = "---\nfirst_name:\n- Budi\n- B\u00f9di\n"
            at = dt.datetime(2020, 1, 1)
            conn.execute(insert.format(comment="NULL"), (-1, changes, at))
            conn.execute(insert.format(comment="NULL"), (1, changes, at))
            conn.execute(insert.format(comment="E'caf\\xe9'"), (2, changes, at))  # Latin-1, not UTF-8
            conn.execute(insert.format(comment="NULL"), (3, changes, None))
            create_audits(conn, "odd_json", audited_changes="jsonb")
            conn.execute(
                "INSERT INTO odd_json.audits (id, auditable_id, auditable_type, action, audited_changes,"
                " created_at) VALUES (%s, 7, 'Crm::Person', 'update', %s::jsonb, '2020-01-01')",
                (1, '{"first_name": ["Budi", "B\u00f9di"]}'),
            )
            # SQL_ASCII takes any byte into a jsonb string: this one is Latin-1's é, not UTF-8.
            conn.execute(
                b"INSERT INTO odd_json.audits (id, auditable_id, auditable_type, action, audited_changes,"
                b" created_at) VALUES (2, 7, 'Crm::Person', 'update',"
                b' \'{"first_name": ["caf\xe9", "x"]}\', \'2020-01-01\')'
            )
        yield dsn
    finally:
        drop_database(pg_server, name)


@pytest.fixture(scope="module")
def source(ascii_dsn: str) -> Iterator[PostgresAuditSource]:
    with ReadOnlySession.from_dsn(ascii_dsn) as session:
        yield PostgresAuditSource(session)


class TestOddRows:
    def test_the_scope_starts_below_zero_and_counts_null_times(self, source: PostgresAuditSource) -> None:
        """Bounds include the id -1 row and the NULL created_at row."""
        bounds = source.scope_bounds("odd", SCOPE, None)
        assert bounds is not None
        assert (bounds.min_id, bounds.max_id, bounds.count) == (-1, 3, 4)

    def test_every_row_is_read_and_gets_its_own_outcome(self, source: PostgresAuditSource) -> None:
        """UTF-8 decodes on SQL_ASCII; a Latin-1 value fails its row alone; a NULL time has its own reason."""
        rows = source.page(
            "odd", SCOPE, after_id=-10, cutoff=dt.datetime(2020, 1, 1, tzinfo=dt.UTC), limit=10
        )
        assert [row.id for row in rows] == [-1, 1, 2, 3]
        assert rows[1].audited_changes == "---\nfirst_name:\n- Budi\n- B\u00f9di\n"
        assert rows[3].created_at is None
        prepared = Transformer(load_default_config()).prepare(rows)
        problems = [None if p.problem is None else p.problem.reason for p in prepared]
        assert problems == [None, None, "invalid_audit_row", "missing_created_at"]
        assert prepared[1].changes == {"first_name": ["Budi", "B\u00f9di"]}


def test_a_jsonb_value_that_is_not_utf8_fails_its_row_alone(source: PostgresAuditSource) -> None:
    """A SQL_ASCII jsonb holding a byte that is not UTF-8 failed the page it was on, every read, with
    an untyped UnicodeDecodeError: it now comes as its bytes, which the loader refuses (bad_encoding)
    for that row alone, in a page, a span and a read by id; the UTF-8 row beside it decodes."""
    cutoff = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    rows = source.page("odd_json", SCOPE, after_id=0, cutoff=cutoff, limit=10)
    span = source.span_rows(PageSpan("odd_json", SCOPE, cutoff, (1, 2)))
    by_id = source.audit_by_id("odd_json", 2)
    raw = b'{"first_name": ["caf\xe9", "x"]}'
    for found in (rows, span):
        assert [row.id for row in found] == [1, 2]
        assert found[1].audited_changes == raw
    assert by_id is not None
    assert by_id.audited_changes == raw
    prepared = Transformer(load_default_config()).prepare(rows)
    assert prepared[0].problem is None
    assert prepared[0].changes == {"first_name": ["Budi", "B\u00f9di"]}
    problem = prepared[1].problem
    assert problem is not None
    assert (problem.reason, problem.detail.split(":")[0]) == ("malformed_audited_changes", "bad_encoding")
