"""The run loop while its CRM PostgreSQL server really restarts: the postgres process is stopped and started.

The server is this module's own (module-scoped, since it is restarted); the corpus is loaded into it
with the project's dump loader. The session's retries sleep through an injected no-op, so an outage
costs no wall-clock time beyond the restart itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from crm_audit_adapters.crm_postgres import (
    PostgresAuditSource,
    PostgresConnectionFactory,
    PostgresUserDirectory,
    ReadOnlySession,
    RetryPolicy,
)
from crm_audit_adapters.crm_postgres.dump import load_sql_dump
from crm_audit_adapters.crm_postgres.throwaway import ThrowawayServer, create_database, throwaway_server
from crm_audit_transform.errors import SourceUnavailable
from crm_audit_transform.jobs import COMPLETED, IN_PROGRESS
from crm_audit_transform.usecases import RunSettings
from support.corpus_account import World
from support.on_insert import OnInsert
from support.postgres import CRM_SQL

pytestmark = pytest.mark.postgres
# Small pages, so the restart falls between pages with several pages still to read after it.
SETTINGS = RunSettings(page_size=60, halt_threshold=1.0)
RETRY = RetryPolicy(attempts=3, base_delay_s=0.01, max_delay_s=0.01)


@pytest.fixture(scope="module")
def restartable() -> Iterator[tuple[ThrowawayServer, str]]:
    """A server of this module's own, with the corpus loaded; yields it and the corpus DSN."""
    with throwaway_server() as server:
        dsn = create_database(server.dsn, "crm_restart")
        load_sql_dump(dsn, CRM_SQL)
        yield server, dsn


class CountingFactory:
    """Real connections, counted, so a test can see that the session reconnected."""

    def __init__(self, dsn: str) -> None:
        self._real = PostgresConnectionFactory(dsn)
        self.opened = 0

    def __call__(self) -> psycopg.Connection:
        conn = self._real()
        self.opened += 1
        return conn


class PgWorld:
    """A corpus account whose audit source and user directory read the restartable server."""

    def __init__(self, dsn: str) -> None:
        self.factory = CountingFactory(dsn)
        self.sleeps: list[float] = []
        self.session = ReadOnlySession(self.factory, retry=RETRY, sleep=self.sleeps.append)
        self.world = World("acme")
        self.world.source = PostgresAuditSource(self.session)  # type: ignore[assignment]
        self.world.users = PostgresUserDirectory(self.session)  # type: ignore[assignment]
        self.world.trigger()

    def run_with(self, on_insert: int, action: Any, owner: str = "runner-1") -> Any:
        store = self.world.logs
        self.world.logs = OnInsert(store, on_insert, action)  # type: ignore[assignment]
        try:
            return self.world.run(owner=owner, settings=SETTINGS).job
        finally:
            self.world.logs = store

    def fingerprint(self, job: Any) -> tuple[Any, ...]:
        return job.tally, job.last_audit_id, repr(self.world.logs.logs)


@pytest.fixture
def pg_world(restartable: tuple[ThrowawayServer, str]) -> Iterator[PgWorld]:
    world = PgWorld(restartable[1])
    yield world
    world.session.close()


@pytest.fixture(scope="module")
def clean_run(restartable: tuple[ThrowawayServer, str]) -> tuple[Any, ...]:
    """The fingerprint of an undisturbed run over the same server (tally, cursor, every log)."""
    world = PgWorld(restartable[1])
    try:
        job = world.world.run(settings=SETTINGS).job
        assert job.status == COMPLETED
        return world.fingerprint(job)
    finally:
        world.session.close()


class TestPostgresServerRestartMidRun:
    def test_clean_run_over_postgres_equals_the_in_memory_run(self, clean_run: tuple[Any, ...]) -> None:
        """The reference run reads the same rows from PostgreSQL as from the corpus files."""
        world = World("acme")
        world.trigger()
        job = world.run(settings=SETTINGS).job
        assert (job.tally, job.last_audit_id, repr(world.logs.logs)) == clean_run

    def test_a_quick_restart_is_retried_through_and_the_run_completes_identically(
        self, restartable: tuple[ThrowawayServer, str], pg_world: PgWorld, clean_run: tuple[Any, ...]
    ) -> None:
        """The server restarts after the 3rd batch; the session reconnects and the result is a clean run's."""
        server, _ = restartable
        job = pg_world.run_with(3, server.restart)
        assert pg_world.sleeps, "the cut connection was retried"
        assert pg_world.factory.opened >= 2
        assert job.status == COMPLETED
        assert pg_world.fingerprint(job) == clean_run

    def test_a_stop_outlasting_the_retries_fails_the_run_and_a_new_run_resumes_it(
        self, restartable: tuple[ThrowawayServer, str], pg_world: PgWorld, clean_run: tuple[Any, ...]
    ) -> None:
        """Down past the retries: SourceUnavailable, progress saved; once it is back a new run finishes."""
        server, _ = restartable
        try:
            with pytest.raises(SourceUnavailable):
                pg_world.run_with(2, server.shutdown)
            assert len(pg_world.sleeps) == RETRY.attempts - 1
            stopped = pg_world.world.jobs.latest(pg_world.world.company)
            assert stopped is not None
            assert (stopped.status, stopped.lease_owner) == (IN_PROGRESS, None)
            assert stopped.last_audit_id > 0
        finally:
            server.start()
        job = pg_world.world.run(owner="runner-2", settings=SETTINGS).job
        assert job.status == COMPLETED
        assert pg_world.fingerprint(job) == clean_run
