"""created_at values PostgreSQL holds but ``datetime`` cannot (``infinity``, ``-infinity``, a year
past 9999, a BC date): each fails its own row as ``invalid_audit_row``, never the page."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator

import psycopg
import pytest
from psycopg import sql

from crm_audit_adapters.crm_postgres import PostgresAuditSource, PostgresUserDirectory, ReadOnlySession
from crm_audit_transform.config import load_default_config
from crm_audit_transform.domain import Failed, UnreadableTime
from crm_audit_transform.jobs import COMPLETED
from crm_audit_transform.transformer import Transformer
from crm_audit_transform.usecases import RunSettings
from crm_audit_transform.usecases.explain import ExplainPorts, explain_audit
from support.corpus_account import World
from support.postgres import create_audits, throwaway_database

pytestmark = pytest.mark.postgres

SCOPE = ("Crm::Person",)
CUTOFF = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
# id → created_at as SQL text; 2-5 cannot be a datetime.
TIMES = {
    1: "2020-01-01 00:00:00",
    2: "infinity",
    3: "-infinity",
    4: "10000-01-01 00:00:00",
    5: "0044-03-15 00:00:00 BC",
    6: "2021-06-01 12:00:00",
}
UNREADABLE = [2, 3, 4, 5]


@pytest.fixture(scope="module")
def times_dsn(pg_server: str) -> Iterator[str]:
    """Two tenants with the same rows: ``naive`` (Rails' timestamp) and ``aware`` (timestamptz)."""
    with throwaway_database(pg_server, "times") as dsn:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for schema, kind in (("naive", "timestamp"), ("aware", "timestamptz")):
                create_audits(conn, schema, created_at=kind)
                for audit_id, at in TIMES.items():
                    conn.execute(
                        sql.SQL(
                            "INSERT INTO {}.audits (id, auditable_id, auditable_type, action,"
                            " audited_changes, created_at)"
                            " VALUES (%s, 7, 'Crm::Person', 'update', %s, %s::timestamptz)"
                        ).format(sql.Identifier(schema)),
                        (audit_id, "---\nfirst_name:\n- A\n- B\n", at + ("" if "inf" in at else "+00")),
                    )
        yield dsn


@pytest.fixture(scope="module")
def source(times_dsn: str) -> Iterator[PostgresAuditSource]:
    with ReadOnlySession.from_dsn(times_dsn) as session:
        yield PostgresAuditSource(session)


@pytest.mark.parametrize("tenant", ["naive", "aware"])
class TestUnreadableTimes:
    def test_a_page_reads_every_row_and_each_unreadable_time_fails_its_row(
        self, source: PostgresAuditSource, tenant: str
    ) -> None:
        """The page is read (no SourceUnavailable); rows 2-5 carry their text and fail alone."""
        rows = source.page(tenant, SCOPE, after_id=0, cutoff=CUTOFF, limit=10)
        assert [row.id for row in rows] == list(TIMES)
        unreadable = {row.id: row.created_at for row in rows if isinstance(row.created_at, UnreadableTime)}
        assert sorted(unreadable) == UNREADABLE
        assert str(unreadable[2]) == "infinity"
        assert str(unreadable[3]) == "-infinity"
        prepared = Transformer(load_default_config()).prepare(rows)
        problems = {p.row.id: p.problem for p in prepared if p.problem is not None}
        assert sorted(problems) == UNREADABLE
        assert {p.reason for p in problems.values()} == {"invalid_audit_row"}
        assert "'infinity'" in problems[2].detail

    def test_the_bounds_count_them_and_take_the_oldest_readable_time(
        self, source: PostgresAuditSource, tenant: str
    ) -> None:
        """A row before year 1 is in every range, as a NULL one: counted, never the oldest time."""
        bounds = source.scope_bounds(tenant, SCOPE, None)
        assert bounds is not None
        assert (bounds.min_id, bounds.max_id, bounds.count) == (1, 6, 6)
        assert bounds.oldest_created_at == dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
        assert source.id_quantiles(tenant, SCOPE, None, 2) == (3,)

    def test_one_row_is_read_by_id(self, source: PostgresAuditSource, tenant: str) -> None:
        """explain's read: the row comes back with its unreadable time, not a database error."""
        row = source.audit_by_id(tenant, 4)
        assert row is not None
        assert isinstance(row.created_at, UnreadableTime)


class TestRunAndExplain:
    def test_an_infinite_time_fails_its_row_and_the_run_completes(
        self, scratch_database: Callable[..., str]
    ) -> None:
        """The corpus with one row at 'infinity' and one at '-infinity': a run completes, those two
        rows fail as invalid_audit_row, explain names the reason."""
        dsn = scratch_database(corpus=True)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("UPDATE acme.audits SET created_at = 'infinity' WHERE id = 300")
            conn.execute("UPDATE acme.audits SET created_at = '-infinity' WHERE id = 301")
        with ReadOnlySession.from_dsn(dsn) as session:
            world = World("acme")
            world.source = PostgresAuditSource(session)  # type: ignore[assignment]
            world.users = PostgresUserDirectory(session)  # type: ignore[assignment]
            world.trigger()
            outcomes: list[Failed] = []
            result = world.run(
                settings=RunSettings(page_size=200, halt_threshold=1.0),
                on_outcomes=lambda found: outcomes.extend(o for o in found if isinstance(o, Failed)),
            )
            assert result.job.status == COMPLETED
            failed = {o.audit_id: o.reason for o in outcomes if o.audit_id in (300, 301)}
            assert failed == {300: "invalid_audit_row", 301: "invalid_audit_row"}
            ports = ExplainPorts(world.source, world.users, world.sso, world.contacts)
            explanation = explain_audit(
                300, company_sso_id=world.company, tenant="acme", ports=ports, transformer=world.transformer
            )
            assert isinstance(explanation.outcome, Failed)
            assert explanation.outcome.reason == "invalid_audit_row"
