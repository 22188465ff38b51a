"""ReadOnlySession: read-only transactions, retries after a dropped connection, statement timeouts."""

from __future__ import annotations

import datetime as dt
import socket
import time
import uuid

import psycopg
import pytest
from psycopg import errors as pg_errors
from psycopg.conninfo import make_conninfo

from crm_audit_adapters.crm_postgres import (
    PostgresAuditSource,
    PostgresConnectionFactory,
    PostgresEntityDirectory,
    PostgresPeopleCounter,
    PostgresUserDirectory,
    ReadOnlySession,
    RetryPolicy,
)
from crm_audit_transform.domain import AuditRow
from crm_audit_transform.errors import SourceUnavailable
from support.postgres import corpus_records

pytestmark = pytest.mark.postgres

SCOPE = ("Crm::Deal", "Crm::Person", "Crm::Ticket", "Crm::Task", "Crm::Company")
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
FAST_RETRY = RetryPolicy(attempts=3, base_delay_s=0.01, max_delay_s=0.05)


class CountingFactory:
    """A connection factory that remembers the backend pid of every connection it opened."""

    def __init__(self, dsn: str) -> None:
        self.application_name = f"crm-audit-test-{uuid.uuid4().hex[:8]}"
        self._connect = PostgresConnectionFactory(dsn, application_name=self.application_name)
        self.backend_pids: list[int] = []

    def __call__(self) -> psycopg.Connection:
        conn = self._connect()
        self.backend_pids.append(conn.info.backend_pid)
        return conn


def expected_ids(tenant: str) -> list[int]:
    return [
        r["id"]
        for r in corpus_records("audits.jsonl")
        if r["tenant"] == tenant and r["auditable_type"] in SCOPE
    ]


class TestReadOnly:
    def test_nothing_connects_before_the_first_query(self) -> None:
        """Building the session and every adapter opens no connection."""
        calls: list[int] = []

        def factory() -> psycopg.Connection:
            calls.append(1)
            raise AssertionError("connected too early")

        session = ReadOnlySession(factory)
        adapters = [
            PostgresAuditSource(session),
            PostgresUserDirectory(session),
            PostgresEntityDirectory(session),
            PostgresPeopleCounter(session),
        ]
        assert len(adapters) == 4
        assert calls == []

    def test_writes_are_refused_by_the_server(self, crm_dsn: str) -> None:
        """Work runs in a READ ONLY transaction: a write fails and leaves nothing behind."""
        with ReadOnlySession.from_dsn(crm_dsn) as session:
            with pytest.raises(SourceUnavailable) as refused:
                session.run(lambda conn: conn.execute("CREATE TABLE acme.intruder (id int)"))
            assert isinstance(refused.value.__cause__, pg_errors.ReadOnlySqlTransaction)
            assert session.run(
                lambda conn: conn.execute("SELECT to_regclass('acme.intruder')").fetchone()
            ) == (None,)

    def test_each_transaction_gets_the_timeout_utc_and_custom_plans(self, crm_dsn: str) -> None:
        """The work sees the configured statement timeout, TimeZone UTC and force_custom_plan."""
        query = (
            "SELECT current_setting('statement_timeout'), current_setting('TimeZone'),"
            " current_setting('plan_cache_mode'), current_setting('transaction_read_only')"
        )
        with ReadOnlySession.from_dsn(crm_dsn, statement_timeout_ms=1234) as session:
            row = session.run(lambda conn: conn.execute(query).fetchone())
        assert row == ("1234ms", "UTC", "force_custom_plan", "on")

    def test_each_transaction_is_read_committed_whatever_the_database_default(self, scratch_dsn: str) -> None:
        """A database whose default_transaction_isolation is serializable (a primary's setting, which
        its hot standbys copy and where every serializable transaction is refused with 0A000) still
        gets READ COMMITTED transactions: on a standby every query failed, SourceQueryFailed (exit 7)."""
        name = psycopg.conninfo.conninfo_to_dict(scratch_dsn)["dbname"]
        with psycopg.connect(scratch_dsn, autocommit=True) as admin:
            admin.execute(
                psycopg.sql.SQL(
                    "ALTER DATABASE {} SET default_transaction_isolation = 'serializable'"
                ).format(psycopg.sql.Identifier(str(name)))
            )
        query = "SELECT current_setting('transaction_isolation'), current_setting('transaction_read_only')"
        with ReadOnlySession.from_dsn(scratch_dsn) as session:
            row = session.run(lambda conn: conn.execute(query).fetchone())
        assert row == ("read committed", "on")

    @pytest.mark.parametrize(("threshold", "prepared"), [(None, 0), (1, 1)])
    def test_server_side_prepared_statements_follow_the_factory_setting(
        self, crm_dsn: str, threshold: int | None, prepared: int
    ) -> None:
        """prepare_threshold=None (for pooling proxies) leaves no prepared page query on the server."""
        factory = PostgresConnectionFactory(crm_dsn, prepare_threshold=threshold)
        with ReadOnlySession(factory) as session:
            source = PostgresAuditSource(session)
            for after_id in range(0, 100, 10):
                source.page("acme", SCOPE, after_id=after_id, cutoff=EPOCH, limit=10)
            count = session.run(
                lambda conn: conn.execute(
                    "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s", ("%audits%",)
                ).fetchone()
            )
        assert count == (prepared,)

    def test_a_zero_timeout_is_refused(self) -> None:
        """0 would mean "no timeout" to PostgreSQL, so it is refused up front."""
        with pytest.raises(ValueError, match="positive"):
            ReadOnlySession(PostgresConnectionFactory("dbname=unused"), statement_timeout_ms=0)


class TestRetries:
    def test_a_connection_killed_mid_run_is_retried_and_every_row_read_once(
        self, crm_dsn: str, pg_server: str
    ) -> None:
        """pg_terminate_backend between pages costs one reconnect; the run still reads each row once."""
        factory = CountingFactory(crm_dsn)
        rows: list[AuditRow] = []
        with ReadOnlySession(factory, retry=FAST_RETRY) as session:
            source = PostgresAuditSource(session)
            while page := source.page(
                "globex", SCOPE, after_id=rows[-1].id if rows else 0, cutoff=EPOCH, limit=60
            ):
                rows.extend(page)
                if len(rows) == 120:
                    assert _terminate(pg_server, factory.application_name) == 1
        assert [row.id for row in rows] == expected_ids("globex")
        assert len(factory.backend_pids) == 2

    def test_a_connection_ended_idle_in_its_transaction_is_retried(self, scratch_dsn: str) -> None:
        """The server ends a connection whose transaction stays idle past
        idle_in_transaction_session_timeout (25P03, which psycopg raises as an InternalError): the
        unit of work runs again on a new connection, as after any dropped connection. It was
        SourceUnavailable at once ("refused the query"), ending the run. Fails on the old code."""
        name = psycopg.conninfo.conninfo_to_dict(scratch_dsn)["dbname"]
        with psycopg.connect(scratch_dsn, autocommit=True) as admin:
            admin.execute(
                psycopg.sql.SQL("ALTER DATABASE {} SET idle_in_transaction_session_timeout = '50ms'").format(
                    psycopg.sql.Identifier(str(name))
                )
            )
        calls: list[int] = []

        def work(conn: psycopg.Connection) -> tuple[int, ...] | None:
            calls.append(conn.info.backend_pid)
            if len(calls) == 1:
                time.sleep(0.5)  # idle in the transaction: the server ends the connection
            return conn.execute("SELECT 1").fetchone()

        with ReadOnlySession.from_dsn(scratch_dsn, retry=FAST_RETRY) as session:
            assert session.run(work) == (1,)
        assert len(calls) == 2
        assert calls[0] != calls[1]

    def test_statement_timeout_becomes_source_unavailable_after_the_retries(self, crm_dsn: str) -> None:
        """A page blocked past the statement timeout is retried, then raised as SourceUnavailable."""
        factory = CountingFactory(crm_dsn)
        with ReadOnlySession(factory, statement_timeout_ms=100, retry=FAST_RETRY) as session:
            source = PostgresAuditSource(session)
            session.schema("acme", "audits")  # known before the lock, so only the page query waits
            with psycopg.connect(crm_dsn) as locker:
                locker.execute("LOCK TABLE acme.audits IN ACCESS EXCLUSIVE MODE")
                with pytest.raises(SourceUnavailable, match="after 3 attempts") as unavailable:
                    source.page("acme", SCOPE, after_id=0, cutoff=EPOCH, limit=10)
                locker.rollback()
            assert isinstance(unavailable.value.__cause__, pg_errors.QueryCanceled)
            assert len(factory.backend_pids) == 3
            assert len(source.page("acme", SCOPE, after_id=0, cutoff=EPOCH, limit=10)) == 10

    def test_an_unreachable_server_backs_off_then_raises_source_unavailable(self) -> None:
        """Each attempt fails to connect; it sleeps between them, then raises from the driver error."""
        slept: list[float] = []
        retry = RetryPolicy(attempts=4, base_delay_s=0.5, max_delay_s=1.0)
        dsn = make_conninfo(host="127.0.0.1", port=_closed_port(), user="nobody", dbname="nothing")
        session = ReadOnlySession(
            PostgresConnectionFactory(dsn, connect_timeout_s=2), retry=retry, sleep=slept.append
        )
        with pytest.raises(SourceUnavailable, match="after 4 attempts") as unavailable:
            PostgresPeopleCounter(session).count_people("acme")
        assert isinstance(unavailable.value.__cause__, psycopg.OperationalError)
        assert len(slept) == 3
        assert all(0 < delay <= 1.0 for delay in slept)


class TestRetryPolicy:
    @pytest.mark.parametrize("attempt", range(1, 12))
    def test_delay_grows_exponentially_within_jitter_and_is_capped(self, attempt: int) -> None:
        """The n-th delay lies in [ceiling/2, ceiling] with ceiling = min(max, base * 2^(n-1))."""
        policy = RetryPolicy(attempts=12, base_delay_s=0.1, max_delay_s=3.0)
        ceiling = min(3.0, 0.1 * 2 ** (attempt - 1))
        assert all(ceiling / 2 <= policy.delay(attempt) <= ceiling for _ in range(50))


def _terminate(admin_dsn: str, application_name: str) -> int:
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        rows = admin.execute(
            # the 5 s timeout makes the call wait until the backend is really gone
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE application_name = %s",
            (application_name,),
        ).fetchall()
    return sum(1 for (ok,) in rows if ok)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port
