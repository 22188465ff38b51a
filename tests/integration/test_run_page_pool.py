"""``run_job`` with its pages transformed by worker processes (``ProcessPagePipeline``, real processes).

The account is the corpus tenant ``acme`` in memory (759 rows, pages of 40) — and once from
PostgreSQL into MongoDB (mongomock); the pool is the real one (forkserver processes). What it
writes, how it counts and where it leaves the cursor must be exactly what one process does, also
when the run stops early, is cancelled, or loses a worker.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import mongomock
import pytest

from crm_audit_adapters.crm_postgres import PostgresAuditSource, PostgresUserDirectory, ReadOnlySession
from crm_audit_adapters.files import JsonlActivityLogSink
from crm_audit_adapters.files.sink import sink_line
from crm_audit_adapters.mongo import MongoActivityLogStore
from crm_audit_adapters.mongo.indexes import apply_migration
from crm_audit_adapters.page_pool import EncodedLogs, ProcessPagePipeline, TransformerRecipe
from crm_audit_transform.chain import RuleChain
from crm_audit_transform.config import MappingConfig, load_default_config
from crm_audit_transform.errors import ConfigError, WorkerLost
from crm_audit_transform.jobs import CANCELLED, COMPLETED, IN_PROGRESS, MigrationJob
from crm_audit_transform.usecases import RunSettings
from crm_audit_transform.usecases.cancel import cancel
from support.corpus_account import World
from support.mongo import activity_log
from support.page_workers import DiesOnRow, page_pool

SETTINGS = RunSettings(page_size=40, halt_threshold=1.0, lease_seconds=60)
SINCE = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def pool() -> Iterator[ProcessPagePipeline]:
    with page_pool(2) as pipeline:
        yield pipeline


def fingerprint(world: World) -> tuple[Any, ...]:
    job = world.jobs.latest(world.company)
    assert job is not None
    return (
        job.status,
        job.tally,
        job.enrichment,
        job.last_audit_id,
        repr(world.logs.logs),  # repr: some values are NaN, never equal to themselves
    )


def account(*, enrich: bool = False) -> World:
    world = World(enrich=enrich)
    world.trigger()
    return world


@pytest.fixture(scope="module")
def one_process() -> dict[bool, tuple[Any, ...]]:
    """The clean in-process run's fingerprint, without and with entity names."""
    prints = {}
    for enrich in (False, True):
        world = account(enrich=enrich)
        world.run(settings=SETTINGS)
        prints[enrich] = fingerprint(world)
    return prints


class TestSameResultAsOneProcess:
    @pytest.mark.parametrize("enrich", [False, True], ids=["plain", "entity-names"])
    def test_two_workers_write_exactly_what_one_process_writes(
        self, pool: ProcessPagePipeline, one_process: dict[bool, tuple[Any, ...]], enrich: bool
    ) -> None:
        """Same logs in the same order, same counts, same cursor, with 2 workers as with 1 process."""
        world = account(enrich=enrich)
        result = world.run(settings=SETTINGS, pipeline=pool)
        assert result.job.status == COMPLETED
        assert result.steps > 759 // 40  # several pages, each cut into steps by the parent
        assert fingerprint(world) == one_process[enrich]

    def test_a_stop_mid_run_keeps_the_cursor_and_the_rerun_completes_identically(
        self, pool: ProcessPagePipeline, one_process: dict[bool, tuple[Any, ...]]
    ) -> None:
        """Pages read ahead when the run stops are dropped: the cursor covers only what was written."""
        world = account()
        saved: list[MigrationJob] = []
        stopped = world.run(
            settings=SETTINGS, pipeline=pool, should_stop=lambda: len(saved) >= 3, on_progress=saved.append
        )
        assert stopped.stopped
        assert stopped.job.status == IN_PROGRESS
        written = {log.external_id for log in world.logs.logs}
        assert stopped.job.tally.migrated == len(written)
        assert all(int(eid.rsplit(":", 1)[1]) <= stopped.job.last_audit_id for eid in written)
        world.run(owner="runner-2", settings=SETTINGS, pipeline=pool)
        assert fingerprint(world) == one_process[False]

    def test_a_cancel_mid_run_stops_the_workers_work_and_resumes_cleanly(
        self, pool: ProcessPagePipeline
    ) -> None:
        """A cancel landing mid-run ends the pooled run at its next batch, as it ends one process."""
        world = account()

        def cancel_once(job: MigrationJob) -> None:
            if job.status == IN_PROGRESS and job.tally.processed >= 80:
                cancel(world.company, jobs=world.jobs, clock=world.clock)

        result = world.run(settings=SETTINGS, pipeline=pool, on_progress=cancel_once)
        assert result.job.status == CANCELLED
        assert 0 < result.job.last_audit_id < 759


class TestAWorkerDies:
    def test_a_killed_worker_is_worker_lost_and_the_rerun_on_the_same_pool_converges(
        self, tmp_path: Path, one_process: dict[bool, tuple[Any, ...]]
    ) -> None:
        """SIGKILL of a worker mid-run: ``WorkerLost``, lease handed back; the pool replaces the
        dead worker and the rerun ends exactly as one clean process."""
        world = account()
        job = world.jobs.latest(world.company)
        assert job is not None
        page = world.source.page(
            world.tenant, world.transformer.scope, after_id=0, cutoff=job.cutoff, limit=400
        )
        dying_row = page[-1].id
        with ProcessPagePipeline(2, DiesOnRow(dying_row, tmp_path / "died")) as pool:
            with pytest.raises(WorkerLost, match="run again to resume"):
                world.run(owner="runner-0", settings=SETTINGS, pipeline=pool)
            cut = world.jobs.latest(world.company)
            assert cut is not None
            assert cut.lease_owner is None  # handed back: the rerun need not wait for the expiry
            assert cut.status == IN_PROGRESS
            assert 0 < cut.last_audit_id < dying_row
            world.run(owner="runner-1", settings=SETTINGS, pipeline=pool)
        assert (tmp_path / "died").exists()
        assert fingerprint(world) == one_process[False]


@pytest.mark.postgres
class TestOverPostgresAndMongo:
    def test_two_workers_store_the_documents_one_process_stores(
        self, crm_dsn: str, pool: ProcessPagePipeline
    ) -> None:
        """Rows from PostgreSQL, logs into MongoDB (mongomock): with 2 workers, the same documents and job."""

        def migrate(pipeline: ProcessPagePipeline | None) -> tuple[Any, ...]:
            db = mongomock.MongoClient(tz_aware=True)["cdp"]
            apply_migration(db, "up")
            session = ReadOnlySession.from_dsn(crm_dsn)
            try:
                world = World("acme")
                world.source = PostgresAuditSource(session)  # type: ignore[assignment]
                world.users = PostgresUserDirectory(session)  # type: ignore[assignment]
                world.logs = MongoActivityLogStore.in_database(db)  # type: ignore[assignment]
                world.trigger(date_range_start=SINCE)  # ~140 rows: mongomock's inserts are slow
                job = world.run(settings=SETTINGS, pipeline=pipeline).job
            finally:
                session.close()
            docs = list(db["activity_logs"].find({}, {"_id": 0}).sort("external_id"))
            return job.status, job.tally, job.last_audit_id, len(docs), repr(docs)

        one = migrate(None)
        assert one[0] == COMPLETED
        assert one[3] > 50
        assert migrate(pool) == one


class TestLinesEncodedByTheWorkers:
    def test_the_sink_writes_a_line_encoded_ahead_for_that_very_log_only(self, tmp_path: Path) -> None:
        """A line encoded ahead is written for its own log object; an equal log made later (the loop
        replaced it) is encoded by the sink itself, so what is written is the log as written."""
        encoded: EncodedLogs[tuple[str, bytes]] = EncodedLogs()
        ahead, replaced = activity_log(1), activity_log(2)
        encoded.add([ahead, replaced], [("", b'{"ahead": 1}\n'), ("", b'{"stale": 2}\n')])
        with JsonlActivityLogSink(tmp_path / "logs.jsonl", encoded=encoded) as sink:
            results = sink.insert_batch([ahead, attrs.evolve(replaced)])
        assert [r.status for r in results] == ["inserted", "inserted"]
        lines = (tmp_path / "logs.jsonl").read_bytes().splitlines(keepends=True)
        assert lines == [b'{"ahead": 1}\n', sink_line(replaced)[1]]
        assert len(encoded) == 1  # the replaced log's entry was never asked for
        encoded.clear()
        assert encoded.take(replaced) is None


class TestWhatTheWorkersAreSent:
    def test_a_rule_chain_that_cannot_reach_a_worker_is_a_config_error_before_any_process(self) -> None:
        """A recipe holding a local function fails at once as CONFIG_INVALID, naming ``workers``."""

        def local_chain(mapping: MappingConfig) -> RuleChain:
            return RuleChain.from_config(mapping)

        with pytest.raises(ConfigError, match="workers"):
            ProcessPagePipeline(2, TransformerRecipe(load_default_config(), rule_chain=local_chain))
