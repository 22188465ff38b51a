"""A user's ``deleted_at`` that PostgreSQL holds but ``datetime`` cannot (``infinity``,
``-infinity``, a year past 9999, a BC date) still reads as soft-deleted: the user directory never
fails a tenant's lookups on it (it did, as ``SOURCE_UNAVAILABLE``, for every page naming the user)."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from crm_audit_adapters.crm_postgres import PostgresUserDirectory, ReadOnlySession
from support.postgres import throwaway_database

pytestmark = pytest.mark.postgres

# id → deleted_at as SQL text (None: not deleted).
DELETED = {
    1: None,
    2: "infinity",
    3: "-infinity",
    4: "10000-01-01 00:00:00+00",
    5: "0044-03-15 00:00:00+00 BC",
    6: "2021-06-01 12:00:00+00",
    7: "9999-12-31 23:59:59.999999+00",
    8: "0001-01-01 00:00:00+00",
}


@pytest.fixture(scope="module")
def users_dsn(pg_server: str) -> Iterator[str]:
    """Two tenants with the same users: ``naive`` (Rails' timestamp) and ``aware`` (timestamptz)."""
    with throwaway_database(pg_server, "usertimes") as dsn:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for schema, kind in (("naive", "timestamp"), ("aware", "timestamptz")):
                conn.execute(
                    sql.SQL(
                        "CREATE SCHEMA {schema}; CREATE TABLE {schema}.users (id bigint PRIMARY KEY,"
                        " email varchar, full_name varchar, deleted_at {kind})"
                    ).format(schema=sql.Identifier(schema), kind=sql.SQL(kind))
                )
                for user_id, at in DELETED.items():
                    conn.execute(
                        sql.SQL(
                            "INSERT INTO {}.users (id, email, full_name, deleted_at)"
                            " VALUES (%s, %s, %s, %s::timestamptz)"
                        ).format(sql.Identifier(schema)),
                        (user_id, f"u{user_id}@example.com", f"User {user_id}", at),
                    )
        yield dsn


@pytest.mark.parametrize("tenant", ["naive", "aware"])
def test_every_deleted_at_reads_and_only_null_is_not_deleted(users_dsn: str, tenant: str) -> None:
    with ReadOnlySession.from_dsn(users_dsn) as session:
        users = PostgresUserDirectory(session).users_by_ids(tenant, list(DELETED))
    assert sorted(users) == sorted(DELETED)
    deleted = {user_id for user_id, user in users.items() if user.deleted_at is not None}
    assert deleted == {user_id for user_id, at in DELETED.items() if at is not None}
    readable = users[6].deleted_at
    assert readable is not None
    assert (readable.year, readable.month, readable.day) == (2021, 6, 1)
