"""Text columns besides ``audited_changes`` are read up to a limit, and a row past it gets the outcome
its rules would give it: ``comment``, ``request_uuid`` and a system row's ``username`` fail it as
``invalid_audit_row``; a long ``remote_address`` (or a user's ``username``) is left out; a long
``action``, ``auditable_type``, ``associated_type`` or ``user_type`` matches no name of the mapping.

Each column was fetched whole: a 1 GB ``comment`` peaked the reading process at 2,902 MiB, and
beside a 20 MB ``audited_changes`` its page failed with 54000 on every run (a row past what
PostgreSQL can send). Those sizes are too slow to build here; the values below pass their limits
by a few bytes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from crm_audit_adapters.crm_postgres import PostgresAuditSource, PostgresUserDirectory, ReadOnlySession
from crm_audit_adapters.crm_postgres.text_columns import MAX_FIELD_BYTES, NotRead, stand_in_name
from crm_audit_transform.config import load_default_config
from crm_audit_transform.domain import ActivityLog, AuditRow, Failed, Migrated, Outcome, Skipped
from crm_audit_transform.jobs import COMPLETED
from crm_audit_transform.transformer import Transformer
from crm_audit_transform.usecases import RunSettings
from crm_audit_transform.usecases.pages import PageSpan
from support.corpus_account import World
from support.postgres import create_audits, throwaway_database

pytestmark = pytest.mark.postgres

SCOPE = ("Crm::Person",)
CUTOFF = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
LIMIT = 1000
"""``max_changes_bytes`` here, so ``comment``'s limit too."""
OVER = MAX_FIELD_BYTES + 1
EURO = "\u20ac" * (MAX_FIELD_BYTES // 3)  # 3 bytes a character: 4,095 bytes, under the limit
# id → the columns set beside a valid update of person 7 (each over its limit by a byte, or at it).
ROWS: dict[int, dict[str, Any]] = {
    1: {},
    2: {"comment": "c" * (LIMIT + 1)},
    3: {"comment": "c" * LIMIT},
    4: {"request_uuid": "r" * OVER},
    5: {"username": "u" * OVER},
    6: {"username": "u" * OVER, "user_id": 42, "user_type": "User"},
    7: {"remote_address": "a" * OVER},
    8: {"action": "x" * OVER},
    9: {"associated_type": "t" * OVER, "user_type": "t" * OVER, "user_id": 42},
    10: {"username": EURO + "\u20ac", "user_id": 42, "user_type": "User"},  # 1,366 characters, 4,098 bytes
    11: {"username": EURO, "remote_address": "a" * MAX_FIELD_BYTES},
    12: {"auditable_type": "Crm::" + "T" * MAX_FIELD_BYTES},  # read by id only: the pages' scope
}
CHANGES = "---\nfirst_name:\n- A\n- B\n"


@pytest.fixture(scope="module")
def long_dsn(pg_server: str) -> Iterator[str]:
    """``long``: audited's table; ``typed``: the same rows with ``request_uuid uuid`` and
    ``remote_address inet``, types of their own size, read as they are."""
    with throwaway_database(pg_server, "longtext") as dsn:
        with psycopg.connect(dsn, autocommit=True) as conn:
            create_audits(conn, "long")
            for audit_id, columns in ROWS.items():
                values = {
                    "id": audit_id,
                    "auditable_id": 7,
                    "auditable_type": "Crm::Person",
                    "action": "update",
                    "audited_changes": CHANGES,
                    "created_at": dt.datetime(2021, 1, 1),
                    **columns,
                }
                conn.execute(
                    sql.SQL("INSERT INTO long.audits ({}) VALUES ({})").format(
                        sql.SQL(", ").join(map(sql.Identifier, values)),
                        sql.SQL(", ").join(sql.Placeholder() * len(values)),
                    ),
                    list(values.values()),
                )
            conn.execute(
                "CREATE SCHEMA typed; CREATE TABLE typed.audits (LIKE long.audits INCLUDING ALL);"
                " ALTER TABLE typed.audits ALTER request_uuid TYPE uuid USING NULL,"
                " ALTER remote_address TYPE inet USING NULL;"
                " INSERT INTO typed.audits SELECT id, auditable_id, auditable_type, associated_id,"
                " associated_type, user_id, user_type, username, action, audited_changes, version, comment,"
                " '10.0.0.1', '9a3a5e4e-5b0c-4f4e-8f5e-1b2c3d4e5f60', created_at FROM long.audits"
            )
        yield dsn


def expected(audit_id: int, column: str) -> Any:
    """What a row read from ``long`` carries in ``column``."""
    value = ROWS[audit_id].get(column)
    if value is None:
        return "Crm::Person" if column == "auditable_type" else "update" if column == "action" else None
    size = len(value.encode())
    limit = LIMIT if column == "comment" else MAX_FIELD_BYTES
    if size <= limit:
        return value
    if column in ("auditable_type", "action", "associated_type", "user_type"):
        return stand_in_name(size)
    if column == "remote_address" or (column == "username" and ROWS[audit_id].get("user_id") is not None):
        return None
    return NotRead(column, size, limit)


COLUMNS = (
    "auditable_type", "action", "associated_type", "user_type", "username", "comment", "remote_address",
    "request_uuid",
)  # fmt: skip


class TestTheSource:
    def test_pages_spans_and_reads_by_id_carry_what_the_rules_make_of_each_value(self, long_dsn: str) -> None:
        with ReadOnlySession.from_dsn(long_dsn) as session:
            source = PostgresAuditSource(session, max_changes_bytes=LIMIT)
            page = source.page("long", SCOPE, after_id=0, cutoff=CUTOFF, limit=50)
            span = source.span_rows(PageSpan("long", SCOPE, CUTOFF, tuple(range(1, 12))))
            by_id = [source.audit_by_id("long", audit_id) for audit_id in ROWS]
        assert [row.id for row in page] == list(range(1, 12))
        assert span == page
        assert by_id[:11] == list(page)
        for row in by_id:
            assert row is not None
            found = {column: getattr(row, column) for column in COLUMNS}
            assert found == {column: expected(row.id, column) for column in COLUMNS}, row.id
            assert row.audited_changes == CHANGES

    def test_columns_of_other_types_are_read_as_they_are(self, long_dsn: str) -> None:
        with ReadOnlySession.from_dsn(long_dsn) as session:
            rows = PostgresAuditSource(session, max_changes_bytes=LIMIT).page(
                "typed", SCOPE, after_id=0, cutoff=CUTOFF, limit=50
            )
        assert [row.id for row in rows] == list(range(1, 12))
        assert {(str(row.request_uuid), str(row.remote_address)) for row in rows} == {
            ("9a3a5e4e-5b0c-4f4e-8f5e-1b2c3d4e5f60", "10.0.0.1")
        }
        assert rows[1].comment == NotRead("comment", LIMIT + 1, LIMIT)

    def test_a_row_not_read_fails_alone_naming_the_column(self, long_dsn: str) -> None:
        with ReadOnlySession.from_dsn(long_dsn) as session:
            rows = PostgresAuditSource(session, max_changes_bytes=LIMIT).page(
                "long", SCOPE, after_id=0, cutoff=CUTOFF, limit=50
            )
        prepared = {p.row.id: p.problem for p in Transformer(load_default_config()).prepare(rows)}
        failed = {audit_id: problem for audit_id, problem in prepared.items() if problem is not None}
        assert sorted(failed) == [2, 4, 5]
        assert {problem.reason for problem in failed.values()} == {"invalid_audit_row"}
        assert failed[2].detail == f"comment was not read: {LIMIT + 1} bytes, over its limit of {LIMIT} bytes"
        assert "request_uuid" in failed[4].detail
        assert "username" in failed[5].detail
        assert "uuu" not in failed[5].detail


def _outcomes(dsn: str) -> dict[int, Outcome]:
    with ReadOnlySession.from_dsn(dsn) as session:
        world = World("acme")
        world.source = PostgresAuditSource(session)  # type: ignore[assignment]
        world.users = PostgresUserDirectory(session)  # type: ignore[assignment]
        world.trigger()
        found: dict[int, Outcome] = {}
        result = world.run(
            settings=RunSettings(page_size=200, halt_threshold=1.0),
            on_outcomes=lambda outcomes: found.update((o.audit_id, o) for o in outcomes),
        )
        assert result.job.status == COMPLETED
    return found


def _row(dsn: str, audit_id: int) -> AuditRow:
    with ReadOnlySession.from_dsn(dsn) as session:
        row = PostgresAuditSource(session).audit_by_id("acme", audit_id)
    assert row is not None
    return row


def test_a_run_gives_each_long_value_the_outcome_of_its_rules(scratch_database: Callable[..., str]) -> None:
    """The corpus with long values on rows that migrate: the run completes; a long ``remote_address``
    or a user's ``username`` leaves the log as it was; a long ``comment`` (past 32 MiB, the default)
    or ``request_uuid`` fails its row; a long ``action`` is unmapped; a long ``user_type`` is a user
    of another class (the deleted user stands in); every other row is as before."""
    dsn = scratch_database(corpus=True)
    before = _outcomes(dsn)
    # Rows whose log names a CRM user: a long user_type makes it a user of another class.
    by_user = sorted(
        audit_id
        for audit_id, outcome in before.items()
        if isinstance(outcome, Migrated)
        and isinstance(outcome.log, ActivityLog)
        and outcome.log.actor.kind == "user"
    )
    kept, comment, uuid, action, user_type = by_user[:5]
    assert _row(dsn, kept).user_id is not None
    with psycopg.connect(dsn, autocommit=True) as conn:
        set_long = "UPDATE acme.audits SET {} = repeat('x', %s) WHERE id = %s"
        for column, audit_id, size in (
            ("remote_address", kept, OVER),
            ("username", kept, OVER),
            ("comment", comment, (32 << 20) + 1),
            ("request_uuid", uuid, OVER),
            ("action", action, OVER),
            ("user_type", user_type, OVER),
        ):
            conn.execute(sql.SQL(set_long).format(sql.Identifier(column)), (size, audit_id))
    after = _outcomes(dsn)
    # By repr: a log holding a NaN (BigDecimal's, in the corpus) never equals itself.
    changed = {audit_id for audit_id in before if repr(after[audit_id]) != repr(before[audit_id])}
    assert changed == {comment, uuid, action, user_type}
    assert isinstance(after[comment], Failed)
    assert after[comment].reason == "invalid_audit_row"
    assert "comment" in after[comment].detail
    assert isinstance(after[uuid], Failed)
    assert after[uuid].reason == "invalid_audit_row"
    assert isinstance(after[action], Skipped)
    assert after[action].reason == "unmapped_action_type"
    assert stand_in_name(OVER) in after[action].detail
    moved = after[user_type]
    assert isinstance(moved, Migrated)
    assert isinstance(moved.log, ActivityLog)
    assert moved.log.actor.kind == "deleted_user"
