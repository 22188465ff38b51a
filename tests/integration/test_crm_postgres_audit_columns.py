"""An ``audits`` table the queries cannot read, and a role missing a grant: typed refusals, never an
outage to retry nor an untyped crash.

Before, a ``created_at`` of type ``text`` made every page query fail as ``SOURCE_UNAVAILABLE`` (exit
6, "retry later"; Celery retried it), a ``date`` one or a ``text`` id crashed ``trigger`` with an
untyped ``AttributeError``/``TypeError`` (``INTERNAL``), and a role without ``SELECT`` on ``users``
stopped each run as an outage too. A table without a key on ``id`` let a repeated id's second row be
lost when a page ended at the first: never read, by the run or by verify, which said clean.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from crm_audit_adapters.crm_postgres import PostgresAuditSource, PostgresUserDirectory, ReadOnlySession
from crm_audit_transform.errors import ConnectionRejected, SourceUnavailable, UnknownTenant
from support.postgres import throwaway_database

pytestmark = pytest.mark.postgres

SCOPE = ("Crm::Person",)
CUTOFF = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
COLUMNS = {
    "id": "bigint PRIMARY KEY", "auditable_id": "integer", "auditable_type": "varchar",
    "associated_id": "integer", "associated_type": "varchar", "user_id": "integer",
    "user_type": "varchar", "username": "varchar", "action": "varchar", "audited_changes": "text",
    "version": "integer", "comment": "varchar", "remote_address": "varchar",
    "request_uuid": "varchar", "created_at": "timestamp",
}  # fmt: skip
"""audited's own columns (the corpus's DDL)."""
TABLES = {
    "rails": {},
    "aware": {"created_at": "timestamptz", "audited_changes": "jsonb", "user_id": "uuid"},
    "text_time": {"created_at": "text"},
    "date_time": {"created_at": "date"},
    "text_id": {"id": "text PRIMARY KEY"},
    "numeric_id": {"id": "numeric PRIMARY KEY"},
    "int_type": {"auditable_type": "integer"},
    # Sent as hex, two bytes a byte: the room a row keeps for its comment (text_columns.COMMENT_CAP)
    # is of text, so only text is read.
    "bytea_comment": {"comment": "bytea"},
    "no_uuid": {"request_uuid": None},
    "no_key": {"id": "bigint"},
}
"""Each tenant's audits table: audited's, with these columns changed (None: left out)."""
PARTITIONED = (
    ("by_time", "bigserial", "PRIMARY KEY (id, created_at)) PARTITION BY RANGE (created_at"),
    ("by_time_unsequenced", "bigint", "PRIMARY KEY (id, created_at)) PARTITION BY RANGE (created_at"),
    ("pair_key", "bigserial", "UNIQUE (id, created_at)"),
)
"""Tables keyed by (id, created_at), each ``auditable_type`` a domain over a domain over varchar:
(schema, id's type, the DDL after the columns)."""
ROLE_PASSWORD = "s3cret-reader-pw"


@pytest.fixture(scope="module")
def tables_dsn(pg_server: str) -> Iterator[str]:
    with throwaway_database(pg_server, "columns") as dsn:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for schema, changed in TABLES.items():
                columns = {**COLUMNS, **changed}
                defined = sql.SQL(", ").join(
                    sql.SQL("{} {}").format(sql.Identifier(column), sql.SQL(kind))
                    for column, kind in columns.items()
                    if kind is not None
                )
                conn.execute(
                    sql.SQL("CREATE SCHEMA {schema}; CREATE TABLE {schema}.audits ({defined})").format(
                        schema=sql.Identifier(schema), defined=defined
                    )
                )
                conn.execute(
                    sql.SQL(
                        "INSERT INTO {}.audits (id, auditable_id, auditable_type, action, created_at)"
                        " VALUES ('1', 7, {}, 'update', '2021-06-01')"
                    ).format(
                        sql.Identifier(schema),
                        sql.Literal(7 if changed.get("auditable_type") == "integer" else "Crm::Person"),
                    )
                )
            # An audits table partitioned by created_at can only be keyed by (id, created_at), as
            # PostgreSQL wants the partition key in every unique index: read when id is drawn from a
            # sequence (bigserial), refused when nothing draws it. A plain table keyed so is refused.
            conn.execute("CREATE DOMAIN type_text AS varchar; CREATE DOMAIN type_name AS type_text")
            for schema, id_kind, tail in PARTITIONED:
                columns = {**COLUMNS, "id": id_kind, "auditable_type": "type_name"}
                defined = sql.SQL(", ").join(
                    sql.SQL("{} {}").format(sql.Identifier(column), sql.SQL(kind))
                    for column, kind in columns.items()
                )
                conn.execute(
                    sql.SQL("CREATE SCHEMA {s}; CREATE TABLE {s}.audits ({d}, {t})").format(
                        s=sql.Identifier(schema), d=defined, t=sql.SQL(tail)
                    )
                )
                if "PARTITION BY" in tail:
                    conn.execute(
                        sql.SQL(
                            "CREATE TABLE {s}.audits_2021 PARTITION OF {s}.audits"
                            " FOR VALUES FROM ('2021-01-01') TO ('2022-01-01')"
                        ).format(s=sql.Identifier(schema))
                    )
                conn.execute(
                    sql.SQL(
                        "INSERT INTO {}.audits (id, auditable_id, auditable_type, action, created_at)"
                        " VALUES (1, 7, 'Crm::Person', 'update', '2021-06-01')"
                    ).format(sql.Identifier(schema))
                )
            # A view holds no index: its ids are taken as unique (docs/postgres.md).
            conn.execute("CREATE SCHEMA view; CREATE VIEW view.audits AS SELECT * FROM rails.audits")
            conn.execute(
                "CREATE TABLE rails.users (id bigint PRIMARY KEY, email varchar, full_name varchar,"
                " deleted_at timestamp)"
            )
        yield dsn


@pytest.fixture
def source(tables_dsn: str) -> Iterator[PostgresAuditSource]:
    with ReadOnlySession.from_dsn(tables_dsn) as session:
        yield PostgresAuditSource(session)


@pytest.mark.parametrize("tenant", ["rails", "aware", "view", "by_time"])
def test_audited_columns_and_the_documented_variants_are_read(
    source: PostgresAuditSource, tenant: str
) -> None:
    assert source.scope_bounds(tenant, SCOPE, CUTOFF).count == 1
    assert [row.id for row in source.page(tenant, SCOPE, after_id=0, cutoff=CUTOFF, limit=10)] == [1]


@pytest.mark.parametrize(
    ("tenant", "said"),
    [
        ("text_time", "its audits.created_at is text, not timestamp with time zone or timestamp without"),
        ("date_time", "its audits.created_at is date, not timestamp"),
        ("text_id", "its audits.id is text, not bigint or integer or smallint"),
        ("numeric_id", "its audits.id is numeric, not bigint"),
        (
            "int_type",
            "its audits.auditable_type is integer, not character or character varying or citext or text",
        ),
        (
            "bytea_comment",
            "its audits.comment is bytea, not character or character varying or citext or text",
        ),
        ("no_uuid", "its audits table has no column request_uuid"),
        ("no_key", "its audits.id has no primary key or unique index on id alone"),
        ("by_time_unsequenced", "nor, partitioned, a unique key holding id with id drawn from a sequence"),
        ("pair_key", "its audits.id has no primary key or unique index on id alone"),
    ],
)
def test_a_table_the_queries_cannot_read_is_refused_before_any_read(
    source: PostgresAuditSource, tenant: str, said: str
) -> None:
    """The trigger's bounds, a page and explain's read by id: each refused alike, never retried."""
    reads = (
        lambda: source.scope_bounds(tenant, SCOPE, CUTOFF),
        lambda: source.page(tenant, SCOPE, after_id=0, cutoff=CUTOFF, limit=10),
        lambda: source.audit_by_id(tenant, 1),
    )
    for read in reads:
        with pytest.raises(UnknownTenant) as refused:
            read()
        assert said in str(refused.value)
        assert "not audited's audits table" in str(refused.value)


def test_a_role_missing_a_grant_is_a_refused_configuration_not_an_outage(tables_dsn: str) -> None:
    role = f"reader_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(tables_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), ROLE_PASSWORD))
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA rails TO {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("GRANT SELECT ON rails.audits TO {}").format(sql.Identifier(role)))
    params = psycopg.conninfo.conninfo_to_dict(tables_dsn)
    dsn = psycopg.conninfo.make_conninfo(**{**params, "user": role, "password": ROLE_PASSWORD})
    try:
        with ReadOnlySession.from_dsn(dsn) as session:
            assert PostgresAuditSource(session).scope_bounds("rails", SCOPE, CUTOFF).count == 1
            with pytest.raises(ConnectionRejected) as refused:
                PostgresUserDirectory(session).users_by_ids("rails", [1])
        assert not isinstance(refused.value, SourceUnavailable)
        assert "permission denied for table users" in str(refused.value)
        assert ROLE_PASSWORD not in str(refused.value)
    finally:
        with psycopg.connect(tables_dsn, autocommit=True) as conn:
            name = sql.Identifier(role)
            conn.execute(sql.SQL("DROP OWNED BY {}; DROP ROLE {}").format(name, name))
