"""A text value holding a byte its database's encoding has no character for fails its row alone.

A database of a single-byte encoding stores any byte but NUL in a text (PostgreSQL checks nothing
more there): in ``WIN1252`` the bytes 0x81, 0x8d, 0x8f, 0x90 and 0x9d are no character, and its
server converts such a value to no other encoding ("has no equivalent in encoding"). psycopg decodes
each text in the connection's encoding, so one such value in any column made its page's every read
raise ``UnicodeDecodeError``: an untyped error, the same on every run. Now the value comes as an
``UntranslatableText``: ``bad_encoding`` in ``audited_changes`` (text, json or jsonb), as a SQL_ASCII
value that is not UTF-8 already was, and ``invalid_audit_row`` naming the column in any other, in
every audit query (a page, a span, a read by id).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from crm_audit_adapters.crm_postgres import (
    PostgresAuditSource,
    PostgresEntityDirectory,
    PostgresUserDirectory,
    ReadOnlySession,
)
from crm_audit_adapters.crm_postgres.audits import _SINGLE_BYTE_ENCODINGS, _untranslatable_bytes
from crm_audit_adapters.crm_postgres.throwaway import drop_database
from crm_audit_transform.config import load_default_config
from crm_audit_transform.domain import AuditRow, CrmUser, Failed
from crm_audit_transform.errors import SourceQueryFailed, UntranslatableCharacter
from crm_audit_transform.loading import JsonbText, OmittedChanges, UntranslatableText
from crm_audit_transform.transformer import Transformer
from crm_audit_transform.usecases.pages import PageSpan
from support.postgres import create_audits, unique_database_name

pytestmark = pytest.mark.postgres

SCOPE = ("Crm::Person",)
CUTOFF = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
TYPES = {"text": "text", "jsonb": "jsonb", "json": "json"}
BAD = b"a\x81b"
"""0x81 is no character in WIN1252."""
# id → the columns set, as their WIN1252 bytes, beside a valid update of person 7: BAD in one each.
ROWS: dict[int, dict[str, bytes]] = {
    1: {},
    2: {"audited_changes": b"\x80" + BAD},  # 0x80 is € there: three bytes in UTF-8
    3: {"comment": BAD},
    4: {"action": BAD},
    5: {"username": BAD},
    6: {"request_uuid": BAD},
    7: {"remote_address": b"\x80" + BAD},  # 0x80 is a character there (€): the second byte is not
    8: {},
}
COLUMNS = ("action", "username", "comment", "remote_address", "request_uuid")


def changes_of(kind: str, body: bytes) -> bytes:
    if kind == "text":
        return b"---\nfirst_name:\n- A\n- " + body + b"\n"
    return b'{"first_name": ["A", "' + body + b'"]}'


@pytest.fixture(scope="module")
def win1252_dsn(pg_server: str) -> Iterator[str]:
    name = unique_database_name("win1252")
    with psycopg.connect(pg_server, autocommit=True) as admin:
        admin.execute(
            sql.SQL(
                "CREATE DATABASE {} ENCODING 'WIN1252' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
            ).format(sql.Identifier(name))
        )
    dsn = psycopg.conninfo.make_conninfo(pg_server, dbname=name)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for schema, kind in TYPES.items():
                create_audits(conn, schema, audited_changes=kind)
                for audit_id, columns in ROWS.items():
                    texts = {
                        "auditable_type": b"Crm::Person",
                        "action": b"update",
                        **columns,
                        "audited_changes": changes_of(kind, columns.get("audited_changes", b"B")),
                    }
                    # Each text sent as its bytes (bytea): convert_from checks no more than the server
                    # does of a client's text in that encoding, so 0x81 is stored as it is.
                    conn.execute(
                        sql.SQL(
                            "INSERT INTO {}.audits (id, auditable_id, created_at, {})"
                            " VALUES (%s, 7, '2021-01-01', {})"
                        ).format(
                            sql.Identifier(schema),
                            sql.SQL(", ").join(map(sql.Identifier, texts)),
                            sql.SQL(", ").join(
                                sql.SQL("convert_from(%s, 'WIN1252')::{}").format(
                                    sql.SQL(kind if column == "audited_changes" else "text")
                                )
                                for column in texts
                            ),
                        ),
                        [audit_id, *texts.values()],
                    )
        yield dsn
    finally:
        drop_database(pg_server, name)


def untranslatable(raw: bytes) -> UntranslatableText:
    """What a row carries for the WIN1252 bytes ``raw``, which hold 0x81."""
    return UntranslatableText("WIN1252", len(raw), raw.index(b"\x81"), b"\x81")


@pytest.mark.parametrize("tenant", list(TYPES))
def test_every_audit_query_reads_each_row_with_the_value_typed(win1252_dsn: str, tenant: str) -> None:
    """A page, a span of the page pool and the reads by id (explain, verify) read all 8 rows: each
    untranslatable value is an ``UntranslatableText`` of its bytes, the rest as written. The page
    raised ``UnicodeDecodeError`` before."""
    with ReadOnlySession.from_dsn(win1252_dsn) as session:
        assert session.run(lambda conn: conn.info.parameter_status("server_encoding")) == "WIN1252"
        source = PostgresAuditSource(session)
        page = source.page(tenant, SCOPE, after_id=0, cutoff=CUTOFF, limit=50)
        span = source.span_rows(PageSpan(tenant, SCOPE, CUTOFF, tuple(ROWS)))
        by_id = [source.audit_by_id(tenant, audit_id) for audit_id in ROWS]
        quantiles = source.id_quantiles(tenant, SCOPE, None, 2)
    assert [row.id for row in page] == list(ROWS)
    assert span == page
    assert by_id == list(page)
    assert quantiles == (4,)
    for row in page:
        found: dict[str, Any] = {column: getattr(row, column) for column in COLUMNS}
        expected: dict[str, Any] = dict.fromkeys(COLUMNS) | {"action": "update"}
        expected |= {
            column: untranslatable(raw) for column, raw in ROWS[row.id].items() if column != "audited_changes"
        }
        assert found == expected, row.id
        changes = row.audited_changes
        if row.id == 2:
            assert changes == untranslatable(changes_of(tenant, ROWS[2]["audited_changes"]))
        else:
            text = changes.text if isinstance(changes, JsonbText) else changes
            assert text == changes_of(tenant, b"B").decode(), row.id


@pytest.mark.parametrize("tenant", list(TYPES))
def test_a_value_past_the_limit_is_omitted_with_such_a_byte_counted_as_one(
    win1252_dsn: str, tenant: str
) -> None:
    """Past ``max_changes_bytes`` a value's UTF-8 size is computed on the server (``convert_to``),
    whose conversion of 0x81 failed the page on every read (22P05, ``SourceQueryFailed``): the byte
    counts as one now, the € as its three, and the value is omitted as any value that size."""
    with ReadOnlySession.from_dsn(win1252_dsn) as session:
        source = PostgresAuditSource(session, max_changes_bytes=10)
        rows = source.page(tenant, SCOPE, after_id=0, cutoff=CUTOFF, limit=50)
        by_id = source.audit_by_id(tenant, 2)
    assert [row.id for row in rows] == list(ROWS)
    assert by_id == rows[1]
    for row in rows:
        raw = changes_of(tenant, ROWS[row.id].get("audited_changes", b"B"))
        utf8 = len(raw) + 2 * raw.count(b"\x80")
        assert row.audited_changes == OmittedChanges(utf8, 10), row.id


def test_python_and_postgresql_agree_on_the_bytes_that_are_no_character(crm_dsn: str) -> None:
    """``_untranslatable_bytes`` (Python's codecs) against PostgreSQL's own conversion of each byte
    0x80-0xff to UTF-8, for every single-byte encoding: the bytes a value's UTF-8 size leaves out of
    ``convert_to`` must be exactly those it fails on."""
    with psycopg.connect(crm_dsn) as conn:
        conn.execute(
            "CREATE FUNCTION pg_temp.untranslatable(encoding text) RETURNS int[] LANGUAGE plpgsql AS $$"
            " DECLARE found int[] := '{}'; BEGIN FOR b IN 128..255 LOOP BEGIN"
            " PERFORM convert_from(decode(to_hex(b), 'hex'), encoding);"
            " EXCEPTION WHEN untranslatable_character THEN found := found || b; END; END LOOP;"
            " RETURN found; END $$"
        )
        found: dict[str, tuple[int, ...]] = {}
        for encoding in sorted(_SINGLE_BYTE_ENCODINGS):
            (untranslatable,) = conn.execute("SELECT pg_temp.untranslatable(%s)", (encoding,)).fetchall()
            found[encoding] = tuple(untranslatable[0])
    assert found == {encoding: _untranslatable_bytes(encoding) for encoding in found}
    assert found["WIN1252"] == (0x81, 0x8D, 0x8F, 0x90, 0x9D)
    assert found["LATIN1"] == ()


def _problems(rows: list[AuditRow]) -> dict[int, Failed]:
    transformer = Transformer(load_default_config())
    found: dict[int, Failed] = {}
    for prepared in transformer.prepare(rows):
        if prepared.problem is not None:
            found[prepared.row.id] = prepared.problem
    return found


@pytest.mark.parametrize("tenant", list(TYPES))
def test_each_such_row_fails_alone_saying_why_without_its_value(win1252_dsn: str, tenant: str) -> None:
    """``bad_encoding`` for ``audited_changes``; ``invalid_audit_row`` naming the column and the byte,
    never the value, for the others; rows 1 and 8 load."""
    with ReadOnlySession.from_dsn(win1252_dsn) as session:
        rows = list(PostgresAuditSource(session).page(tenant, SCOPE, after_id=0, cutoff=CUTOFF, limit=50))
    problems = _problems(rows)
    assert sorted(problems) == [2, 3, 4, 5, 6, 7]
    changes = problems[2]
    assert changes.reason == "malformed_audited_changes"
    assert changes.detail.startswith("bad_encoding: ")
    assert "0x81" in changes.detail
    assert "WIN1252" in changes.detail
    for audit_id in (3, 4, 5, 6, 7):
        failed = problems[audit_id]
        (column,) = ROWS[audit_id]
        assert failed.reason == "invalid_audit_row"
        assert failed.detail.startswith(f"{column} is not text: "), failed.detail
        assert "byte sequence 0x81 in encoding WIN1252" in failed.detail
        assert "x81b" not in failed.detail


def test_a_lookups_untranslatable_text_halts_typed_without_the_value(win1252_dsn: str) -> None:
    """A user's email or full name, or a deal's name, holding 0x81: the lookup is
    ``UntranslatableCharacter``, a ``SourceQueryFailed`` 22P05 (exit 7, the cursor kept), naming the
    table and encoding, its message without the bytes and not saying the database refused a query
    (it decoded them here: the server's log has nothing); other ids of the same tenant are still
    answered. Each raised ``UnicodeDecodeError`` before, quoting them; then a ``SourceQueryFailed``
    saying the database refused the query and its log had the statement."""
    schema = "lookups"
    with psycopg.connect(win1252_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {schema}.users"
            " (id bigint PRIMARY KEY, email text, full_name text, deleted_at timestamp)"
        )
        conn.execute(f"CREATE TABLE IF NOT EXISTS {schema}.crm_deals (id bigint PRIMARY KEY, name text)")
        conn.execute(f"TRUNCATE {schema}.users, {schema}.crm_deals")
        conn.execute(
            f"INSERT INTO {schema}.users VALUES (1, 'ok@example.com', 'Ok', NULL),"
            " (2, convert_from(%s, 'WIN1252'), 'Two', NULL),"
            " (3, 'three@example.com', convert_from(%s, 'WIN1252'), NULL)",
            [BAD + b"@example.com", BAD],
        )
        conn.execute(
            f"INSERT INTO {schema}.crm_deals VALUES (1, 'Deal'), (2, convert_from(%s, 'WIN1252'))", [BAD]
        )
    with ReadOnlySession.from_dsn(win1252_dsn) as session:
        users = PostgresUserDirectory(session)
        deals = PostgresEntityDirectory(session)
        assert users.users_by_ids(schema, [1]) == {1: CrmUser(1, "ok@example.com", "Ok", None)}
        assert deals.entities_by_ids(schema, "Crm::Deal", [1])[1].name == "Deal"
        refusals = []
        for ask in (
            lambda: users.users_by_ids(schema, [1, 2]),
            lambda: users.users_by_ids(schema, [3]),
            lambda: deals.entities_by_ids(schema, "Crm::Deal", [1, 2]),
        ):
            with pytest.raises(SourceQueryFailed) as refused:
                ask()
            refusals.append(refused.value)
        assert users.users_by_ids(schema, [1]) == {1: CrmUser(1, "ok@example.com", "Ok", None)}
    assert [(r.table, r.encoding) for r in refusals if isinstance(r, UntranslatableCharacter)] == [
        ("users", "WIN1252"),
        ("users", "WIN1252"),
        ("crm_deals", "WIN1252"),
    ]
    for refusal in refusals:
        assert "refused" not in str(refusal)
        assert "log" not in str(refusal)
        assert refusal.sqlstate == "22P05"
        assert refusal.code == "BAD_INPUT"
        assert "untranslatable character" in str(refusal)
        assert "x81" not in str(refusal)
        assert refusal.__cause__ is None
