"""In a database of a single-byte encoding (LATIN1, WIN1252…), an ``audited_changes`` past the limit
is omitted too, with its UTF-8 size.

There a text's ``octet_length`` is its bytes in that encoding, one a character, not the UTF-8 bytes
the loader counts (one to three a character), so every value was fetched whole, however large, for
the loader to measure. A value of more bytes there than the limit is more in UTF-8 too: it is now
measured on the server (``convert_to``) and omitted; one at or under the limit there is fetched,
and the loader refuses it if its UTF-8 form passes the limit, as before.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from crm_audit_adapters.crm_postgres import PostgresAuditSource, ReadOnlySession
from crm_audit_adapters.crm_postgres.throwaway import drop_database
from crm_audit_transform.errors import LimitExceeded
from crm_audit_transform.loading import JsonbText, LoaderLimits, OmittedChanges, load_audited_changes
from support.postgres import unique_database_name

pytestmark = pytest.mark.postgres

SCOPE = ("Crm::Person",)
CUTOFF = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
LIMIT = 1000
TYPES = {"text": "text", "padded": "character(1500)", "jsonb": "jsonb", "json": "json"}


def value_of(kind: str, body: str) -> str:
    return f'{{"notes": "{body}"}}' if kind in ("jsonb", "json") else f"---\nnotes: {body}\n"


def bodies(kind: str) -> dict[int, str]:
    """Row id → value: ASCII over, two-byte ``é`` under in LATIN1 bytes but over in UTF-8, ``é`` over
    in both, ``€`` (one byte in WIN1252, three in UTF-8) over, small."""
    fixed = len(value_of(kind, ""))
    return {
        1: value_of(kind, "a" * (LIMIT - fixed + 1)),
        2: value_of(kind, "é" * 600),
        3: value_of(kind, "é" * 1100),
        4: value_of(kind, "ü" * 700 + "x" * 400),
        5: value_of(kind, "small"),
    }


@pytest.fixture(scope="module")
def latin1_dsn(pg_server: str) -> Iterator[str]:
    name = unique_database_name("latin1")
    with psycopg.connect(pg_server, autocommit=True) as admin:
        admin.execute(
            sql.SQL(
                "CREATE DATABASE {} ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
            ).format(sql.Identifier(name))
        )
    dsn = psycopg.conninfo.make_conninfo(pg_server, dbname=name)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for schema, kind in TYPES.items():
                conn.execute(
                    sql.SQL(
                        "CREATE SCHEMA {schema}; CREATE TABLE {schema}.audits (id bigint PRIMARY KEY,"
                        " auditable_id integer, auditable_type varchar, associated_id integer,"
                        " associated_type varchar, user_id integer, user_type varchar, username varchar,"
                        " action varchar, audited_changes {kind}, version integer, comment varchar,"
                        " remote_address varchar, request_uuid varchar, created_at timestamp)"
                    ).format(schema=sql.Identifier(schema), kind=sql.SQL(kind))
                )
                for audit_id, value in bodies(schema).items():
                    conn.execute(
                        sql.SQL(
                            "INSERT INTO {}.audits (id, auditable_id, auditable_type, action,"
                            " audited_changes, created_at) VALUES (%s, 7, 'Crm::Person', 'update', %s, %s)"
                        ).format(sql.Identifier(schema)),
                        (audit_id, value, dt.datetime(2021, 1, 1)),
                    )
        yield dsn
    finally:
        drop_database(pg_server, name)


@pytest.mark.parametrize("tenant", list(TYPES))
def test_a_value_over_the_limit_in_latin1_bytes_comes_as_its_utf8_size(latin1_dsn: str, tenant: str) -> None:
    """Rows 1, 3 and 4 (over the limit in LATIN1 bytes) come as their UTF-8 size (a char(1500)'s
    padding counted); row 2 (600 characters, 1,200 bytes in UTF-8) is fetched, and the loader
    refuses it as before. Padded to 1,500 characters, every row is over the limit."""
    with ReadOnlySession.from_dsn(latin1_dsn) as session:
        assert session.run(lambda conn: conn.info.parameter_status("server_encoding")) == "LATIN1"
        source = PostgresAuditSource(session, max_changes_bytes=LIMIT)
        rows = source.page(tenant, SCOPE, after_id=0, cutoff=CUTOFF, limit=10)
        by_id = source.audit_by_id(tenant, 3)
    found = {row.id: row.audited_changes for row in rows}
    for audit_id, body in bodies(tenant).items():
        padding = 1500 - len(body) if tenant == "padded" else 0
        if len(body) + padding > LIMIT:  # LATIN1: one byte a character
            assert found[audit_id] == OmittedChanges(len(body.encode()) + padding, LIMIT), audit_id
        else:
            fetched = found[audit_id]
            assert (fetched.text if isinstance(fetched, JsonbText) else fetched) == body, audit_id
    assert by_id is not None
    assert by_id.audited_changes == found[3]
    if tenant != "padded":
        with pytest.raises(LimitExceeded):
            load_audited_changes(found[2], LoaderLimits(max_bytes=LIMIT))  # type: ignore[arg-type]
