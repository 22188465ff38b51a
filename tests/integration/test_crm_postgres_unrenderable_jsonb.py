"""A jsonb ``audited_changes`` whose text passes 1 GiB is omitted, not a halt of its page.

jsonb stores a value in far fewer bytes than its text can take: a numeric ``1e131071`` is a few
bytes stored and 131,072 digits rendered, so 8,200 of them are 2 KB on disk and 1,074,806,807 bytes
of text. The audit queries measured each value by rendering it (``octet_length(value::text)``),
which PostgreSQL cannot do past 1 GiB: the page failed with 54000 (``SourceQueryFailed``) on every
run, the whole job halted for one row. Now such a query is built once more measuring each jsonb
value by its parts, without rendering it, and that value comes as its size (``OmittedChanges``):
the row fails alone, ``LimitExceeded``, as any value past the limit does.

Each query that meets the value renders a GiB on the server before it fails (~5 s): the module
builds its tables once (the huge value parsed from its text, not aggregated from numerics each
rendered) and meets it in seven queries, one for each shape (a page, a walk's page, the page ids, a
read by id, a span, the sample's page, a page that must not measure it).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from crm_audit_adapters.crm_postgres import PostgresAuditSource, ReadOnlySession
from crm_audit_adapters.crm_postgres.throwaway import create_database, drop_database
from crm_audit_transform.errors import LimitExceeded
from crm_audit_transform.loading import JsonbText, LoaderLimits, OmittedChanges, load_audited_changes
from crm_audit_transform.ports import AuditSource
from crm_audit_transform.usecases.pages import PageSpan
from support.postgres import unique_database_name

pytestmark = pytest.mark.postgres

SCOPE = ("Crm::Person",)
CUTOFF = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
LIMIT = 1000
"""``max_changes_bytes`` here: the tricky values on either side of it."""
HUGE_NUMBERS = 8200
HUGE_ID = 100
HUGE_TEXT_BYTES = len('{"n": []}') + HUGE_NUMBERS * 131_072 + (HUGE_NUMBERS - 1) * len(", ")
"""``{"n": [1000…0, 1000…0, …]}``: each ``1e131071`` rendered as a 1 and 131,071 zeros."""
TRICKY = [
    {"a": 1},
    {},
    [],
    "a root string",
    12,
    None,
    {'k\n"q\\': "\u0001\t\u001f é €😀 \b\f\r/<>", "n": [1e40, -0.000001, 1.5, 12345678901234567890]},
    {"a": {"b": {"c": [[[[False, True]]]], "": ""}}, "e": [{}, [], "", 0]},
    {"notes": "\u0002" * 200},  # 1,200 bytes escaped: over the limit, 200 characters
    {"notes": "x" * (LIMIT - len('{"notes": ""}'))},  # exactly at the limit
    {"notes": "y" * (LIMIT - len('{"notes": ""}') + 1)},  # one byte over
    {"ключ\u0007": ["é" * 400, {"\\": '"' * 100}]},  # over by bytes and escapes
]
"""Values whose text (jsonb's, with its spacing, escapes and numbers) the unrendered measure must
count exactly as ``octet_length(value::text)`` does: rows 1–12, before the huge one."""


@pytest.fixture(scope="module")
def huge_dsn(pg_server: str) -> Iterator[str]:
    name = unique_database_name("unrenderable")
    dsn = create_database(pg_server, name)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                "CREATE SCHEMA acme; CREATE TABLE acme.audits (id bigint PRIMARY KEY,"
                " auditable_id integer, auditable_type varchar, associated_id integer,"
                " associated_type varchar, user_id integer, user_type varchar, username varchar,"
                " action varchar, audited_changes jsonb, version integer, comment varchar,"
                " remote_address varchar, request_uuid varchar, created_at timestamp)"
            )
            insert = (
                "INSERT INTO acme.audits (id, auditable_id, auditable_type, action, audited_changes,"
                " created_at) VALUES (%s, 7, 'Crm::Person', 'update', %s::jsonb, '2021-01-01')"
            )
            for audit_id, value in enumerate(TRICKY, start=1):
                conn.execute(insert, (audit_id, json.dumps(value, ensure_ascii=False)))
            # Parsed from its 82 KB of input text: jsonb_agg of the numerics rendered each one (131,072
            # digits) to build it, a GiB of text, about 8 s of the module's set-up.
            conn.execute(insert, (HUGE_ID, '{"n": [' + ", ".join(["1e131071"] * HUGE_NUMBERS) + "]}"))
            conn.execute(insert, (HUGE_ID + 1, '{"after": true}'))
            _sample(conn)
            _wide(conn)
        yield dsn
    finally:
        drop_database(pg_server, name)


def rendered_sizes(dsn: str) -> dict[int, int]:
    """Each row's ``octet_length(audited_changes::text)``, the huge one's from its known shape."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT id, octet_length(audited_changes::text) FROM acme.audits WHERE id <> %s", (HUGE_ID,)
        ).fetchall()
    return {**dict(rows), HUGE_ID: HUGE_TEXT_BYTES}


def pages(source: AuditSource, limit: int) -> list[list[int]]:
    found: list[list[int]] = []
    after = 0
    while rows := source.page("acme", SCOPE, after_id=after, cutoff=CUTOFF, limit=limit):
        found.append([row.id for row in rows])
        after = rows[-1].id
    return found


def budgeted(sizes: dict[int, int], limit: int, budget: int) -> list[list[int]]:
    """The pages the budget rule makes of rows of these text sizes: up to ``limit`` rows, ended after
    the row that brings the text to ``budget``."""
    ids, found = sorted(sizes), []
    while ids:
        page: list[int] = []
        before = 0
        for audit_id in ids[:limit]:
            if page and before >= budget:
                break
            page.append(audit_id)
            before += sizes[audit_id]
        found.append(page)
        ids = ids[len(page) :]
    return found


class TestUnrenderableJsonb:
    def test_the_value_comes_as_its_size_and_every_other_row_as_it_was(self, huge_dsn: str) -> None:
        """One page over every row: the huge value is omitted with its exact size (the 54000 before);
        each tricky value, measured in the same query without being rendered, is omitted with the
        size its render has, or fetched whole at or under the limit."""
        sizes = rendered_sizes(huge_dsn)
        with ReadOnlySession.from_dsn(huge_dsn) as session:
            source = PostgresAuditSource(session, max_changes_bytes=LIMIT, page_bytes=1 << 30)
            rows = source.page("acme", SCOPE, after_id=0, cutoff=CUTOFF, limit=50)
        # The huge value passes even this budget: the page ends after it.
        assert [row.id for row in rows] == [*range(1, len(TRICKY) + 1), HUGE_ID]
        for row in rows:
            if sizes[row.id] > LIMIT:
                assert row.audited_changes == OmittedChanges(sizes[row.id], LIMIT), row.id
            else:
                assert isinstance(row.audited_changes, JsonbText), row.id
                assert len(row.audited_changes.text.encode()) == sizes[row.id]
        omitted = [row.id for row in rows if isinstance(row.audited_changes, OmittedChanges)]
        assert omitted == [9, 11, 12, HUGE_ID]

    def test_pages_are_cut_by_the_rendered_sizes(self, huge_dsn: str) -> None:
        """The byte budget counts each value as its render would, in the queries that cannot render
        one of them: the page ids and the pages are the ones the render's sizes make. Pages of 3 rows:
        only the page after row 11 has the huge value among its candidates, so the walk meets 54000
        (a GiB rendered first) once, the page ids once."""
        expected = budgeted(rendered_sizes(huge_dsn), 3, 1100)
        assert expected[-3:] == [[10, 11], [12, HUGE_ID], [HUGE_ID + 1]]
        with ReadOnlySession.from_dsn(huge_dsn) as session:
            source = PostgresAuditSource(session, max_changes_bytes=LIMIT, page_bytes=1100)
            assert pages(source, 3) == expected
            ids = source.page_ids("acme", SCOPE, after_id=expected[-3][-1], cutoff=CUTOFF, limit=3)
        assert ids == [12, HUGE_ID]

    def test_every_read_by_id_omits_it(self, huge_dsn: str) -> None:
        """The page pool's span and explain's read by id: the same size, which the loader refuses.
        The largest limit (1 GiB, the loader's largest ``max_bytes``) omits it too, naming the most
        PostgreSQL can send as the limit: its text could not be sent at all."""
        with ReadOnlySession.from_dsn(huge_dsn) as session:
            by_id = PostgresAuditSource(session).audit_by_id("acme", HUGE_ID)  # 32 MiB, the default
            span = PostgresAuditSource(session, max_changes_bytes=1 << 30).span_rows(
                PageSpan("acme", SCOPE, CUTOFF, (1, HUGE_ID, HUGE_ID + 1))
            )
        found: list[Any] = [by_id, *span]
        assert [row.id for row in found] == [HUGE_ID, 1, HUGE_ID, HUGE_ID + 1]
        assert found[0].audited_changes == OmittedChanges(HUGE_TEXT_BYTES, 32 << 20)
        # 1 GiB less 1 MiB and the largest comment read: the most text a value may take to be sent
        # with its row
        assert found[2].audited_changes == OmittedChanges(HUGE_TEXT_BYTES, (1 << 30) - (1 << 20) - (64 << 20))
        assert found[1].audited_changes == JsonbText('{"a": 1}')
        with pytest.raises(LimitExceeded) as refused:
            load_audited_changes(found[0].audited_changes, LoaderLimits())
        assert (refused.value.maximum, refused.value.actual) == (32 << 20, HUGE_TEXT_BYTES)


DEEP_LEVELS = 12_000
"""Arrays in arrays: jsonb's parser takes up to about 14,500 levels (max_stack_depth 2MB), jsonpath's
``strict $.**`` walked about 10,000 before it failed with 54001 (stack depth limit exceeded)."""
DEEP = "[" * DEEP_LEVELS + '{"deep": true}' + "]" * DEEP_LEVELS
DEEP_ID = 0
"""The deep value's row in ``sample``, before the others (ids 1-99)."""


def _sample(conn: psycopg.Connection) -> None:
    """``sample``: the deep value (``DEEP_ID``), values built on the server (every control character,
    each alone in a key and a value, numbers of every scale; ids 1-99), and the huge one: read in one
    page, which meets 54000 once."""
    conn.execute(
        sql.SQL(
            "CREATE SCHEMA sample; CREATE TABLE sample.audits (LIKE acme.audits INCLUDING ALL);"
            " INSERT INTO sample.audits SELECT * FROM acme.audits WHERE id = {};"
            " INSERT INTO sample.audits (id, auditable_id, auditable_type, action, audited_changes,"
            " created_at) SELECT c, 7, 'Crm::Person', 'update', jsonb_build_object(chr(c) || 'k',"
            " jsonb_build_array(repeat(chr(c), 90), c * 1e-20, c * 1e25, -c, c::numeric / 7, c % 2 = 0,"
            " NULL, jsonb_build_object(), jsonb_build_array())), '2021-01-01'"
            " FROM generate_series(1, 99) AS c"
        ).format(sql.Literal(HUGE_ID))
    )
    conn.execute(
        "INSERT INTO sample.audits (id, auditable_id, auditable_type, action, audited_changes,"
        " created_at) VALUES (%s, 7, 'Crm::Person', 'update', %s::jsonb, '2021-01-01')",
        (DEEP_ID, DEEP),
    )


@pytest.fixture(scope="module")
def sample_page(huge_dsn: str) -> dict[int, Any]:
    """``sample``'s rows read in one page under a limit of 1 byte: every value measured unrendered
    (the huge one is among them) and omitted with that size, by id."""
    with ReadOnlySession.from_dsn(huge_dsn) as session:
        rows = PostgresAuditSource(session, max_changes_bytes=1, page_bytes=1 << 30).page(
            "sample", SCOPE, after_id=DEEP_ID - 1, cutoff=CUTOFF, limit=200
        )
    return {row.id: row.audited_changes for row in rows}


def _wide(conn: psycopg.Connection) -> None:
    """``wide``: eight values of 1.1 MB of hex digits (stored as they are), then the huge one."""
    conn.execute(
        sql.SQL(
            "CREATE SCHEMA wide; CREATE TABLE wide.audits (LIKE acme.audits INCLUDING ALL);"
            " INSERT INTO wide.audits SELECT * FROM acme.audits WHERE id = {};"
            " INSERT INTO wide.audits (id, auditable_id, auditable_type, action, audited_changes,"
            " created_at) SELECT i, 7, 'Crm::Person', 'update', jsonb_build_object('picture',"
            " (SELECT string_agg(md5(random()::text || j), '')"
            " FROM generate_series(1, 36000 + 0 * i) AS j)),"
            " '2021-01-01' FROM generate_series(1, 8) AS i"
        ).format(sql.Literal(HUGE_ID))
    )


def test_the_unrendered_measure_is_the_render_over_a_sql_sample(
    huge_dsn: str, sample_page: dict[int, Any]
) -> None:
    """Values built on the server (every control character, each alone in a key and a value, numbers
    of every scale): measured unrendered, in a page with the huge value, at their render's size."""
    with psycopg.connect(huge_dsn) as conn:
        sizes = dict(
            conn.execute(
                "SELECT id, octet_length(audited_changes::text) FROM sample.audits WHERE id BETWEEN 1 AND 99"
            ).fetchall()
        )
    measured = dict(sample_page)
    assert measured.pop(HUGE_ID) == OmittedChanges(HUGE_TEXT_BYTES, 1)
    measured.pop(DEEP_ID)
    assert measured == {audit_id: OmittedChanges(size, 1) for audit_id, size in sizes.items()}


def test_a_value_nested_past_what_a_path_walk_takes_is_measured_too(sample_page: dict[int, Any]) -> None:
    """A value 12,000 levels deep in a page with the huge one: the measure by parts (after the render
    met 54000) walked each value by jsonpath, which recursed a level at a time and failed with 54001,
    the page halted on every run again. Both are measured: the deep value at its render's size (so a
    limit of exactly that size fetches it), refused by the loader for its depth, its row alone; the
    huge one omitted."""
    assert sample_page[DEEP_ID] == OmittedChanges(len(DEEP), 1)  # its render's size: its text
    assert sample_page[HUGE_ID] == OmittedChanges(HUGE_TEXT_BYTES, 1)
    with pytest.raises(LimitExceeded, match="depth"):
        load_audited_changes(JsonbText(DEEP), LoaderLimits())


class CountingSession(ReadOnlySession):
    """Counts the queries built once more after a 54000 (``run_checked``'s ``on_limit``)."""

    rebuilt = 0

    def run_checked(self, tenant: str, prepare: Any, *, on_limit: Any = None) -> Any:
        def counted() -> Any:
            self.rebuilt += 1
            return on_limit()

        return super().run_checked(tenant, prepare, on_limit=None if on_limit is None else counted)


def test_rows_past_what_a_page_could_hold_are_not_measured(huge_dsn: str) -> None:
    """Eight values of 1.1 MB of hex digits (stored as they are) before the huge one, a budget of
    1 MiB: their stored sizes alone (over 8, a bound of their text) reach the budget before the huge
    value, which the page query then never renders — no 54000, no second query. It rendered every
    one of its candidates before."""
    with CountingSession.from_dsn(huge_dsn) as session:
        source = PostgresAuditSource(session, page_bytes=1 << 20)
        assert [row.id for row in source.page("wide", SCOPE, after_id=0, cutoff=CUTOFF, limit=50)] == [1]
        assert source.page_ids("wide", SCOPE, after_id=0, cutoff=CUTOFF, limit=50) == [1]
        assert session.rebuilt == 0
        # After row 7, one row's bound (~140 KB) no longer reaches the budget: the huge value is
        # measured, fails the render, and the query is built once more (its page still ends at 8).
        rows = source.page("wide", SCOPE, after_id=7, cutoff=CUTOFF, limit=50)
        assert [row.id for row in rows] == [8]
        assert session.rebuilt == 1
