"""A query error no retry can change is ``SourceQueryFailed`` (``BAD_INPUT``, exit 7), not an outage.

Before, every driver error but a dropped connection and a missing grant was ``SOURCE_UNAVAILABLE``
(exit 6), which Celery retries for up to an hour: a data exception or an undefined column fails the
same way each time. The message names the SQLSTATE and its class, never the server's text (which
quotes the value). Errors that may pass (a timeout, a read-only transaction's refusal) are unchanged.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator

import psycopg
import pytest
from psycopg import errors as pg_errors

from crm_audit_adapters.celery.tasks import _RETRYING
from crm_audit_adapters.cli.exit_codes import BAD_INPUT, REFUSED, error_code, exit_code_for
from crm_audit_adapters.crm_postgres import (
    PostgresAuditSource,
    PostgresConnectionFactory,
    ReadOnlySession,
    RetryPolicy,
)
from crm_audit_transform.errors import SourceQueryFailed, SourceUnavailable, UnknownTenant
from support.postgres import create_audits, throwaway_database

pytestmark = pytest.mark.postgres

SECRET = "s3cret-in-a-row"
SCOPE = ("Crm::Person",)
CUTOFF = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
FAILING = [
    (f"SELECT '{SECRET}'::integer", "22P02", "class 22: data exception"),
    ("SELECT 1 / (SELECT count(*) FROM pg_class WHERE relname = 'none')::int", "22012", "class 22"),
    ("SELECT no_such_column FROM pg_class", "42703", "class 42: syntax error or access rule violation"),
    (f'SELECT * FROM "{SECRET}"', "42P01", "class 42"),
    ("SELECT array_fill(1, ARRAY[400000000])", "54000", "class 54: program limit exceeded"),
]


@pytest.fixture(scope="module")
def errors_dsn(pg_server: str) -> Iterator[str]:
    with throwaway_database(pg_server, "queryerrors") as dsn:
        with psycopg.connect(dsn, autocommit=True) as conn:
            create_audits(conn, "acme")
            conn.execute(
                "INSERT INTO acme.audits (id, auditable_id, auditable_type, action, audited_changes,"
                " created_at) VALUES (1, 7, 'Crm::Person', 'update', '--- {}', '2021-01-01')"
            )
        yield dsn


def session_of(dsn: str, waits: list[float], **options: int) -> ReadOnlySession:
    """A session of three attempts whose waits between them are recorded, never slept."""
    factory = PostgresConnectionFactory(dsn)
    return ReadOnlySession(factory, retry=RetryPolicy(attempts=3), sleep=waits.append, **options)


@pytest.mark.parametrize(("query", "sqlstate", "said"), FAILING)
def test_an_error_no_retry_changes_is_raised_at_once_typed(
    errors_dsn: str, query: str, sqlstate: str, said: str
) -> None:
    waits: list[float] = []
    with session_of(errors_dsn, waits) as session, pytest.raises(SourceQueryFailed) as failed:
        session.run(lambda conn: conn.execute(query).fetchall())
    assert waits == []  # not retried
    assert failed.value.sqlstate == sqlstate
    assert f"SQLSTATE {sqlstate} ({said}" in str(failed.value)
    assert SECRET not in str(failed.value)
    assert not isinstance(failed.value, SourceUnavailable)
    assert isinstance(failed.value.__cause__, psycopg.Error)
    assert failed.value.__cause__.sqlstate == sqlstate


def test_a_page_whose_column_went_away_under_the_run_is_refused_by_the_checks(errors_dsn: str) -> None:
    """The table checked at the run's start, a column dropped since: the page's 42703 runs the
    table's checks again, which refuse it as they refuse such a table at the start (``UnknownTenant``,
    exit 4, never retried by Celery), not as a query error."""
    with psycopg.connect(errors_dsn, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA shrunk; CREATE TABLE shrunk.audits (LIKE acme.audits INCLUDING ALL)")
        conn.execute("INSERT INTO shrunk.audits SELECT * FROM acme.audits")
    waits: list[float] = []
    with session_of(errors_dsn, waits) as session:
        source = PostgresAuditSource(session)
        assert len(source.page("shrunk", SCOPE, after_id=0, cutoff=CUTOFF, limit=10)) == 1
        with psycopg.connect(errors_dsn, autocommit=True) as conn:
            conn.execute("ALTER TABLE shrunk.audits DROP COLUMN remote_address")
        with pytest.raises(UnknownTenant, match="has no column remote_address") as failed:
            source.page("shrunk", SCOPE, after_id=0, cutoff=CUTOFF, limit=10)
    assert waits == []
    assert (error_code(failed.value), exit_code_for(failed.value)) == ("UNKNOWN_TENANT", REFUSED)
    assert not isinstance(failed.value, _RETRYING["autoretry_for"])  # type: ignore[arg-type]  # Celery: fails at once


def deployed_schema(dsn: str, name: str) -> None:
    """A tenant ``name`` whose one in-scope row holds JSON text (so the column can become jsonb)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}; CREATE TABLE {name}.audits (LIKE acme.audits INCLUDING ALL)")
        conn.execute(
            f"INSERT INTO {name}.audits (id, auditable_id, auditable_type, action, audited_changes,"
            " created_at) VALUES (1, 7, 'Crm::Person', 'update', '{\"name\": [\"a\", \"b\"]}', '2021-01-01')"
        )


def test_audited_changes_retyped_to_jsonb_mid_run_is_read_on_the_next_page(errors_dsn: str) -> None:
    """A deploy's ``ALTER COLUMN audited_changes TYPE jsonb`` after 8 pages: the session had kept the
    column's type (text) and measured it with ``octet_length``, which jsonb has not (42883) on every
    later call. The tenant's checks run again, the query is rebuilt for jsonb, and the page reads.
    Before: ``SourceQueryFailed`` (42883) on that page and every later one of the session."""
    deployed_schema(errors_dsn, "retyped")
    waits: list[float] = []
    with session_of(errors_dsn, waits) as session:
        source = PostgresAuditSource(session)
        for _ in range(8):
            assert [row.id for row in source.page("retyped", SCOPE, after_id=0, cutoff=CUTOFF, limit=10)] == [
                1
            ]
        assert session.audit_changes_type("retyped") == "text"
        with psycopg.connect(errors_dsn, autocommit=True) as conn:
            conn.execute(
                "ALTER TABLE retyped.audits ALTER COLUMN audited_changes TYPE jsonb"
                " USING audited_changes::jsonb"
            )
        pages = [source.page("retyped", SCOPE, after_id=0, cutoff=CUTOFF, limit=10) for _ in range(2)]
        assert session.audit_changes_type("retyped") == "jsonb"
        row = source.audit_by_id("retyped", 1)
    assert [[row.id for row in page] for page in pages] == [[1], [1]]
    assert row is not None
    assert waits == []  # the prepared page is planned again and meets 42883 first: no 0A000, no wait


def test_audits_renamed_mid_run_is_the_checks_unknown_tenant(errors_dsn: str) -> None:
    """A deploy's ``ALTER TABLE audits RENAME TO audits_old`` after 8 pages: the page's 42P01 runs the
    checks again, which find no audits table: ``UnknownTenant`` ("the schema has no table 'audits'",
    UNKNOWN_TENANT, exit 4), as a run started then would be told. Before: ``SourceQueryFailed`` (42P01)."""
    deployed_schema(errors_dsn, "renamed")
    waits: list[float] = []
    with session_of(errors_dsn, waits) as session:
        source = PostgresAuditSource(session)
        for _ in range(8):
            assert len(source.page("renamed", SCOPE, after_id=0, cutoff=CUTOFF, limit=10)) == 1
        with psycopg.connect(errors_dsn, autocommit=True) as conn:
            conn.execute("ALTER TABLE renamed.audits RENAME TO audits_old")
        with pytest.raises(UnknownTenant, match="the schema has no table 'audits'") as refused:
            source.page("renamed", SCOPE, after_id=0, cutoff=CUTOFF, limit=10)
    assert (error_code(refused.value), exit_code_for(refused.value)) == ("UNKNOWN_TENANT", REFUSED)


def test_a_class_42_the_rebuilt_query_meets_too_is_bad_input_after_one_more_try(errors_dsn: str) -> None:
    """A class 42 that is no deploy's (the checks pass, the query is wrong) is built and run exactly
    twice, then ``SourceQueryFailed``, never waited on."""
    waits: list[float] = []
    built: list[str] = []
    ran: list[str] = []

    def prepare() -> Callable[[psycopg.Connection], object]:
        built.append(str(session.schema("acme", "audits")))

        def work(conn: psycopg.Connection) -> object:
            ran.append("page")
            return conn.execute("SELECT no_such_column FROM acme.audits").fetchall()

        return work

    with (
        session_of(errors_dsn, waits) as session,
        pytest.raises(SourceQueryFailed, match="SQLSTATE 42703") as failed,
    ):
        session.run_checked("acme", prepare)
    assert (len(built), len(ran), waits) == (2, 2, [])
    assert (error_code(failed.value), exit_code_for(failed.value)) == ("BAD_INPUT", BAD_INPUT)


def test_a_class_other_than_42_is_not_built_again(errors_dsn: str) -> None:
    """A data exception (22P02) is no deploy's: raised after one build and one run, as before."""
    built: list[int] = []

    def prepare() -> Callable[[psycopg.Connection], object]:
        built.append(1)
        return lambda conn: conn.execute(f"SELECT '{SECRET}'::integer").fetchall()

    with session_of(errors_dsn, []) as session, pytest.raises(SourceQueryFailed, match="SQLSTATE 22P02"):
        session.run_checked("acme", prepare)
    assert built == [1]


def test_errors_that_may_pass_are_still_retried_or_unavailable(errors_dsn: str) -> None:
    """A statement timeout (57014) is retried, then SOURCE_UNAVAILABLE; a write refused by the read-only
    transaction (25006) is SOURCE_UNAVAILABLE as before."""
    waits: list[float] = []
    with (
        session_of(errors_dsn, waits, statement_timeout_ms=50) as session,
        pytest.raises(SourceUnavailable, match="after 3 attempts") as unavailable,
    ):
        session.run(lambda conn: conn.execute("SELECT pg_sleep(1)"))
    assert len(waits) == 2
    assert isinstance(unavailable.value.__cause__, pg_errors.QueryCanceled)
    with session_of(errors_dsn, waits) as session, pytest.raises(SourceUnavailable) as refused:
        session.run(lambda conn: conn.execute("CREATE TABLE acme.intruder (id int)"))
    assert isinstance(refused.value.__cause__, pg_errors.ReadOnlySqlTransaction)


def test_a_prepared_page_after_the_tables_ddl_is_tried_again_and_passes(errors_dsn: str) -> None:
    """psycopg prepares a query after its fifth run; a deploy that then alters a column the page
    returns (``comment`` varchar → text) makes that prepared statement fail once, 0A000 "cached plan
    must not change result type", and the same query passes on the next attempt. It was
    ``SourceQueryFailed`` at once (a Celery task failed, the run exited 7) for a change no one needs
    to fix."""
    with psycopg.connect(errors_dsn, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA deploy; CREATE TABLE deploy.audits (LIKE acme.audits INCLUDING ALL)")
        conn.execute("INSERT INTO deploy.audits SELECT * FROM acme.audits")
    waits: list[float] = []
    with session_of(errors_dsn, waits) as session:
        source = PostgresAuditSource(session)
        for _ in range(6):  # past psycopg's prepare threshold (5)
            rows = source.page("deploy", SCOPE, after_id=0, cutoff=CUTOFF, limit=10)
            assert [row.id for row in rows] == [1]
        with psycopg.connect(errors_dsn, autocommit=True) as conn:
            conn.execute("ALTER TABLE deploy.audits ALTER COLUMN comment TYPE text")
        rows = source.page("deploy", SCOPE, after_id=0, cutoff=CUTOFF, limit=10)
    assert [row.id for row in rows] == [1]
    assert len(waits) == 1  # the one attempt its stale plan failed


def test_a_feature_not_supported_every_attempt_meets_is_still_bad_input(errors_dsn: str) -> None:
    """A 0A000 that is not a stale plan fails each attempt alike: ``SourceQueryFailed`` after the last."""
    waits: list[float] = []
    with (
        session_of(errors_dsn, waits) as session,
        pytest.raises(SourceQueryFailed, match="SQLSTATE 0A000") as failed,
    ):
        session.run(lambda conn: conn.execute("SELECT DISTINCT relname FROM pg_class FOR UPDATE").fetchall())
    assert len(waits) == 2
    assert isinstance(failed.value.__cause__, pg_errors.FeatureNotSupported)
