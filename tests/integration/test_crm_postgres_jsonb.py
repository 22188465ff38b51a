"""PostgresAuditSource on jsonb ``audited_changes`` and on ``timestamptz`` columns."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import attrs
import psycopg
import pytest
from psycopg import sql
from psycopg.types.json import Jsonb

from crm_audit_adapters.crm_postgres import PostgresAuditSource, ReadOnlySession
from crm_audit_transform.config import load_default_config
from crm_audit_transform.domain import AuditRow, Failed
from crm_audit_transform.loading import JsonbText, load_audited_changes
from crm_audit_transform.transformer import Transformer
from support.postgres import (
    corpus_records,
    create_audits,
    expected_audit_row,
    throwaway_database,
)

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
    create_audits(conn, tenant, audited_changes="jsonb", created_at=created_at_type)
    insert = sql.SQL("INSERT INTO {}.audits ({}) VALUES ({})").format(
        schema,
        sql.SQL(", ").join(map(sql.Identifier, _COLUMNS)),
        sql.SQL(", ").join(sql.Placeholder() * len(_COLUMNS)),
    )
    with conn.cursor() as cursor:
        cursor.executemany(insert, [_values(r) for r in corpus_records(RECORDS) if r["tenant"] == tenant])


DEEP = 1_200  # deeper than Python's default recursion limit (1,000)


def _create_deep_tenant(conn: psycopg.Connection) -> None:
    """Three Crm::Person updates; the middle one's jsonb nests DEEP arrays."""
    conn.execute("CREATE SCHEMA deep_jsonb")
    conn.execute("CREATE TABLE deep_jsonb.audits (LIKE acme_jsonb.audits INCLUDING ALL)")
    deep = '{"notes": [' + "[" * DEEP + "]" * DEEP + ', "x"]}'
    for audit_id, changes in ((1, '{"name": ["a", "b"]}'), (2, deep), (3, '{"name": ["b", "c"]}')):
        conn.execute(
            "INSERT INTO deep_jsonb.audits (id, auditable_id, auditable_type, action, audited_changes,"
            " created_at) VALUES (%s, 7, 'Crm::Person', 'update', %s::jsonb, '2020-01-01')",
            (audit_id, changes),
        )


def _values(record: dict[str, Any]) -> tuple[Any, ...]:
    created_at = dt.datetime.fromisoformat(record["created_at"])
    values = {**record, "audited_changes": Jsonb(record["audited_changes"]), "created_at": created_at}
    return tuple(values[name] for name in _COLUMNS)


@pytest.fixture(scope="module")
def jsonb_dsn(pg_server: str) -> Iterator[str]:
    """acme_jsonb keeps created_at as timestamp (UTC); globex_jsonb as timestamptz, in a Jakarta session."""
    with throwaway_database(pg_server, "jsonb") as dsn:
        with psycopg.connect(dsn) as conn:
            _create_tenant(conn, "acme_jsonb", "timestamp without time zone")
            _create_tenant(conn, "globex_jsonb", "timestamp with time zone")
            _create_deep_tenant(conn)
            zone = sql.SQL("ALTER DATABASE {} SET TimeZone = 'Asia/Jakarta'")
            conn.execute(zone.format(sql.Identifier(conn.info.dbname)))
        yield dsn


@pytest.fixture(scope="module")
def source(jsonb_dsn: str) -> Iterator[PostgresAuditSource]:
    with ReadOnlySession.from_dsn(jsonb_dsn) as session:
        yield PostgresAuditSource(session)


def expected(tenant: str, cutoff: dt.datetime = EPOCH) -> list[AuditRow]:
    rows = (expected_audit_row(r) for r in corpus_records(RECORDS) if r["tenant"] == tenant)
    return [row for row in rows if row.auditable_type in TYPES and row.created_at >= cutoff]


def loaded(rows: list[AuditRow]) -> list[AuditRow]:
    """The rows with their audited_changes loaded (jsonb text decoded by the loader)."""
    return [attrs.evolve(row, audited_changes=load_audited_changes(row.audited_changes)) for row in rows]


def read_all(source: PostgresAuditSource, tenant: str, cutoff: dt.datetime) -> list[AuditRow]:
    rows: list[AuditRow] = []
    while page := source.page(tenant, TYPES, after_id=rows[-1].id if rows else 0, cutoff=cutoff, limit=9):
        rows.extend(page)
    return rows


class TestJsonbAuditedChanges:
    @pytest.mark.parametrize("tenant", ["acme_jsonb", "globex_jsonb"])
    def test_jsonb_changes_arrive_as_text_that_loads_to_the_corpus_value(
        self, source: PostgresAuditSource, tenant: str
    ) -> None:
        """A jsonb audited_changes column yields its text, which loads to the corpus value."""
        rows = read_all(source, tenant, EPOCH)
        assert rows
        assert all(isinstance(row.audited_changes, JsonbText) for row in rows)
        assert loaded(rows) == loaded(expected(tenant))

    def test_a_row_nested_deeper_than_python_recursion_fails_alone(self, source: PostgresAuditSource) -> None:
        """The page still arrives; the deep row is its own Failed(limit_exceeded), its neighbours load."""
        rows = source.page("deep_jsonb", ("Crm::Person",), after_id=0, cutoff=EPOCH, limit=10)
        assert [row.id for row in rows] == [1, 2, 3]
        transformer = Transformer(load_default_config())
        prepared = transformer.prepare(rows)
        assert prepared[0].problem is None
        assert prepared[2].problem is None
        problem = prepared[1].problem
        assert isinstance(problem, Failed)
        assert problem.reason == "malformed_audited_changes"
        assert problem.detail.startswith("limit_exceeded")
        explained = source.audit_by_id("deep_jsonb", 2)
        assert explained is not None
        assert isinstance(explained.audited_changes, JsonbText)

    def test_big_integers_stay_exact(self, source: PostgresAuditSource) -> None:
        """Integers beyond 2^53 in jsonb come back as exact Python ints."""
        rows = read_all(source, "acme_jsonb", EPOCH) + read_all(source, "globex_jsonb", EPOCH)
        big = [
            v
            for row in loaded(rows)
            for v in _leaves(row.audited_changes)
            if isinstance(v, int) and v > 2**53
        ]
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
        rows = loaded(read_all(source, "globex_jsonb", cutoff))
        assert loaded([boundary])[0] not in rows
        assert rows == loaded(expected("globex_jsonb", cutoff))
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
