"""Pages by id range (``ports.AuditPageIds``): the run loop reads a page's ids, a worker its rows.

``page_ids`` must give exactly the ids ``page`` gives (byte budget included), ``span_rows`` exactly
those rows — and only those: a row inserted meanwhile inside the span is not read (as a keyset page
read in one go never holds it), a row deleted or moved out of scope meanwhile is not read. Over the
real page pool, the run's own process never fetches a row's text, and a row deleted between its
ids and its read is simply not migrated; the rest is one process's result.
"""

from __future__ import annotations

import datetime as dt
import pickle
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import attrs
import psycopg
import pytest
from psycopg import sql

from crm_audit_adapters.crm_postgres import (
    PostgresAuditSource,
    PostgresConnectionFactory,
    PostgresUserDirectory,
    ReadOnlySession,
    RetryPolicy,
)
from crm_audit_adapters.crm_postgres.audits import PostgresSpanReader
from crm_audit_adapters.page_pool import ProcessPagePipeline
from crm_audit_transform.domain import AuditRow
from crm_audit_transform.errors import CrmAuditError, UnknownTenant
from crm_audit_transform.jobs import COMPLETED
from crm_audit_transform.ports import AuditPageIds
from crm_audit_transform.transformer import external_id
from crm_audit_transform.usecases import RunSettings
from crm_audit_transform.usecases.pages import PageSpan
from support.corpus_account import World
from support.page_workers import page_pool
from support.postgres import create_audits, throwaway_database

pytestmark = pytest.mark.postgres

SCOPE = ("Crm::Person",)
CUTOFF = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
KIB = 1024
SETTINGS = RunSettings(page_size=40, halt_threshold=1.0, lease_seconds=60)
SINCE = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)


def insert(
    conn: psycopg.Connection, schema: str, audit_id: int, *, kib: int = 1, kind: str = "Crm::Person"
) -> None:
    conn.execute(
        sql.SQL(
            "INSERT INTO {}.audits (id, auditable_id, auditable_type, action, audited_changes, created_at)"
            " VALUES (%s, 7, %s, 'update', %s, %s)"
        ).format(sql.Identifier(schema)),
        (audit_id, kind, f"---\nnotes:\n- a\n- {'x' * (kib * KIB)}\n", dt.datetime(2021, 1, 1)),
    )


@pytest.fixture(scope="module")
def spans_dsn(pg_server: str) -> Iterator[str]:
    """Schema ``rows``: ids 10, 20, … 200, every third one 64 KiB of text, every seventh out of scope."""
    with throwaway_database(pg_server, "spans") as dsn:
        with psycopg.connect(dsn, autocommit=True) as conn:
            create_audits(conn, "rows")
            for audit_id in range(10, 201, 10):
                big = audit_id % 30 == 0
                kind = "Crm::Deal" if audit_id % 70 == 0 else "Crm::Person"
                insert(conn, "rows", audit_id, kib=64 if big else 1, kind=kind)
        yield dsn


def walk(fetch: Callable[[int], Sequence[int]]) -> list[list[int]]:
    found: list[list[int]] = []
    after = 0
    while ids := list(fetch(after)):
        found.append(ids)
        after = ids[-1]
    return found


class TestPageIds:
    @pytest.mark.parametrize("page_bytes", [100 * KIB, 10 * KIB, 32 * 1024 * KIB])
    @pytest.mark.parametrize("limit", [4, 500])
    def test_the_ids_are_the_pages_ids_byte_budget_included(
        self, spans_dsn: str, page_bytes: int, limit: int
    ) -> None:
        """Walked to the end, ``page_ids`` gives the same pages as ``page``, and ``span_rows`` of each
        gives the very rows ``page`` gave."""
        with ReadOnlySession.from_dsn(spans_dsn) as session:
            source = PostgresAuditSource(session, page_bytes=page_bytes)

            def page(after: int) -> Sequence[AuditRow]:
                return source.page("rows", SCOPE, after_id=after, cutoff=CUTOFF, limit=limit)

            def ids(after: int) -> Sequence[int]:
                return source.page_ids("rows", SCOPE, after_id=after, cutoff=CUTOFF, limit=limit)

            by_rows = walk(lambda after: [row.id for row in page(after)])
            assert walk(ids) == by_rows
            assert sum(map(len, by_rows)) == 18  # 20 rows, 2 out of scope
            for first in by_rows:
                after = min(first) - 1
                span = PageSpan("rows", SCOPE, CUTOFF, tuple(first))
                assert source.span_rows(span) == page(after)
        if page_bytes == 10 * KIB:
            assert max(map(len, by_rows)) < 4 or limit == 4  # the budget cut the pages

    def test_a_source_is_an_audit_page_ids(self, spans_dsn: str) -> None:
        with ReadOnlySession.from_dsn(spans_dsn) as session:
            assert isinstance(PostgresAuditSource(session), AuditPageIds)


class TestRowsChangedBetweenIdsAndRows:
    @pytest.fixture
    def schema(self, spans_dsn: str, request: pytest.FixtureRequest) -> Iterator[str]:
        name = f"changed_{request.node.name[-20:].strip('[]').replace('-', '_')}".lower()
        with psycopg.connect(spans_dsn, autocommit=True) as conn:
            create_audits(conn, name)
            for audit_id in range(10, 101, 10):
                insert(conn, name, audit_id)
        yield name
        with psycopg.connect(spans_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))

    def test_a_row_inserted_inside_a_span_is_not_read_and_one_gone_is_not_either(
        self, spans_dsn: str, schema: str
    ) -> None:
        """After the ids were read: id 15 inserted, 20 deleted, 30 moved out of scope. The span's
        rows are its ids still in scope (10, 40, 50); 15 is behind the cursor, as a keyset page read
        before it was committed leaves it."""
        with ReadOnlySession.from_dsn(spans_dsn) as session:
            source = PostgresAuditSource(session)
            ids = source.page_ids(schema, SCOPE, after_id=0, cutoff=CUTOFF, limit=5)
            assert list(ids) == [10, 20, 30, 40, 50]
            with psycopg.connect(spans_dsn, autocommit=True) as conn:
                insert(conn, schema, 15)
                conn.execute(sql.SQL("DELETE FROM {}.audits WHERE id = 20").format(sql.Identifier(schema)))
                conn.execute(
                    sql.SQL("UPDATE {}.audits SET auditable_type = 'Crm::Deal' WHERE id = 30").format(
                        sql.Identifier(schema)
                    )
                )
            rows = source.span_rows(PageSpan(schema, SCOPE, CUTOFF, tuple(ids)))
            assert [row.id for row in rows] == [10, 40, 50]
            # The same read from a worker's copy of the source, over its own connection.
            reader = pickle.loads(pickle.dumps(source.span_reader()))
            try:
                assert [row.id for row in reader(PageSpan(schema, SCOPE, CUTOFF, tuple(ids)))] == [10, 40, 50]
            finally:
                reader.close()


class TestTheReaderSent:
    def test_the_reader_pickles_without_a_connection_and_shows_no_password(self) -> None:
        """What a worker is sent: no open connection; its ``repr`` (and the error of a failed
        connection, in the worker) never shows the DSN's password."""
        dsn = "postgresql://crm:s3cret-pw@127.0.0.1:1/crm?connect_timeout=1"
        session = ReadOnlySession(PostgresConnectionFactory(dsn), retry=RetryPolicy(attempts=1))
        reader = PostgresAuditSource(session).span_reader()
        assert isinstance(reader, PostgresSpanReader)
        assert "s3cret" not in repr(reader)
        copy = pickle.loads(pickle.dumps(reader))
        with pytest.raises(CrmAuditError) as caught:
            copy(PageSpan("acme", SCOPE, CUTOFF, (1, 2)))
        assert "s3cret" not in str(caught.value)
        assert "s3cret" not in repr(pickle.loads(pickle.dumps(caught.value)))

    def test_a_session_that_cannot_be_sent_gives_no_reader(self, spans_dsn: str) -> None:
        """A connection factory that does not pickle (a lambda): no reader, and the pool reads the
        spans in the run's process and sends their rows instead."""
        session = ReadOnlySession(lambda: psycopg.connect(spans_dsn, autocommit=True))
        assert PostgresAuditSource(session).span_reader() is None


UNITS_OF_WORK: list[str] = []
"""The units of work (transactions) run over ``CountingFactory``'s connections, in this process."""


class CountingConnection(psycopg.Connection[Any]):
    """A connection that notes each transaction's first statement (the session's settings)."""

    def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
        if "set_config" in str(query):
            UNITS_OF_WORK.append("unit")
        return super().execute(query, *args, **kwargs)


@attrs.frozen
class CountingFactory:
    """Opens ``CountingConnection``s to ``dsn``; pickles, as a worker's copy is sent."""

    dsn: str

    def __call__(self) -> psycopg.Connection[Any]:
        conn = CountingConnection.connect(self.dsn, autocommit=True)
        conn.read_only = True
        return conn


class TestTheCopyTrustsItsRunnersChecks:
    def test_a_workers_copy_reads_its_first_span_in_one_unit_of_work(self, spans_dsn: str) -> None:
        """A reader copied after its runner checked the tenant reads its first span without checking
        it again (one unit of work, not four); a copy of a session that checked nothing checks, and
        refuses a schema that is not there."""
        with ReadOnlySession(CountingFactory(spans_dsn)) as session:
            source = PostgresAuditSource(session)
            fresh = pickle.loads(pickle.dumps(source.span_reader()))
            ids = source.page_ids("rows", SCOPE, after_id=0, cutoff=CUTOFF, limit=5)
            copy = pickle.loads(pickle.dumps(source.span_reader()))
            try:
                UNITS_OF_WORK.clear()
                assert [row.id for row in copy(PageSpan("rows", SCOPE, CUTOFF, tuple(ids)))] == ids
                assert len(UNITS_OF_WORK) == 1
                UNITS_OF_WORK.clear()
                assert [row.id for row in fresh(PageSpan("rows", SCOPE, CUTOFF, tuple(ids)))] == ids
                assert len(UNITS_OF_WORK) == 4  # the schema, the columns, the id's key, the span
                with pytest.raises(UnknownTenant):
                    copy(PageSpan("nope", SCOPE, CUTOFF, (1, 2)))
            finally:
                copy.close()
                fresh.close()


class CountingSource(PostgresAuditSource):
    """The run's own source, counting what the run's process asks of it."""

    __slots__ = ("calls",)

    def __init__(self, session: ReadOnlySession) -> None:
        super().__init__(session)
        self.calls: Counter[str] = Counter()

    def page(self, *args: Any, **kwargs: Any) -> Sequence[AuditRow]:
        self.calls["page"] += 1
        return super().page(*args, **kwargs)

    def page_ids(self, *args: Any, **kwargs: Any) -> Sequence[int]:
        self.calls["page_ids"] += 1
        return super().page_ids(*args, **kwargs)

    def span_rows(self, span: PageSpan) -> Sequence[AuditRow]:
        self.calls["span_rows"] += 1
        return super().span_rows(span)


class DeletingSource(CountingSource):
    """Deletes the audit ``doomed`` right after reading the ids of the page that holds it."""

    __slots__ = ("doomed", "dsn")

    def __init__(self, session: ReadOnlySession, dsn: str, doomed: int) -> None:
        super().__init__(session)
        self.dsn = dsn
        self.doomed = doomed

    def page_ids(self, *args: Any, **kwargs: Any) -> Sequence[int]:
        ids = super().page_ids(*args, **kwargs)
        if self.doomed in ids:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                conn.execute("DELETE FROM acme.audits WHERE id = %s", (self.doomed,))
        return ids


def migrate(dsn: str, pipeline: ProcessPagePipeline | None, source: Callable[[ReadOnlySession], Any]) -> Any:
    with ReadOnlySession.from_dsn(dsn) as session:
        world = World("acme")
        world.source = source(session)
        world.users = PostgresUserDirectory(session)  # type: ignore[assignment]
        world.trigger(date_range_start=SINCE)
        job = world.run(settings=SETTINGS, pipeline=pipeline).job
        return world, job


class TestRunOverSpans:
    @pytest.mark.parametrize("share", [True, False], ids=["shared", "unshared"])
    def test_the_runs_process_reads_only_ids_and_writes_one_process_logs(
        self, crm_dsn: str, share: bool
    ) -> None:
        """With the pool, the run's process never calls ``page``: it reads ids, and (sharing) the
        rows of the pages it takes itself; without sharing, no row at all. Same logs, counts, cursor."""
        one_world, one_job = migrate(crm_dsn, None, CountingSource)
        assert one_world.source.calls["page"] > 2
        with page_pool(2, share=share) as pool:
            world, job = migrate(crm_dsn, pool, CountingSource)
        calls = world.source.calls
        assert calls["page"] == 0
        assert calls["page_ids"] == one_world.source.calls["page"]
        if not share:
            assert calls["span_rows"] == 0
        assert job.status == one_job.status == COMPLETED
        assert (job.tally, job.last_audit_id) == (one_job.tally, one_job.last_audit_id)
        assert repr(world.logs.logs) == repr(one_world.logs.logs)

    def test_a_row_deleted_between_its_ids_and_its_read_is_not_migrated(
        self, scratch_database: Callable[..., str]
    ) -> None:
        """The worker reads the page after the row is gone: one row fewer processed, no log of it,
        the job completes at the same cursor; every other log is one process's."""
        dsn = scratch_database(corpus=True)
        with page_pool(2, share=False) as pool:
            clean_world, clean_job = migrate(dsn, None, CountingSource)
            migrated = sorted(int(log.external_id.rsplit(":", 1)[1]) for log in clean_world.logs.logs)
            doomed = migrated[len(migrated) // 2]
            world, job = migrate(dsn, pool, lambda session: DeletingSource(session, dsn, doomed))
        assert job.status == COMPLETED
        assert job.tally.processed == clean_job.tally.processed - 1
        assert job.tally.migrated == clean_job.tally.migrated - 1
        assert job.last_audit_id == clean_job.last_audit_id
        gone = external_id("acme", doomed)
        kept = tuple(log for log in clean_world.logs.logs if log.external_id != gone)
        assert len(kept) == len(clean_world.logs.logs) - 1
        assert repr(world.logs.logs) == repr(kept)
