"""PostgresAuditSource on jsonb ``audited_changes`` and on ``timestamptz`` columns."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.types.json import Jsonb

from crm_audit_adapters.crm_postgres import PostgresAuditSource, ReadOnlySession
from crm_audit_adapters.crm_postgres.throwaway import create_database, drop_database
from crm_audit_transform.domain import AuditRow
from support.postgres import corpus_records, expected_audit_row, unique_database_name

pytestmark = pytest.mark.postgres

RECORDS = "jsonb/audits.jsonl"
TYPES = ("Crm::Company", "Crm::Deal", "Crm::Person", "Crm::Task", "Crm::Ticket", "Crm::DealPerson")
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_COLUMNS = (
    "id", "auditable_id", "auditable_type", "associated_id", "associated_type", "user_id", "user_type",
    "username", "action", "audited_changes", "version", "comment", "remote_address", "request_uuid",
    "created_at",
)  # fmt: skip


def _create_tenant(conn: psycopg.Connection, tenant: str, created_at_type: str) -> None:
    schema = sql.Identifier(tenant)
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(schema))
    conn.execute(
        sql.SQL(
            "CREATE TABLE {}.audits (id bigint PRIMARY KEY, auditable_id integer,"
            " auditable_type varchar, associated_id integer, associated_type varchar, user_id integer,"
            " user_type varchar, username varchar, action varchar, audited_changes jsonb,"
            " version integer, comment varchar, remote_address varchar, request_uuid varchar,"
            " created_at {})"
        ).format(schema, sql.SQL(created_at_type))
    )
    insert = sql.SQL("INSERT INTO {}.audits ({}) VALUES ({})").format(
        schema,
        sql.SQL(", ").join(map(sql.Identifier, _COLUMNS)),
        sql.SQL(", ").join(sql.Placeholder() * len(_COLUMNS)),
    )
    with conn.cursor() as cursor:
        cursor.executemany(insert, [_values(r) for r in corpus_records(RECORDS) if r["tenant"] == tenant])


def _values(record: dict[str, Any]) -> tuple[Any, ...]:
    created_at = dt.datetime.fromisoformat(record["created_at"])
    values = {**record, "audited_changes": Jsonb(record["audited_changes"]), "created_at": created_at}
    return tuple(values[name] for name in _COLUMNS)


@pytest.fixture(scope="module")
def jsonb_dsn(pg_server: str) -> Iterator[str]:
    """acme_jsonb keeps created_at as timestamp (UTC); globex_jsonb as timestamptz, in a Jakarta session."""
    name = unique_database_name("jsonb")
    dsn = create_database(pg_server, name)
    try:
        with psycopg.connect(dsn) as conn:
            _create_tenant(conn, "acme_jsonb", "timestamp without time zone")
            _create_tenant(conn, "globex_jsonb", "timestamp with time zone")
            zone = sql.SQL("ALTER DATABASE {} SET TimeZone = 'Asia/Jakarta'")
            conn.execute(zone.format(sql.Identifier(name)))
        yield dsn
    finally:
        drop_database(pg_server, name)


@pytest.fixture(scope="module")
def source(jsonb_dsn: str) -> Iterator[PostgresAuditSource]:
    with ReadOnlySession.from_dsn(jsonb_dsn) as session:
        yield PostgresAuditSource(session)


def expected(tenant: str, cutoff: dt.datetime = EPOCH) -> list[AuditRow]:
    rows = (expected_audit_row(r) for r in corpus_records(RECORDS) if r["tenant"] == tenant)
    return [row for row in rows if row.auditable_type in TYPES and row.created_at >= cutoff]


def read_all(source: PostgresAuditSource, tenant: str, cutoff: dt.datetime) -> list[AuditRow]:
    rows: list[AuditRow] = []
    while page := source.page(tenant, TYPES, after_id=rows[-1].id if rows else 0, cutoff=cutoff, limit=9):
        rows.extend(page)
    return rows


class TestJsonbAuditedChanges:
    @pytest.mark.parametrize("tenant", ["acme_jsonb", "globex_jsonb"])
    def test_jsonb_changes_arrive_decoded_as_mappings(self, source: PostgresAuditSource, tenant: str) -> None:
        """A jsonb audited_changes column yields the decoded object, equal to the corpus value."""
        rows = read_all(source, tenant, EPOCH)
        assert rows == expected(tenant)
        assert rows
        assert all(isinstance(row.audited_changes, dict) for row in rows)

    def test_big_integers_stay_exact(self, source: PostgresAuditSource) -> None:
        """Integers beyond 2^53 in jsonb come back as exact Python ints."""
        rows = read_all(source, "acme_jsonb", EPOCH) + read_all(source, "globex_jsonb", EPOCH)
        big = [v for row in rows for v in _leaves(row.audited_changes) if isinstance(v, int) and v > 2**53]
        corpus = [
            v
            for r in corpus_records(RECORDS)
            for v in _leaves(json.loads(json.dumps(r["audited_changes"])))
            if isinstance(v, int) and not isinstance(v, bool) and v > 2**53 and r["auditable_type"] in TYPES
        ]
        assert corpus
        assert sorted(big) == sorted(corpus)


class TestTimestamptzColumns:
    def test_timestamptz_cutoff_and_values_are_utc_whatever_the_session_zone(
        self, source: PostgresAuditSource
    ) -> None:
        """With timestamptz created_at and a Jakarta session default, cutoffs and values stay UTC."""
        boundary = expected("globex_jsonb")[40]
        cutoff = boundary.created_at + dt.timedelta(microseconds=1)  # a zone slip would let it in
        rows = read_all(source, "globex_jsonb", cutoff)
        assert boundary not in rows
        assert rows == expected("globex_jsonb", cutoff)
        assert all(row.created_at.tzinfo is dt.UTC for row in rows)


def _leaves(value: object) -> Iterator[object]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    else:
        yield value
