"""Crash the run loop at every step boundary, resume, and get exactly a clean run's result.

Each case wraps one port of an in-memory account (corpus tenant ``acme``, ids ≤ 120, pages of
40 rows) so that its n-th call dies before or after doing its work — before/after an insert
batch, before/after a step's one job write (progress and lease renewal together), between pages,
inside each lookup, around the run's first lease and its final save — then starts new runs
(after the dead runner's lease expired) until the job completes. The timeline and the job's
final status must equal the clean run's (``support.final_status``: every count ``status`` shows,
and the halt rule's basis): no duplicate, no gap, no count twice. The run-loop cases run twice: in
one process, and with the pages transformed by a pool of 2 worker processes (``--workers 2``),
whose pages are read and looked up ahead of the writes. With entity names wired, the same holds
around naming, the write and the progress write: no key is set twice, and every enrichment count
(``keys_set`` too: a replay's duplicates count the names the dead runner's inserts set) is the
clean run's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from crm_audit_transform.enrichment.enrich import EnrichPorts, enrich_migrated
from crm_audit_transform.errors import SourceUnavailable, StoreUnavailable
from crm_audit_transform.jobs import CANCELLED, COMPLETED, HALTED, IN_PROGRESS, MigrationJob
from crm_audit_transform.ports import PagePipeline
from crm_audit_transform.usecases import RESUME, RunSettings
from crm_audit_transform.usecases.cancel import cancel
from support.corpus_account import World, audit_rows
from support.final_status import final_status
from support.page_workers import page_pool

SETTINGS = RunSettings(page_size=40, halt_threshold=1.0, lease_seconds=60)
ROWS = [r for r in audit_rows("acme") if r.id <= 120]
MODES = ("one-process", "2-workers")
"""Where the run loop's pages are transformed: this process, or a pool of 2 worker processes."""


class SimulatedCrash(Exception):
    """The process died here: nothing after this point of the call happened."""


class Crashing:
    """A port whose ``method`` dies on its ``on_call``-th call, ``before`` or ``after`` delegating."""

    def __init__(
        self, inner: Any, method: str, on_call: int, when: str, error: Exception | None = None
    ) -> None:
        self._inner = inner
        self._method = method
        self._on_call = on_call
        self._when = when
        self._error = error or SimulatedCrash(f"{when} {method} #{on_call}")
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name != self._method:
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            crash = self.calls == self._on_call
            if crash and self._when == "before":
                raise self._error
            result = attr(*args, **kwargs)
            if crash and self._when == "after":
                raise self._error
            return result

        return call


class Counting:
    """A port that counts the calls of each of its methods."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            return attr(*args, **kwargs)

        return call


PORTS = {
    "insert_batch": "logs",
    "save_progress": "jobs",
    "acquire_lease": "jobs",
    "page": "source",
    "users_by_ids": "users",
    "sso_ids_by_emails": "sso",
    "contacts_by_crm_ids": "contacts",
}


def run_until_complete(world: World, first_owner: str = "runner-0") -> tuple[int, MigrationJob]:
    """Run, and after every crash expire the dead runner's lease and run again; count the crashes."""
    crashes = 0
    owner = first_owner
    for attempt in range(1, 50):
        try:
            job = world.run(owner=owner, settings=SETTINGS).job
        except SimulatedCrash:
            crashes += 1
            world.clock.advance(SETTINGS.lease_seconds + 1)
            owner = f"runner-{attempt}"
            continue
        if job.status == COMPLETED:
            return crashes, job
    raise AssertionError("the job never completed")


def fingerprint(world: World, *, basis: bool = True) -> tuple[Any, ...]:
    """The job's final status (every count ``status`` shows, enrichment's included; with ``basis``
    the halt rule's basis: a ``--resume`` moves it) and the logs."""
    job = world.jobs.latest(world.company)
    assert job is not None
    return (
        final_status(job, basis=basis),
        (job.first_audit_id, job.max_audit_id),
        repr(world.logs.logs),  # repr: some values are NaN, never equal to themselves
    )


def fingerprint_without_basis(fingerprint: tuple[Any, ...]) -> tuple[Any, ...]:
    status, *rest = fingerprint
    return ({k: v for k, v in status.items() if k != "halt_basis"}, *rest)


def fresh(pipeline: PagePipeline | None = None) -> World:
    world = World(rows=ROWS)
    world.pipeline = pipeline
    world.trigger()
    return world


@pytest.fixture(scope="module", params=MODES)
def pipeline(request: pytest.FixtureRequest) -> Iterator[PagePipeline | None]:
    """Where the runs transform their pages: this process, or a pool of 2 worker processes."""
    if request.param == "one-process":
        yield None
        return
    with page_pool(2) as pool:
        yield pool


@pytest.fixture(scope="module")
def clean(pipeline: PagePipeline | None) -> tuple[tuple[Any, ...], dict[str, int]]:
    """The clean run's fingerprint and how often it called each port method."""
    world = fresh(pipeline)
    originals = {port: getattr(world, port) for port in set(PORTS.values())}
    counters = {port: Counting(inner) for port, inner in originals.items()}
    for port, counter in counters.items():
        setattr(world, port, counter)
    crashes, _ = run_until_complete(world)
    assert crashes == 0
    for port, inner in originals.items():
        setattr(world, port, inner)
    return fingerprint(world), {method: counters[port].calls.get(method, 0) for method, port in PORTS.items()}


REPEATED = {"insert_batch", "save_progress", "page"}


def whiches(method: str, mode: str) -> tuple[str, ...]:
    # With workers, the first and the last call of each boundary (the pool's first read-ahead and
    # its end) are crashed into; the second adds little there and costs suite time.
    return ("first", "second", "last") if method in REPEATED and mode == MODES[0] else ("first", "last")


def boundaries() -> list[Any]:
    cases = []
    for mode in MODES:
        for method in PORTS:
            for when in ("before", "after"):
                for which in whiches(method, mode):
                    case_id = f"{mode}-{when}-{method}-{which}"
                    cases.append(pytest.param(mode, method, when, which, id=case_id))
    return cases


def nth(which: str, total: int) -> int:
    return {"first": 1, "second": min(2, total), "last": total}[which]


class TestCrashAtEveryBoundary:
    def test_clean_run_touches_every_boundary(
        self, clean: tuple[tuple[Any, ...], dict[str, int]], pipeline: PagePipeline | None
    ) -> None:
        """The sample is big enough that every port is called, and inserts and pages more than once."""
        _, calls = clean
        assert all(count >= 1 for count in calls.values()), calls
        assert calls["insert_batch"] >= 3
        assert calls["page"] >= 3
        assert calls["save_progress"] == calls["insert_batch"] + 1  # one per batch, and the finish
        assert calls["acquire_lease"] == 1  # the run's first lease

    @pytest.mark.parametrize(("pipeline", "method", "when", "which"), boundaries(), indirect=["pipeline"])
    def test_crash_then_resume_equals_a_clean_run(
        self,
        clean: tuple[tuple[Any, ...], dict[str, int]],
        pipeline: PagePipeline | None,
        method: str,
        when: str,
        which: str,
    ) -> None:
        """Dying at this boundary and resuming leaves the same logs and counts as never dying."""
        expected, calls = clean
        world = fresh(pipeline)
        port = PORTS[method]
        original = getattr(world, port)
        setattr(world, port, Crashing(original, method, nth(which, calls[method]), when))
        try:
            world.run(owner="runner-0", settings=SETTINGS)
        except SimulatedCrash:
            pass
        else:
            pytest.fail("the injected crash did not happen")
        setattr(world, port, original)
        world.clock.advance(SETTINGS.lease_seconds + 1)
        crashes, _ = run_until_complete(world, first_owner="runner-1")
        assert crashes == 0
        assert fingerprint(world) == expected

    def test_no_external_id_is_stored_twice_after_many_crashes(
        self, clean: tuple[tuple[Any, ...], dict[str, int]], pipeline: PagePipeline | None
    ) -> None:
        """A runner that dies after every second insert, run after run, still ends exactly clean."""
        expected, _ = clean
        world = fresh(pipeline)
        original = world.logs
        again: Callable[[], None] = lambda: setattr(  # noqa: E731
            world, "logs", Crashing(original, "insert_batch", 2, "after")
        )
        again()
        crashes = 0
        while True:
            try:
                job = world.run(owner=f"runner-{crashes}", settings=SETTINGS).job
            except SimulatedCrash:
                crashes += 1
                world.clock.advance(SETTINGS.lease_seconds + 1)
                again()
                continue
            break
        world.logs = original
        assert job.status == COMPLETED
        assert crashes >= 2
        ids = [log.external_id for log in world.logs.logs]
        assert len(ids) == len(set(ids))
        assert fingerprint(world) == expected


class TestInfrastructureErrors:
    def test_store_outage_hands_the_lease_back_for_an_immediate_rerun(
        self, clean: tuple[tuple[Any, ...], dict[str, int]], pipeline: PagePipeline | None
    ) -> None:
        """A StoreUnavailable ends the run with the lease released; the next runner need not wait."""
        expected, _ = clean
        world = fresh(pipeline)
        original = world.logs
        world.logs = Crashing(original, "insert_batch", 3, "before", StoreUnavailable("mongo down"))  # type: ignore[assignment]
        with pytest.raises(StoreUnavailable):
            world.run(owner="runner-0", settings=SETTINGS)
        world.logs = original
        stored = world.jobs.latest(world.company)
        assert stored is not None
        assert stored.lease_owner is None
        world.run(owner="runner-1", settings=SETTINGS)
        assert fingerprint(world) == expected


ENRICH_PORTS = {
    "entities_by_ids": "entities",
    "insert_batch": "logs",
    "save_progress": "jobs",
}
"""The boundaries around naming linked entities: entity names (per page) → write → progress."""


def fresh_enriched() -> World:
    world = World(rows=ROWS, enrich=True)
    world.trigger()
    return world


def enriched_fingerprint(world: World) -> tuple[Any, ...]:
    """The clean-run fingerprint, whose status holds every enrichment count (``keys_set`` included:
    a replay's duplicates of the dead runner's named logs count as the names they carry)."""
    job = world.jobs.latest(world.company)
    assert job is not None
    return (*fingerprint(world), job.enrichment)


@pytest.fixture(scope="module")
def clean_enriched() -> tuple[tuple[Any, ...], dict[str, int]]:
    """The clean enriched run's fingerprint and how often it called each method around enrichment."""
    world = fresh_enriched()
    originals = {port: getattr(world, port) for port in set(ENRICH_PORTS.values())}
    counters = {port: Counting(inner) for port, inner in originals.items()}
    for port, counter in counters.items():
        setattr(world, port, counter)
    crashes, job = run_until_complete(world)
    assert crashes == 0
    for port, inner in originals.items():
        setattr(world, port, inner)
    assert job.enrichment.complete == job.enrichment.logs > 0
    assert job.enrichment.patched == 0
    calls = {method: counters[port].calls.get(method, 0) for method, port in ENRICH_PORTS.items()}
    return enriched_fingerprint(world), calls


def enrichment_boundaries() -> list[Any]:
    cases = []
    for method in ENRICH_PORTS:
        for when in ("before", "after"):
            for which in ("first", "second", "last"):
                cases.append(pytest.param(method, when, which, id=f"{when}-{method}-{which}"))
    return cases


class TestCrashAroundEnrichment:
    def test_clean_run_names_in_several_pages(
        self, clean_enriched: tuple[tuple[Any, ...], dict[str, int]]
    ) -> None:
        """The association logs are spread over several pages and steps, so every boundary repeats."""
        _, calls = clean_enriched
        assert calls["entities_by_ids"] >= 3
        assert calls["insert_batch"] >= 3

    @pytest.mark.parametrize(("method", "when", "which"), enrichment_boundaries())
    def test_crash_then_resume_equals_a_clean_enriched_run(
        self, clean_enriched: tuple[tuple[Any, ...], dict[str, int]], method: str, when: str, which: str
    ) -> None:
        """Dying at this boundary of the enrichment step and resuming leaves a clean run's timeline."""
        expected, calls = clean_enriched
        world = fresh_enriched()
        port = ENRICH_PORTS[method]
        original = getattr(world, port)
        setattr(world, port, Crashing(original, method, nth(which, calls[method]), when))
        try:
            world.run(owner="runner-0", settings=SETTINGS)
        except SimulatedCrash:
            pass
        else:
            pytest.fail("the injected crash did not happen")
        setattr(world, port, original)
        world.clock.advance(SETTINGS.lease_seconds + 1)
        crashes, _ = run_until_complete(world, first_owner="runner-1")
        assert crashes == 0
        assert enriched_fingerprint(world) == expected

    def test_a_crash_before_saving_progress_replays_without_naming_twice(
        self, clean_enriched: tuple[tuple[Any, ...], dict[str, int]]
    ) -> None:
        """Logs written by a runner that died before saving are found stored; counts stay exact."""
        expected, _ = clean_enriched
        world = fresh_enriched()
        jobs = world.jobs
        world.jobs = Crashing(jobs, "save_progress", 2, "before")  # type: ignore[assignment]
        with pytest.raises(SimulatedCrash):
            world.run(owner="runner-0", settings=SETTINGS)
        world.jobs = jobs
        world.clock.advance(SETTINGS.lease_seconds + 1)
        _, job = run_until_complete(world, first_owner="runner-1")
        assert job.enrichment.complete == job.enrichment.logs
        assert job.enrichment.patched == 0
        assert enriched_fingerprint(world) == expected

    def test_a_second_pass_over_the_enriched_timeline_patches_nothing(self) -> None:
        """After a run, enriching its logs again plans no patch and sets no key."""
        world = fresh_enriched()
        run_until_complete(world)
        timeline = world.enrichment
        assert timeline is not None
        before = repr(timeline.logs)
        report = enrich_migrated(
            timeline.logs, tenant=world.tenant, ports=EnrichPorts(world.entities, timeline)
        )
        assert report.logs > 0
        assert (report.planned_patches, report.keys_set) == (0, 0)
        assert repr(timeline.logs) == before

    def test_a_crm_entity_outage_hands_the_lease_back_and_the_rerun_converges(
        self, clean_enriched: tuple[tuple[Any, ...], dict[str, int]]
    ) -> None:
        """A SourceUnavailable while naming ends the run before the page is written; a rerun finishes."""
        expected, _ = clean_enriched
        world = fresh_enriched()
        entities = world.entities
        world.entities = Crashing(entities, "entities_by_ids", 2, "before", SourceUnavailable("crm down"))  # type: ignore[assignment]
        with pytest.raises(SourceUnavailable):
            world.run(owner="runner-0", settings=SETTINGS)
        world.entities = entities
        stored = world.jobs.latest(world.company)
        assert stored is not None
        assert stored.lease_owner is None
        world.run(owner="runner-1", settings=SETTINGS)
        assert enriched_fingerprint(world) == expected


DEGRADED = RunSettings(page_size=40, halt_threshold=1.0, lease_seconds=60, halt_sample=50)


def run_until_stopped(world: World, settings: RunSettings, first_owner: str = "runner-0") -> MigrationJob:
    """Run, and after every crash expire the dead runner's lease and run again, until the job stops."""
    owner = first_owner
    for attempt in range(1, 50):
        try:
            job = world.run(owner=owner, settings=settings).job
        except SimulatedCrash:
            world.clock.advance(settings.lease_seconds + 1)
            owner = f"runner-{attempt}"
            continue
        if job.status != IN_PROGRESS:
            return job
    raise AssertionError("the job never stopped")


def degraded_world(pipeline: PagePipeline | None = None) -> World:
    world = World(rows=ROWS, sso_failing=True)
    world.pipeline = pipeline
    world.trigger()
    return world


@pytest.fixture(scope="module")
def clean_degraded(pipeline: PagePipeline | None) -> tuple[tuple[Any, ...], dict[str, int]]:
    """A USMAN outage's clean run: where it halts, and how often it called each port method."""
    world = degraded_world(pipeline)
    counters = {port: Counting(getattr(world, port)) for port in ("logs", "jobs", "source")}
    originals = {port: getattr(world, port) for port in counters}
    for port, counter in counters.items():
        setattr(world, port, counter)
    job = run_until_stopped(world, DEGRADED)
    for port, inner in originals.items():
        setattr(world, port, inner)
    assert job.status == HALTED
    assert (job.halted_reason or "").startswith("USMAN:")
    calls = {m: counters[p].calls.get(m, 0) for m, p in PORTS.items() if p in counters}
    return fingerprint(world), calls


class TestCrashIntoTheNewStates:
    @pytest.mark.parametrize(
        ("pipeline", "method", "when", "which"),
        [
            pytest.param(mode, m, w, n, id=f"{mode}-{w}-{m}-{n}")
            for mode in MODES
            for m in ("insert_batch", "save_progress", "page")
            for w in ("before", "after")
            for n in whiches(m, mode)
        ],
        indirect=["pipeline"],
    )
    def test_a_degraded_halt_is_reached_at_the_same_point_after_any_crash(
        self,
        clean_degraded: tuple[tuple[Any, ...], dict[str, int]],
        pipeline: PagePipeline | None,
        method: str,
        when: str,
        which: str,
    ) -> None:
        """With USMAN down, dying anywhere and resuming halts at the clean run's check point, same counts."""
        expected, calls = clean_degraded
        world = degraded_world(pipeline)
        port = PORTS[method]
        original = getattr(world, port)
        setattr(world, port, Crashing(original, method, nth(which, calls[method]), when))
        try:
            world.run(owner="runner-0", settings=DEGRADED)
        except SimulatedCrash:
            pass
        else:
            # A pool's read ahead, past the halt: its error is raised only after the pages before it
            # are written (as one process, which never makes that read), and those halt first.
            assert (method, pipeline is not None) == ("page", True)
        setattr(world, port, original)
        world.clock.advance(DEGRADED.lease_seconds + 1)
        job = run_until_stopped(world, DEGRADED, first_owner="runner-1")
        assert job.status == HALTED
        assert fingerprint(world) == expected

    @pytest.mark.parametrize(
        ("pipeline", "which"),
        [pytest.param(mode, n, id=f"{mode}-{n}") for mode in MODES for n in whiches("insert_batch", mode)],
        indirect=["pipeline"],
    )
    def test_a_cancel_between_a_write_and_its_progress_resumes_to_a_clean_run(
        self, clean: tuple[tuple[Any, ...], dict[str, int]], pipeline: PagePipeline | None, which: str
    ) -> None:
        """Cancelled right after a batch was inserted: the runner stops, and --resume ends exactly clean."""
        expected, calls = clean
        world = fresh(pipeline)
        original = world.logs
        on_call = nth(which, calls["insert_batch"])

        class CancelAfterInsert:
            def __init__(self) -> None:
                self.calls = 0

            def __getattr__(self, name: str) -> Any:
                return getattr(original, name)

            def insert_batch(self, logs: Any) -> Any:
                result = original.insert_batch(logs)
                self.calls += 1
                if self.calls == on_call:
                    cancel(world.company, jobs=world.jobs, clock=world.clock)
                return result

        world.logs = CancelAfterInsert()  # type: ignore[assignment]
        stopped = world.run(owner="runner-0", settings=SETTINGS).job
        world.logs = original
        assert stopped.status == CANCELLED
        world.trigger(restart=RESUME)
        crashes, _ = run_until_complete(world, first_owner="runner-1")
        assert crashes == 0
        # The --resume counts the halt rule from its own tally (halting.py), a clean run from the trigger.
        assert fingerprint(world, basis=False) == fingerprint_without_basis(expected)


SHARD_CRASHES = [("insert_batch", "logs", "after"), ("save_shard_progress", "jobs", "before")]
"""A shard's runner dying between a batch's write and its progress write, from either side."""


def sharded_end(crash: tuple[str, str, str] | None = None) -> tuple[Any, ...]:
    """Two shards run last to first; with ``crash``, shard 1's runner first dies at the second call
    of that method, and once its lease expired the shards run on to the end. The final status (the
    shards' counts, enrichment's, the halt bases) and the timeline, in id order."""
    world = fresh_enriched_sharded()
    if crash is not None:
        method, port, when = crash
        original = getattr(world, port)
        setattr(world, port, Crashing(original, method, 2, when))
        with pytest.raises(SimulatedCrash):
            world.service(settings=SETTINGS).run_shard(world.company, 1, owner="runner-0")
        setattr(world, port, original)
        world.clock.advance(SETTINGS.lease_seconds + 1)
    service = world.service(settings=SETTINGS)
    for n in (1, 0):
        service.run_shard(world.company, n, owner=f"runner-{n + 1}")
    job = world.jobs.latest(world.company)
    assert job is not None
    assert job.status == COMPLETED
    return final_status(job), sorted(map(repr, world.logs.logs))  # repr: NaN values


def fresh_enriched_sharded() -> World:
    world = World(rows=ROWS, enrich=True)
    world.service(settings=SETTINGS).trigger(world.company, shards=2)
    return world


class TestCrashInAShard:
    def test_a_clean_sharded_run_counts_as_the_unsharded_one(
        self, clean_enriched: tuple[tuple[Any, ...], dict[str, int]]
    ) -> None:
        """Two shards' summed counts, enrichment's included, are the unsharded clean run's."""
        (unsharded, *_), _ = clean_enriched
        status, _ = sharded_end()
        assert len(status["shards"]) == 2
        for key in ("records_processed", "records_migrated", "skipped", "failed", "enrichment"):
            assert status[key] == unsharded[key], key

    @pytest.mark.parametrize(("method", "port", "when"), SHARD_CRASHES)
    def test_a_shard_killed_mid_range_resumes_to_the_clean_sharded_status(
        self, method: str, port: str, when: str
    ) -> None:
        """The replayed batch's logs are found stored (duplicates of the dead runner's), and the job
        ends with the clean sharded run's status: each shard's counts and the enrichment's
        ``keys_set`` (which read lower before: a replay's duplicates counted no name)."""
        assert sharded_end((method, port, when)) == sharded_end()
