"""``run_job`` with its pages transformed by worker processes (``ProcessPagePipeline``, real processes).

The account is the corpus tenant ``acme`` in memory (759 rows, pages of 40) — and once from
PostgreSQL into MongoDB (mongomock); the pool is the real one (forkserver processes). What it
writes, how it counts and where it leaves the cursor must be exactly what one process does, also
when the run stops early, is cancelled, or loses a worker.
"""

from __future__ import annotations

import datetime as dt
import gc
import multiprocessing
import pickle
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import mongomock
import pytest
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from pymongo import MongoClient

from crm_audit_adapters.bootstrap import Runtime, build_runtime
from crm_audit_adapters.collector import RUN_LOOP_FIRST_THRESHOLD
from crm_audit_adapters.crm_postgres import PostgresAuditSource, PostgresUserDirectory, ReadOnlySession
from crm_audit_adapters.files import JsonlActivityLogSink
from crm_audit_adapters.mongo import MongoActivityLogStore, MongoContactDirectory
from crm_audit_adapters.mongo.activity_logs import BsonLogEncoder
from crm_audit_adapters.mongo.indexes import apply_migration
from crm_audit_adapters.page_pool import ProcessPagePipeline, TransformerRecipe, worker
from crm_audit_adapters.settings import Settings
from crm_audit_adapters.usman import UsmanClient, UsmanConfig
from crm_audit_transform.chain import RuleChain
from crm_audit_transform.config import MappingConfig, load_default_config
from crm_audit_transform.domain import ActivityLog, AuditRow, EncodedLog, Migrated, Outcome
from crm_audit_transform.errors import ConfigError, DirectoryRefused, SourceUnavailable, WorkerLost
from crm_audit_transform.jobs import CANCELLED, COMPLETED, IN_PROGRESS, MigrationJob
from crm_audit_transform.lookup import LookupContext, LookupPorts, RunLookups
from crm_audit_transform.transformer import Transformer
from crm_audit_transform.usecases import RunSettings
from crm_audit_transform.usecases.cancel import cancel
from crm_audit_transform.usecases.pages import PageSpan, TransformedPage
from support.corpus_account import World, audit_rows
from support.corpus_account import users as users_of
from support.page_workers import (
    DiesOnRow,
    FailingSpanReads,
    FinishesAfterTheRunner,
    NotingSpanReads,
    NotingTransformer,
    RefusesHere,
    SentToWorkers,
    SlowWorker,
    SpanReadFails,
    TransformsAfterTheRunnersPages,
    WaitsForARead,
    WaitsForTheRunnersPage,
    WaitsOnItsFirstPage,
    imported,
    page_pool,
)

TENANT = "acme"
SETTINGS = RunSettings(page_size=40, halt_threshold=1.0, lease_seconds=60)
SINCE = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)
RAW: CodecOptions[RawBSONDocument] = CodecOptions(document_class=RawBSONDocument)


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


def sent_to_workers(
    world: World, *, users: SentToWorkers | None = None, sso: SentToWorkers | None = None
) -> World:
    """``world`` with lookup ports a page pool sends to its workers (one trip a page)."""
    world.users = users or SentToWorkers(world.users)  # type: ignore[assignment]
    world.sso = sso or SentToWorkers(world.sso)  # type: ignore[assignment]
    world.contacts = SentToWorkers(world.contacts)  # type: ignore[assignment]
    return world


def pages_of(world: World, size: int) -> list[list[AuditRow]]:
    """The job's pages of ``size`` rows, as the run reads them."""
    job = world.jobs.latest(world.company)
    assert job is not None
    rows = world.source.page(
        world.tenant, world.transformer.scope, after_id=0, cutoff=job.cutoff, limit=10_000
    )
    return [list(rows[k : k + size]) for k in range(0, len(rows), size)]


class TestOneTripAPage:
    """Lookup ports that can be copied to the workers (``ports.WorkerCopy``): each worker looks its
    pages up itself, with its own copies and cache; the runner only writes what comes back."""

    @pytest.mark.parametrize("share", [True, False], ids=["sharing", "not-sharing"])
    def test_workers_that_look_their_pages_up_write_exactly_what_one_process_writes(
        self, one_process: dict[bool, tuple[Any, ...]], share: bool
    ) -> None:
        world = sent_to_workers(account())
        ports = (world.users, world.sso, world.contacts)
        before = sum(port.port.calls.total for port in ports)  # type: ignore[attr-defined]  # the trigger's
        with page_pool(2, share=share) as pool:
            result = world.run(settings=SETTINGS, pipeline=pool)
        assert result.job.status == COMPLETED
        assert fingerprint(world) == one_process[False]
        runner_calls = sum(port.port.calls.total for port in ports) - before  # type: ignore[attr-defined]
        if share:
            assert runner_calls > 0  # the runner's own pages, looked up here
        else:
            assert runner_calls == 0  # every page looked up by a worker, with its own copies

    def test_a_workers_failing_lookup_is_raised_after_the_pages_before_it_as_in_one_process(self) -> None:
        """A user lookup failing for a user first named on a later page: the pages before it are
        written, then the error; the cursor is where one process leaves it."""
        world = account()
        pages = pages_of(world, SETTINGS.page_size)
        seen = {row.user_id for page in pages[:3] for row in page}
        failing = next(row.user_id for page in pages[3:] for row in page if row.user_id not in seen | {None})
        error = SourceUnavailable("the CRM's users could not be read")
        cursors = []
        for pool in (None, page_pool(2, share=False)):
            world = account()
            users = SentToWorkers(world.users, error, failing, anywhere=True)
            sent_to_workers(world, users=users)
            try:
                with pytest.raises(SourceUnavailable, match="users could not be read"):
                    world.run(settings=SETTINGS, pipeline=pool)
            finally:
                if pool is not None:
                    pool.close()
            cut = world.jobs.latest(world.company)
            assert cut is not None
            cursors.append((cut.last_audit_id, cut.tally, repr(world.logs.logs)))
        assert cursors[0] == cursors[1]
        assert cursors[0][0] >= pages[2][-1].id  # the pages before the failing one were written

    @pytest.mark.parametrize("trips", ["one-trip", "two-trips"])
    def test_a_refusal_the_runner_meets_for_its_own_page_is_raised_after_the_workers_pages_before_it(
        self, trips: str
    ) -> None:
        """USMAN refusing (``DirectoryRefused``, a 401) a user first named on page 1, which the runner
        takes itself while page 0 is on its slow worker (one trip: the runner looks its own pages up;
        two trips: it looks every page up, in order): page 0 is written, then the refusal, the
        cursor where one process leaves it. Before, the runner's lookup raised at once and dropped
        page 0 (``run --workers 2`` against a USMAN that refuses mid-run stopped pages earlier than
        one process); this test fails there."""
        settings = RunSettings(page_size=10, halt_threshold=1.0, lease_seconds=60)
        pages = pages_of(account(), settings.page_size)
        named = {row.user_id for row in pages[0]}
        email = {user.id: user.email for user in users_of(TENANT)}
        failing = next(email[r.user_id] for r in pages[1] if r.user_id not in named and email.get(r.user_id))
        refused = DirectoryRefused("USMAN refused the request with HTTP 401", status_code=401)
        ends = []
        for pool in (None, ProcessPagePipeline(2, SlowWorker(0.5), pages_per_worker=1, own_pages=1)):
            world = account()
            if trips == "one-trip":
                sent_to_workers(world, sso=SentToWorkers(world.sso, refused, failing, anywhere=True))
            else:
                world.sso = RefusesHere(world.sso, refused, failing)  # type: ignore[assignment]
            try:
                if pool is not None:
                    pool.start(wait=True)  # the worker up: it takes page 0, the runner page 1
                with pytest.raises(DirectoryRefused, match="401"):
                    world.run(settings=settings, pipeline=pool)
            finally:
                if pool is not None:
                    pool.close()
            cut = world.jobs.latest(world.company)
            assert cut is not None
            ends.append((cut.last_audit_id, cut.tally, cut.lease_owner, repr(world.logs.logs)))
        assert ends[0][0] == pages[0][-1].id  # one process: page 0 written, then the refusal
        assert ends[1] == ends[0]

    def test_a_workers_usman_refusal_stops_the_run_before_any_write(self) -> None:
        """USMAN answering 401 to a worker: ``DirectoryRefused`` from the first page, nothing
        written, the lease handed back (the CLI's exit 3)."""
        world = account()
        start = world.jobs.latest(world.company)
        assert start is not None
        refused = DirectoryRefused("USMAN refused the request: 401 Unauthorized", status_code=401)
        sent_to_workers(world, sso=SentToWorkers(world.sso, refused))
        with page_pool(2, share=False) as pool, pytest.raises(DirectoryRefused, match="401") as raised:
            world.run(settings=SETTINGS, pipeline=pool)
        assert raised.value.status_code == 401
        assert not world.logs.logs
        job = world.jobs.latest(world.company)
        assert job is not None
        assert (job.last_audit_id, job.tally, job.lease_owner) == (start.last_audit_id, start.tally, None)

    def test_a_usman_outage_met_by_the_workers_degrades_and_halts_where_one_process_halts(self) -> None:
        """USMAN down for every worker: the actors degrade and the halt rule stops the job at the
        point, with the counts, one process reaches."""
        settings = RunSettings(page_size=40, lease_seconds=60)
        prints = []
        for pool in (None, page_pool(2)):
            world = World(sso_failing=True)
            world.trigger()
            sent_to_workers(world)
            try:
                result = world.run(settings=settings, pipeline=pool)
            finally:
                if pool is not None:
                    pool.close()
            assert result.job.status == "halted"
            assert result.job.tally.actors_degraded > 0
            prints.append(fingerprint(world))
        assert prints[0] == prints[1]

    def test_a_killed_worker_that_looks_its_pages_up_is_worker_lost_and_the_rerun_converges(
        self, tmp_path: Path, one_process: dict[bool, tuple[Any, ...]]
    ) -> None:
        world = sent_to_workers(account())
        dying_row = pages_of(world, 400)[0][-1].id
        with ProcessPagePipeline(2, DiesOnRow(dying_row, tmp_path / "died")) as pool:
            pool.start(wait=True)  # the worker up before the first page: it takes its share
            with pytest.raises(WorkerLost, match="run again to resume"):
                world.run(owner="runner-0", settings=SETTINGS, pipeline=pool)
            cut = world.jobs.latest(world.company)
            assert cut is not None
            assert (cut.lease_owner, cut.status) == (None, IN_PROGRESS)
            assert 0 < cut.last_audit_id < one_process[False][3]
            world.run(owner="runner-1", settings=SETTINGS, pipeline=pool)
        assert (tmp_path / "died").exists()
        assert fingerprint(world) == one_process[False]


class TestTheRuntimesLookupsInAWorker:
    def test_the_runtimes_users_usman_and_contacts_reach_a_worker_without_a_secret_shown(
        self, wire_mongo_uri: str
    ) -> None:
        """``run --workers``' ports all have a worker copy (one trip a page); pickled, they come
        back as the same kinds of port, and none shows the DSN's password or USMAN's token."""
        settings = Settings(
            database_url="postgresql://crm:pg-secret@127.0.0.1:1/crm",
            mongo_uri=wire_mongo_uri,
            usman=UsmanConfig("http://127.0.0.1:1", token="usman-secret"),
        )
        with build_runtime(settings) as runtime:
            ports = LookupPorts(runtime.users, runtime.sso, runtime.contacts)
            copied = RunLookups(ports, company_sso_id="company", tenant=TENANT).for_worker()
            assert copied is not None
            sent = pickle.loads(pickle.dumps(copied)).ports
            users, sso, contacts = sent.users, sent.sso, sent.contacts
            assert isinstance(users, PostgresUserDirectory)
            assert isinstance(sso, UsmanClient)
            assert isinstance(contacts, MongoContactDirectory)
            shown = repr((copied, users, sso, contacts))
            assert "secret" not in shown
            for port in (users, sso, contacts):
                port.close()

    def test_a_client_given_to_the_runtime_keeps_the_lookups_in_the_runner(self) -> None:
        """An in-process mongomock (or any injected client) cannot be copied: two trips a page."""
        settings = Settings(
            database_url="postgresql://crm@127.0.0.1:1/crm",
            mongo_uri="mongomock://",
            usman=UsmanConfig("http://127.0.0.1:1"),
        )
        with build_runtime(settings) as runtime:
            ports = LookupPorts(runtime.users, runtime.sso, runtime.contacts)
            assert RunLookups(ports, company_sso_id="company", tenant=TENANT).for_worker() is None


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
            pool.start(wait=True)  # the worker up before the first page: it takes its share
            with pytest.raises(WorkerLost, match="run again to resume"):
                world.run(owner="runner-0", settings=SETTINGS, pipeline=pool)
            cut = world.jobs.latest(world.company)
            assert cut is not None
            assert cut.lease_owner is None  # handed back: the rerun need not wait for the expiry
            assert cut.status == IN_PROGRESS
            assert 0 < cut.last_audit_id < one_process[False][3]
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


class TestLogsEncodedByTheWorkers:
    @pytest.mark.parametrize("enrich", [False, True], ids=["plain", "entity-names"])
    def test_two_workers_write_the_jsonl_bytes_one_process_writes(
        self, tmp_path: Path, pool: ProcessPagePipeline, enrich: bool
    ) -> None:
        """Into a JSONL file, the workers encode the lines (the sink's ``log_encoder``) and the file,
        the counts and the cursor are byte for byte one process's; with entity names, the logs the
        loop names cross as logs and are encoded after their names are set. (The pages the runner's
        process takes keep their logs, which the sink encodes as in one process.)"""
        runs: dict[str, tuple[Any, ...]] = {}
        for mode, pipeline in (("one", None), ("pool", pool)):
            world = account(enrich=enrich)
            out = tmp_path / f"{mode}.jsonl"
            kinds: list[type] = []

            def seen(outcomes: Sequence[Outcome]) -> None:
                kinds.extend(type(o.log) for o in outcomes if isinstance(o, Migrated))  # noqa: B023

            with JsonlActivityLogSink(out) as sink:
                world.logs = sink  # type: ignore[assignment]
                job = world.run(settings=SETTINGS, pipeline=pipeline, on_outcomes=seen).job
            runs[mode] = (job.status, job.tally, job.enrichment, job.last_audit_id, out.read_bytes())
            if pipeline is None:
                assert set(kinds) == {ActivityLog}
            else:  # the association logs to name are logs, every other one a worker made is bytes
                assert EncodedLog in kinds
                assert set(kinds) <= {EncodedLog, ActivityLog}
                assert ActivityLog in kinds or not enrich
        assert runs["pool"] == runs["one"]
        assert runs["one"][0] == COMPLETED
        assert runs["one"][4].count(b"\n") > 300
        if enrich:
            assert b'"linked_entity_name"' in runs["one"][4]

    def test_two_workers_store_over_the_wire_the_documents_one_process_stores(
        self, pool: ProcessPagePipeline, wire_mongo_client: MongoClient[dict[str, Any]]
    ) -> None:
        """Through pymongo to a wire server, the workers encode the BSON (``BsonLogEncoder``) and
        the store sends those bytes: the same documents, field order included, and the same job."""
        runs: dict[str, tuple[Any, ...]] = {}
        for mode, pipeline in (("one", None), ("pool", pool)):
            name = f"crm_audit_pool_{mode}_{uuid.uuid4().hex[:8]}"
            db = wire_mongo_client[name]
            try:
                apply_migration(db, "up")
                world = World()
                store = MongoActivityLogStore.in_database(db)
                assert isinstance(store.log_encoder(), BsonLogEncoder)
                world.logs = store  # type: ignore[assignment]
                world.trigger(date_range_start=SINCE)  # ~140 rows: the emulator's inserts are slow
                job = world.run(settings=SETTINGS, pipeline=pipeline).job
                raw = db.get_collection("activity_logs", codec_options=RAW)
                docs = sorted(
                    (bytes(doc.raw)[4 + 17 :] for doc in raw.find({})),  # past the length and the _id
                )
            finally:
                wire_mongo_client.drop_database(name)
            runs[mode] = (job.status, job.tally, job.last_audit_id, docs)
        assert runs["pool"] == runs["one"]
        assert runs["one"][0] == COMPLETED
        assert len(runs["one"][3]) > 50


class TestTheRunnersShare:
    def test_a_runner_whose_worker_lags_transforms_pages_itself_and_writes_one_process_bytes(
        self, tmp_path: Path
    ) -> None:
        """``--workers 2`` is the runner and one worker: when the next page is still on the worker,
        the runner transforms pages of its own (their logs reach the sink as logs), in order, and
        the file, the counts and the cursor are one process's."""
        runs: dict[str, tuple[Any, ...]] = {}
        kinds: set[type] = set()
        with ProcessPagePipeline(2, SlowWorker(0.05)) as lagging:
            # The worker up before the first page: on a busy machine the runner took every page
            # of the small account itself while the worker was still starting.
            lagging.start(wait=True)
            for mode, pipeline in (("one", None), ("pool", lagging)):
                world = account()
                out = tmp_path / f"{mode}.jsonl"

                def seen(outcomes: Sequence[Outcome]) -> None:
                    kinds.update(type(o.log) for o in outcomes if isinstance(o, Migrated))

                with JsonlActivityLogSink(out) as sink:
                    world.logs = sink  # type: ignore[assignment]
                    job = world.run(settings=SETTINGS, pipeline=pipeline, on_outcomes=seen).job
                runs[mode] = (job.status, job.tally, job.last_audit_id, out.read_bytes())
                if pipeline is None:
                    kinds.clear()
        assert kinds == {EncodedLog, ActivityLog}  # pages of both processes
        assert runs["pool"] == runs["one"]
        assert runs["one"][0] == COMPLETED

    def test_without_sharing_every_page_is_a_workers_and_the_logs_are_one_process_logs(
        self, one_process: dict[bool, tuple[Any, ...]]
    ) -> None:
        """``share=False``: two worker processes take every page, the runner only reads, looks up
        and writes; the result is one process's."""
        world = account()
        with page_pool(2, share=False) as pool:
            world.run(settings=SETTINGS, pipeline=pool)
        assert fingerprint(world) == one_process[False]

    def test_a_runner_prepares_a_page_of_its_own_while_its_worker_prepares_the_head(
        self, tmp_path: Path
    ) -> None:
        """The runner does not wait for the head page's lookups request while it can take a page of
        its own: the worker, holding its first page until the runner has prepared one (10 s at
        most), sees the runner's page first. The pages come back whole, in order."""
        rows = sorted(audit_rows(TENANT), key=lambda row: row.id)[:20]
        pages = [rows[start : start + 5] for start in range(0, 20, 5)]
        log = tmp_path / "events"
        # 2 pages a side: 4 pages, so the worker does not hold them all.
        with ProcessPagePipeline(2, WaitsForTheRunnersPage(log), pages_per_worker=2) as pool:
            pool.start(wait=True)  # the worker up before the first page: it takes its share
            done = list(
                pool.transform_pages(
                    pages,
                    NotingTransformer(log),
                    lambda request: LookupContext(),
                    company_sso_id="company",
                )
            )
        events = log.read_text().splitlines()
        assert events[0].startswith("runner prepared ")
        assert f"worker prepared {rows[0].id}" in events
        assert [list(page.ids) for page in done] == [[row.id for row in page] for page in pages]

    def test_a_runner_whose_page_waits_behind_one_being_prepared_transforms_it_before_the_head_is_back(
        self, tmp_path: Path
    ) -> None:
        """The runner's own page waits for its lookups behind the worker's second page, still being
        prepared (slowly): the runner waits for that page's plan, not for the head's result, and
        transforms its page while the worker finishes the head — the worker, holding the head's
        rules until the runner has transformed a page (10 s at most), sees it first."""
        rows = sorted(audit_rows(TENANT), key=lambda row: row.id)[:20]
        pages = [rows[start : start + 5] for start in range(0, 20, 5)]
        log = tmp_path / "events"
        # 2 pages a side: the worker's second page is the one prepared slowly, the runner's the third.
        with ProcessPagePipeline(2, FinishesAfterTheRunner(rows[5].id, log), pages_per_worker=2) as pool:
            pool.start(wait=True)  # the worker up before the first page: it takes its share
            done = list(
                pool.transform_pages(
                    pages,
                    NotingTransformer(log),
                    lambda request: LookupContext(),
                    company_sso_id="company",
                )
            )
        events = log.read_text().splitlines()
        transformed = [event for event in events if "transformed" in event]
        assert transformed[0] == f"runner transformed {rows[10].id}"
        assert f"worker transformed {rows[0].id}" in transformed
        assert [list(page.ids) for page in done] == [[row.id for row in page] for page in pages]

    @pytest.mark.parametrize("own_pages", [1, 3, None])
    def test_own_pages_bounds_the_runners_pages_in_flight_while_the_head_is_on_its_worker(
        self, tmp_path: Path, own_pages: int | None
    ) -> None:
        """While the head page is on its worker (which holds its rules until the runner has
        transformed 3 pages of its own, 3 s at most), the runner takes at most ``own_pages`` pages of
        its own: none can be written before the head, so none leaves the runner's hands. By default
        (None: the pool's defaults, as ``run --workers 2`` builds it, the worker holding its first
        page's rules until the runner has transformed 4) it takes 4 (``PAGES_IN_FLIGHT``): with the
        old default of 2 it stopped at 2 while its worker still had the head."""
        rows = sorted(audit_rows(TENANT), key=lambda row: row.id)[:40]
        pages = [rows[start : start + 5] for start in range(0, 40, 5)]
        log = tmp_path / "events"
        expected = 4 if own_pages is None else own_pages
        recipe = TransformsAfterTheRunnersPages(log, max(expected, 3), 3.0)
        depth: dict[str, int] = {} if own_pages is None else {"pages_per_worker": 2, "own_pages": own_pages}
        with ProcessPagePipeline(2, recipe, **depth) as pool:
            pool.start(wait=True)  # the worker up before the first page: it takes its share
            done = list(
                pool.transform_pages(
                    pages, NotingTransformer(log), lambda request: LookupContext(), company_sso_id="company"
                )
            )
        events = log.read_text().splitlines()
        first_worker = next(i for i, event in enumerate(events) if event.startswith("worker transformed"))
        assert sum(event.startswith("runner transformed") for event in events[:first_worker]) == expected
        assert [list(page.ids) for page in done] == [[row.id for row in page] for page in pages]

    def test_own_pages_below_one_is_refused(self) -> None:
        with pytest.raises(ValueError, match="own_pages must be at least 1"):
            ProcessPagePipeline(2, TransformerRecipe(load_default_config()), own_pages=0)

    def test_a_pool_that_shares_needs_a_worker_besides_the_runner(self) -> None:
        """With ``share`` the runner is one of the ``workers``: one alone is no pool (``ValueError``)."""
        with pytest.raises(ValueError, match="between 2 and"):
            ProcessPagePipeline(1, TransformerRecipe(load_default_config()))


class TestWorkersReadAhead:
    def test_a_worker_reads_its_next_pages_rows_while_it_prepares_the_page_before(
        self, tmp_path: Path
    ) -> None:
        """A worker handed two pages by id reads the second one's rows while it still prepares the
        first: the second read is noted before the first page's prepare ends (without reading
        ahead, that prepare waits its 10 s for a read that comes only after it). Both pages come
        back whole, in order."""
        rows = tuple(sorted(audit_rows(TENANT), key=lambda row: row.id)[:10])
        log = tmp_path / "events"
        first, second = (tuple(row.id for row in rows[:5]), tuple(row.id for row in rows[5:]))
        source = NotingSpanReads(rows, first[0], log)
        spans = [PageSpan(TENANT, ("Contact",), SINCE, ids) for ids in (first, second)]
        with ProcessPagePipeline(1, WaitsOnItsFirstPage(first[0], log), share=False) as pool:
            pages = list(
                pool.transform_spans(
                    spans,
                    source,
                    Transformer(load_default_config()),
                    lambda request: LookupContext(),
                    company_sso_id="company",
                )
            )
        events = log.read_text().splitlines()
        assert events.index(f"read {second[0]}") < events.index(f"prepared {first[0]}")
        assert [page.ids for page in pages] == [first, second]
        assert [[o.audit_id for o in page.result.outcomes] for page in pages] == [list(first), list(second)]

    def test_a_worker_holds_four_pages_by_default_and_reads_the_fourth_while_it_prepares_the_first(
        self, tmp_path: Path
    ) -> None:
        """By default a worker is handed ``PAGES_IN_FLIGHT`` (4) pages before it hands the first
        back: its reader reads the fourth page's rows while the worker still prepares the first. With
        the old default of 2 the fourth was handed over only after the first two came back, so the
        worker's prepare of the first waited its 10 s for a read that came after it (the order
        below fails)."""
        rows = tuple(sorted(audit_rows(TENANT), key=lambda row: row.id)[:20])
        log = tmp_path / "events"
        spans = [
            PageSpan(TENANT, ("Contact",), SINCE, tuple(row.id for row in rows[i : i + 5]))
            for i in range(0, 20, 5)
        ]
        first, fourth = spans[0].ids[0], spans[3].ids[0]
        source = NotingSpanReads(rows, first, log)
        with ProcessPagePipeline(1, WaitsForARead(first, fourth, log), share=False) as pool:
            pages = list(
                pool.transform_spans(
                    spans,
                    source,
                    Transformer(load_default_config()),
                    lambda request: LookupContext(),
                    company_sso_id="company",
                )
            )
        events = log.read_text().splitlines()
        assert events.index(f"read {fourth}") < events.index(f"prepared {first}")
        assert [page.ids for page in pages] == [span.ids for span in spans]

    def test_a_pool_reused_after_a_run_that_stopped_early_reads_and_finishes_the_next_run(
        self, tmp_path: Path
    ) -> None:
        """A run over spans that stops early (a halt, a cancel, a lost lease) leaves a
        ``prepare_span`` of its own queued on the worker, past cancelling. The next run on the same
        pool gets every page: that stale call still finds its rows, because a run's rows are
        dropped only when the next run's ``begin`` runs on that worker, after every call before it.
        Before, the channel's thread dropped them on the next run's message, the stale call waited
        for ever, and the next run and ``close`` with it."""
        rows = tuple(sorted(audit_rows(TENANT), key=lambda row: row.id)[:20])
        source = NotingSpanReads(rows, rows[0].id, tmp_path / "events")
        spans = [
            PageSpan(TENANT, ("Contact",), SINCE, tuple(row.id for row in rows[i : i + 4]))
            for i in range(0, 20, 4)
        ]
        pool = ProcessPagePipeline(1, SlowWorker(0.5), share=False, pages_per_worker=3)
        finished: list[list[Any]] = []
        try:
            first = pool.transform_spans(
                spans, source, Transformer(load_default_config()), _slow_lookup, company_sso_id="c"
            )
            assert [next(first).ids, next(first).ids] == [spans[0].ids, spans[1].ids]
            first.close()  # the run stops early

            def second_run() -> None:
                finished.append(
                    list(
                        pool.transform_spans(
                            spans,
                            source,
                            Transformer(load_default_config()),
                            lambda request: LookupContext(),
                            company_sso_id="c",
                        )
                    )
                )

            runner = threading.Thread(target=second_run, daemon=True)
            runner.start()
            runner.join(60)
            assert finished, "the second run on the reused pool got no result in 60 s"
            assert [page.ids for page in finished[0]] == [span.ids for span in spans]
        finally:
            if finished:
                pool.close()
            else:  # a hung worker would hang close(): end it so the suite goes on
                _kill_workers(pool)


def _slow_lookup(request: object) -> LookupContext:
    time.sleep(0.2)  # the first run's next pages are queued on the worker when it stops
    return LookupContext()


def _kill_workers(pool: ProcessPagePipeline) -> None:
    for executor in pool._processes.executors:
        if executor is not None:
            for process in list(executor._processes.values()):
                process.kill()
            executor.shutdown(wait=False, cancel_futures=True)


class TestAReadThatFails:
    """A read that raises, ahead of the pages before it, is raised after they come back (in
    order), as in one process: the run writes them, a dry run keeps them (runner.md)."""

    def test_the_pages_read_before_a_failing_read_come_back_first(self) -> None:
        rows = sorted(audit_rows(TENANT), key=lambda row: row.id)[:40]
        pages = [rows[:10], rows[10:20], rows[20:30], rows[30:]]

        def read() -> Iterator[Sequence[AuditRow]]:
            yield from pages[:3]
            raise SpanReadFails("the fourth page's read")

        got: list[TransformedPage] = []
        with ProcessPagePipeline(2, TransformerRecipe(load_default_config()), pages_per_worker=2) as pool:
            transformed = pool.transform_pages(
                read(),
                Transformer(load_default_config()),
                lambda request: LookupContext(),
                company_sso_id="company",
            )
            with pytest.raises(SpanReadFails, match="fourth"):
                got.extend(transformed)  # keeps the pages that came before the error
        assert [list(page.ids) for page in got] == [[row.id for row in page] for page in pages[:3]]
        assert [[o.audit_id for o in page.result.outcomes] for page in got] == [
            [row.id for row in page] for page in pages[:3]
        ]

    def test_a_workers_failed_read_is_raised_after_the_pages_before_it(self) -> None:
        """The worker reads the third page's rows (and fails) while the parent looks up the first
        two (slowly): both still come back before the error."""
        rows = tuple(sorted(audit_rows(TENANT), key=lambda row: row.id)[:15])
        spans = [
            PageSpan(TENANT, ("Contact",), SINCE, tuple(row.id for row in rows[k : k + 5]))
            for k in (0, 5, 10)
        ]
        source = FailingSpanReads(rows, rows[10].id)

        def slow_lookup(request: object) -> LookupContext:
            time.sleep(0.5)  # the worker prepares the next pages meanwhile (not a timing assertion)
            return LookupContext()

        got: list[TransformedPage] = []
        with ProcessPagePipeline(
            1, TransformerRecipe(load_default_config()), share=False, pages_per_worker=3
        ) as pool:
            transformed = pool.transform_spans(
                spans,
                source,
                Transformer(load_default_config()),
                slow_lookup,
                company_sso_id="company",
            )
            with pytest.raises(SpanReadFails, match="span from"):
                got.extend(transformed)  # keeps the pages that came before the error
        assert [tuple(page.ids) for page in got] == [spans[0].ids, spans[1].ids]


class TestTheWorkersCollector:
    def test_a_worker_runs_with_the_run_loops_collector_settings(self) -> None:
        """A worker process's young passes start every RUN_LOOP_FIRST_THRESHOLD allocations and what
        it imported is frozen, as ``run`` has it around its own loop."""
        context = multiprocessing.get_context("forkserver")
        with ProcessPoolExecutor(
            1,
            mp_context=context,
            initializer=worker.start,
            initargs=(TransformerRecipe(load_default_config()),),
        ) as executor:
            threshold = executor.submit(gc.get_threshold).result()
            frozen = executor.submit(gc.get_freeze_count).result()
        assert threshold[0] == RUN_LOOP_FIRST_THRESHOLD != gc.get_threshold()[0]
        assert frozen > 0


class TestAWorkersImports:
    def test_a_worker_imports_its_ports_modules_before_its_reader_thread_starts(self) -> None:
        """``spawn`` (no fork server's preload): ``worker.start`` alone imports the modules of the
        span readers and lookup ports, so its two threads never import them at once."""
        context = multiprocessing.get_context("spawn")
        reading, writing = context.Pipe(duplex=False)
        try:
            with ProcessPoolExecutor(
                1,
                mp_context=context,
                initializer=worker.start,
                initargs=(TransformerRecipe(load_default_config()), reading),
            ) as executor:
                got = executor.submit(imported, worker.PORT_MODULES).result()
        finally:
            writing.close()
            reading.close()
        assert got == list(worker.PORT_MODULES)


class TestWhatTheWorkersAreSent:
    def test_a_rule_chain_that_cannot_reach_a_worker_is_a_config_error_before_any_process(self) -> None:
        """A recipe holding a local function fails at once as CONFIG_INVALID, naming ``workers``."""

        def local_chain(mapping: MappingConfig) -> RuleChain:
            return RuleChain.from_config(mapping)

        with pytest.raises(ConfigError, match="workers"):
            ProcessPagePipeline(2, TransformerRecipe(load_default_config(), rule_chain=local_chain))


def interrupted(runtime: Runtime) -> None:
    """``runtime`` with a page pool, left by a Ctrl-C."""
    with runtime:
        runtime.use_workers(2)
        raise KeyboardInterrupt


class TestTheRuntimeLeftByAnException:
    def test_its_page_workers_are_not_waited_for_but_are_on_a_clean_exit(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A runtime left by an exception (a second Ctrl-C, a typed error) closes its page pool
        without waiting: a worker that never answers (stopped, hung) must not hold the exit. A
        clean exit still lets the pages in flight finish."""
        waits: list[bool] = []
        close = ProcessPagePipeline.close

        def recorded(pipeline: ProcessPagePipeline, *, wait: bool = True) -> None:
            waits.append(wait)
            close(pipeline, wait=wait)

        monkeypatch.setattr(ProcessPagePipeline, "close", recorded)
        settings = Settings(
            database_url="postgresql://crm@127.0.0.1:1/crm",
            mongo_uri="mongomock://",
            usman=UsmanConfig("http://127.0.0.1:1"),
        )
        with pytest.raises(KeyboardInterrupt):
            interrupted(build_runtime(settings))
        assert waits[0] is False
        waits.clear()
        with build_runtime(settings) as runtime:
            runtime.use_workers(2)
        assert waits == [True]


class TestTheRuntimesWorkersStart:
    def test_use_workers_starts_the_worker_before_any_run(self) -> None:
        """``use_workers`` starts its worker process at once, before the service runs anything, so
        its fork and start overlap the run's lease and checks; closing the runtime stops it."""
        settings = Settings(
            database_url="postgresql://crm@127.0.0.1:1/crm",
            mongo_uri="mongomock://",
            usman=UsmanConfig("http://127.0.0.1:1"),
        )
        before = {child.pid for child in multiprocessing.active_children()}
        with build_runtime(settings) as runtime:
            runtime.use_workers(2)
            deadline = time.monotonic() + 60
            started: set[int | None] = set()
            while not started and time.monotonic() < deadline:
                started = {child.pid for child in multiprocessing.active_children()} - before
                time.sleep(0.01)
            assert len(started) == 1
        assert not {child.pid for child in multiprocessing.active_children()} - before
