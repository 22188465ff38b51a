"""The run loop over the real CRM adapter: PostgreSQL loaded from the corpus, its backends killed mid-run."""

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
from crm_audit_transform.errors import SourceUnavailable
from crm_audit_transform.jobs import COMPLETED, IN_PROGRESS
from crm_audit_transform.usecases import RunSettings
from support.corpus_account import World
from support.on_insert import OnInsert

pytestmark = pytest.mark.postgres
SETTINGS = RunSettings(page_size=200, halt_threshold=1.0)


def terminate_crm_backends(crm_dsn: str) -> int:
    """What a server restart does to the runner: every other connection to the database is cut."""
    with psycopg.connect(crm_dsn, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return len(rows)


class FlakyFactory:
    """Opens real connections, except that it refuses ``refuse`` attempts once told to."""

    def __init__(self, dsn: str) -> None:
        self._real = PostgresConnectionFactory(dsn)
        self.refuse = 0

    def __call__(self) -> psycopg.Connection:
        if self.refuse > 0:
            self.refuse -= 1
            raise psycopg.OperationalError("connection refused (simulated restart)")
        return self._real()


@pytest.fixture
def sessions() -> Iterator[list[ReadOnlySession]]:
    opened: list[ReadOnlySession] = []
    yield opened
    for session in opened:
        session.close()


def pg_world(factory: Any, sessions: list[ReadOnlySession]) -> World:
    world = World("acme")
    session = ReadOnlySession(factory, retry=RetryPolicy(attempts=3, base_delay_s=0.0, max_delay_s=0.0))
    sessions.append(session)
    world.source = PostgresAuditSource(session)  # type: ignore[assignment]
    world.users = PostgresUserDirectory(session)  # type: ignore[assignment]
    return world


def clean_fingerprint() -> tuple[Any, ...]:
    world = World("acme")
    world.trigger()
    job = world.run(settings=SETTINGS).job
    return job.tally, job.last_audit_id, repr(world.logs.logs)


class TestPostgresRestartMidRun:
    def test_killed_backends_are_reconnected_and_the_run_completes_identically(
        self, crm_dsn: str, sessions: list[ReadOnlySession]
    ) -> None:
        """Connections cut between batches are reopened by the session; the result is a clean run's."""
        world = pg_world(PostgresConnectionFactory(crm_dsn), sessions)
        world.trigger()
        killed: list[int] = []
        store = world.logs
        world.logs = OnInsert(store, 3, lambda: killed.append(terminate_crm_backends(crm_dsn)))  # type: ignore[assignment]
        job = world.run(settings=SETTINGS).job
        world.logs = store
        assert killed[0] >= 1
        assert job.status == COMPLETED
        assert (job.tally, job.last_audit_id, repr(world.logs.logs)) == clean_fingerprint()

    def test_an_outage_longer_than_the_retries_stops_the_run_and_a_rerun_finishes_it(
        self, crm_dsn: str, sessions: list[ReadOnlySession]
    ) -> None:
        """SourceUnavailable ends the run, progress saved; the next run resumes with no gap or duplicate."""
        factory = FlakyFactory(crm_dsn)
        world = pg_world(factory, sessions)
        world.trigger()

        def outage() -> None:
            terminate_crm_backends(crm_dsn)
            factory.refuse = 10

        store = world.logs
        world.logs = OnInsert(store, 2, outage)  # type: ignore[assignment]
        with pytest.raises(SourceUnavailable):
            world.run(settings=SETTINGS)
        world.logs = store
        stopped = world.jobs.latest(world.company)
        assert stopped is not None
        assert (stopped.status, stopped.lease_owner) == (IN_PROGRESS, None)
        assert stopped.last_audit_id > 0
        factory.refuse = 0
        job = world.run(owner="runner-2", settings=SETTINGS).job
        assert (job.tally, job.last_audit_id, repr(world.logs.logs)) == clean_fingerprint()
