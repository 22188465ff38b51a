"""The run loop: one account's job from its cursor to the end, one durable step per batch.

Each page of 500 rows (keyset on ``id`` from ``job.last_audit_id``) is prepared, planned, looked
up (at most one call per port) and transformed; its rows are then cut into *steps* that hold at most 20
logs to write. After every step that wrote logs, and after a page's last step, the cursor (the id
of the step's last row: skipped and failed rows before it are covered too), the counts and the
renewed lease are saved in one atomic job write (``JobStore.save_progress``), guarded on the lease
owner. A step that wrote no log (all its rows skipped or failed) is saved with the next save: a
replay of it writes nothing, so saving it alone would only cost the CDP a round trip. So a crash
anywhere leaves a job whose cursor and counts describe exactly the rows behind it, the next run
replays at most one step that wrote logs (and the log-free steps after it on its page), and a
runner whose lease was taken over gets ``LeaseHeld`` instead of overwriting the job.

Counting rule for replays: a step replayed after a crash between its insert and its progress
write finds its logs already stored and gets ``duplicate_external_id`` for them. Such a
duplicate is one of our own, deterministic external ids — the record *is* in the timeline
exactly once — so the loop counts it as migrated. Counts after any number of crashes equal a
clean run's. (``migrate_batch`` itself still reports the duplicate, as its contract says.)

Entity names: when the ports include an ``EntityDirectory``, each page's association logs get
``linked_entity_name`` before they are written (one CRM call per entity type per page,
``_entity_names``), so nothing is read back and patched after a write. The counts go to
``job.enrichment`` (an ``EnrichmentTally``: the stored association logs, all complete, and the
names their inserts set), not to the outcome ``Tally``: naming is not a record's outcome and never
moves the failure rate. Logs already in the CDP (the live feed's, ours from before) are the
``enrich`` command's (``enrichment.enrich_existing``).

Halting (``halting.HaltRule``): batches are also cut at the rule's check points — every
``halt_sample`` rows counted since the job's ``halt_basis`` — so the counts at each check point
are the same in every run, however it was paged, batched or interrupted; the rule is checked
there (on the counts in hand, saved or not; a halt saves them) and at the end of the data. A
USMAN outage counts degraded actors (``actors_degraded``)
and halts past its own threshold, the reason naming USMAN.

Cancel: ``save_progress`` writes only while the job is in progress; a job cancelled meanwhile
comes back ``cancelled`` at the next save (a batch of logs, or a page's end) and the run stops
there (its last batch is written, its cursor not: a resume replays it, harmlessly). A rollback
under way on the account refuses the run. Before a step, when half the lease has passed since it
was last renewed (a page whose lookups were slow, a pause), the progress is saved first — that
renews the lease, or finds the job cancelled or rolled back (its lease having expired meanwhile)
before the step's batch is inserted, not after.

Pages: the loop reads its pages lazily and hands them to a ``PagePipeline`` (``pages``), which
prepares and transforms them — in this process by default (``InProcessPages``), or in worker
processes (``crm_audit_adapters.page_pool``) — and gives them back in id order. A pipeline of worker
processes is handed the writer's ``log_encoder`` (``EncodingLogWriter``): its workers then encode the
logs the loop will not change, and the loop writes those ``EncodedLog`` bytes as they are. The page's lookups
are made here, through the one cache, in page order. Steps are cut, written and saved by this loop
alone, as above, whatever the pipeline: a pipeline changes where the CPU work runs, not what is
written or when the cursor moves. Pages read ahead and not yet written when the loop ends (halt,
stop, cancel, an error) are dropped with the pipeline's generator; the cursor never covers them.
With a source that can tell a page by its ids (``ports.AuditPageIds``) and a pipeline that reads
pages itself (``ports.SpanPipeline``), the loop reads only each page's ids (``pages.PageSpan``,
the same keyset pages, byte budget included) and the pipeline reads the rows where it transforms
them; the steps are cut from the ids of the rows it read, so the cursor moves exactly as above.

Rows set aside: a source that sets rows aside as their ``Failed`` outcome instead of handing them
over (``ports.RowsSetAside``: a file's repeated id or unbuildable line) is asked for them after
each page it reads; they are counted with that page's rows in id order (after a page's last row:
as a page of their own), so the halt rule's check points, the job's counts and ``on_outcomes`` see
them exactly as a database source's rows that fail one by one.

Lookups: one ``LookupCache`` per run remembers the CRM users and SSO ids (and "not found") already
answered, so each user id and email is asked at most once per run; contacts are asked per page.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
from collections import deque
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import TypeVar

import attrs
from attrs import field, frozen

from .. import reasons
from ..domain import AuditRow, Failed, Migrated, Outcome, Skipped, WriteResult
from ..enrichment_tally import EnrichmentTally
from ..errors import JobAlreadyRunning, JobNotFound
from ..jobs import COMPLETED, HALTED, IN_PROGRESS, MigrationJob
from ..lookup import LookupContext, LookupPorts, LookupRequest, fetch_lookups
from ..lookup_cache import LookupCache
from ..ports import (
    ActivityLogWriter,
    AuditPageIds,
    AuditSource,
    Clock,
    ContactDirectory,
    EncodingLogWriter,
    EntityDirectory,
    IndexState,
    PagePipeline,
    RowsSetAside,
    RunJobStore,
    SpanPipeline,
    SsoDirectory,
    UserDirectory,
)
from ..tally import Tally
from ..transformer import Transformer
from ._entity_names import name_linked_entities, names_tally
from .migrate_batch import MAX_BATCH_SIZE, migrate_batch
from .pages import InProcessPages, PageSpan, TransformedPage
from .safety import require_indexes
from .settings import RunSettings

_Item = TypeVar("_Item")


@frozen
class RunPorts:
    """What a run drives; with ``entities`` it also names the linked entity of each association log.

    ``indexes`` is checked before anything is written: no run without migration 035's indexes.
    """

    source: AuditSource
    users: UserDirectory
    sso: SsoDirectory
    contacts: ContactDirectory
    logs: ActivityLogWriter
    jobs: RunJobStore
    clock: Clock
    entities: EntityDirectory | None = None
    indexes: IndexState = field(kw_only=True)


@frozen
class HaltPoint:
    """Where the halt rule decided to halt: the cursor (last audit id counted) and the reason."""

    audit_id: int
    reason: str


@frozen
class RunResult:
    """Where a run left its job; ``stopped`` when a stop request ended it before the end.

    ``would_halt`` is the first point where the halt rule said halt: the job then is ``halted``
    there, or — with ``enforce_halt=False`` (the dry run) — it went on and only reports it.
    A job cancelled mid-run comes back with status ``cancelled``.
    """

    job: MigrationJob
    steps: int = 0
    stopped: bool = False
    would_halt: HaltPoint | None = None


@frozen
class _Step:
    last_id: int
    outcomes: tuple[Outcome, ...]
    fallthrough: int = 0
    degraded: int = 0


def _never() -> bool:
    return False


def run_job(
    company_sso_id: str,
    ports: RunPorts,
    transformer: Transformer,
    *,
    owner: str,
    settings: RunSettings | None = None,
    should_stop: Callable[[], bool] = _never,
    on_progress: Callable[[MigrationJob], None] | None = None,
    on_outcomes: Callable[[Sequence[Outcome]], None] | None = None,
    pipeline: PagePipeline | None = None,
) -> RunResult:
    """Start or resume the account's in-progress job; return it as left (completed, halted, or saved).

    ``on_outcomes`` receives each saved step's outcomes (write results folded in), in row order,
    once that step's progress is durable. A job that is not in progress is returned untouched.
    ``pipeline`` prepares and transforms the pages (default: ``InProcessPages``, in this process).
    ``LeaseHeld`` when another runner holds the job, or took it over mid-run (the job is then left
    as that runner wrote it); any other error (infrastructure, ``KeyboardInterrupt``, an untyped
    one) propagates as it was, after the lease is handed back.
    """
    settings = settings or RunSettings()
    job = ports.jobs.latest(company_sso_id)
    if job is None:
        raise JobNotFound(f"company {company_sso_id} has no migration job: trigger one first")
    if job.shards:
        raise ValueError(f"job {job.job_id} is sharded: run its shards (run_shard)")
    return run_loop(
        company_sso_id,
        ports,
        transformer,
        owner=owner,
        settings=settings,
        job=job,
        should_stop=should_stop,
        on_progress=on_progress,
        on_outcomes=on_outcomes,
        pipeline=pipeline,
    )


def run_loop(
    company_sso_id: str,
    ports: RunPorts,
    transformer: Transformer,
    *,
    owner: str,
    settings: RunSettings,
    job: MigrationJob,
    should_stop: Callable[[], bool] = _never,
    on_progress: Callable[[MigrationJob], None] | None = None,
    on_outcomes: Callable[[Sequence[Outcome]], None] | None = None,
    until_id: int | None = None,
    check_at_end: bool = True,
    pipeline: PagePipeline | None = None,
) -> RunResult:
    """The loop over ``job`` as ``ports.jobs`` presents it (the job, or one shard's view of it).

    ``until_id`` bounds the rows (a shard's range); ``check_at_end=False`` leaves the halt rule's
    end-of-data check to the caller (a sharded job decides it once, over every shard's rows).
    """
    if job.status != IN_PROGRESS:
        return RunResult(job)
    require_indexes(ports.indexes)
    held = ports.jobs.rollback_under_way(company_sso_id)
    if held is not None:
        # The rollback's fence: it checks for a newer job after holding the account, so a run
        # that passes here started before the hold and makes the rollback refuse (rollback.py).
        raise JobAlreadyRunning(f"company {company_sso_id} is being rolled back (job {held.job_id}): wait")
    job = _lease(ports, job, owner, settings)
    if job.status != IN_PROGRESS:
        # Cancelled, halted or completed (a shard: completed) since it was read: nothing to write.
        # A lease taken on a halted or completed job is handed back; a cancelled one is not taken.
        if job.lease_owner == owner:
            _release_quietly(ports, company_sso_id, owner)
        return RunResult(job)
    pipeline = pipeline or InProcessPages()
    loop = _Loop(ports, transformer, owner, settings, should_stop, on_progress, on_outcomes, pipeline)
    loop.bound(until_id, check_at_end=check_at_end)
    try:
        return loop.run(job)
    except BaseException:
        # Whatever ends the loop here — a dependency down, the operator's abort, an untyped error
        # that will end the process — the lease is handed back first and the error goes on as it
        # was; else the account stays held for lease_seconds. A killed process cannot: it expires.
        _release_quietly(ports, company_sso_id, owner)
        raise


def _lease(ports: RunPorts, job: MigrationJob, owner: str, settings: RunSettings) -> MigrationJob:
    # The expiry is computed on the store's (the database's) clock, never this host's.
    return ports.jobs.acquire_lease(job.job_id, owner, settings.lease_ttl)


def _release_quietly(ports: RunPorts, company_sso_id: str, owner: str) -> None:
    # Hand the lease back from the job as stored (never from memory, which may be behind it),
    # so a rerun need not wait for it to expire. Best effort: the lease expires anyway. Through the
    # guarded progress write, never a plain save: a job cancelled or rolled back meanwhile keeps its
    # status (a job no longer in progress gets its lease handed back and JobNotRunnable, ignored).
    # Any failure of the hand-back is swallowed: the error that ended the run is the one to tell.
    with contextlib.suppress(Exception):
        stored = ports.jobs.latest(company_sso_id)
        if stored is not None and stored.lease_owner == owner:
            ports.jobs.save_progress(stored, owner, None)


class _Loop:
    __slots__ = (
        "_batch_size",
        "_cache",
        "_check_at_end",
        "_on_outcomes",
        "_on_progress",
        "_owner",
        "_pipeline",
        "_ports",
        "_renewed",
        "_rule",
        "_set_aside",
        "_settings",
        "_should_stop",
        "_transformer",
        "_until_id",
    )

    def __init__(
        self,
        ports: RunPorts,
        transformer: Transformer,
        owner: str,
        settings: RunSettings,
        should_stop: Callable[[], bool],
        on_progress: Callable[[MigrationJob], None] | None,
        on_outcomes: Callable[[Sequence[Outcome]], None] | None = None,
        pipeline: PagePipeline | None = None,
    ) -> None:
        self._ports = ports
        self._pipeline: PagePipeline = pipeline or InProcessPages()
        self._transformer = transformer
        self._owner = owner
        self._settings = settings
        self._should_stop = should_stop
        self._on_progress = on_progress
        self._on_outcomes = on_outcomes
        self._batch_size = min(settings.batch_size, MAX_BATCH_SIZE)
        self._rule = settings.halt_rule
        self._cache = LookupCache()
        self._until_id: int | None = None
        self._check_at_end = True
        self._renewed = ports.clock.now()  # the lease was just taken (run_loop)
        # Rows the source set aside (ports.RowsSetAside), one entry per page read, in read order:
        # the pages come back from the pipeline in that order. The last entry may follow no page.
        self._set_aside: deque[Sequence[Outcome]] = deque()

    def bound(self, until_id: int | None, *, check_at_end: bool) -> None:
        self._until_id = until_id
        self._check_at_end = check_at_end

    def run(self, job: MigrationJob) -> RunResult:
        steps = 0
        would_halt: HaltPoint | None = None
        # A run that died between its last batch at a check point and the halt it decided there
        # resumes exactly at that point: decide it again before going on.
        reason = self._rule.decide(job.tally - job.halt_basis)
        if reason is not None:
            would_halt = HaltPoint(job.last_audit_id, reason)
            if self._settings.enforce_halt:
                return RunResult(self._finish(job, HALTED, reason), steps, would_halt=would_halt)
        writer = self._ports.logs
        encoder = writer.log_encoder() if isinstance(writer, EncodingLogWriter) else None
        names_entities = self._ports.entities is not None
        source = self._ports.source
        pipeline = self._pipeline
        pages: Generator[TransformedPage, None, None]
        if (
            isinstance(source, AuditPageIds)
            and isinstance(pipeline, SpanPipeline)
            and not isinstance(source, RowsSetAside)
        ):
            # The pipeline reads the rows where it transforms them; this loop reads their ids.
            pages = pipeline.transform_spans(
                self._spans(job, source),
                source,
                self._transformer,
                self._lookup(job),
                company_sso_id=job.company_sso_id,
                encoder=encoder,
                names_entities=names_entities,
            )
        else:
            pages = pipeline.transform_pages(
                self._read(job),
                self._transformer,
                self._lookup(job),
                company_sso_id=job.company_sso_id,
                encoder=encoder,
                names_entities=names_entities,
            )
        unsaved: list[Outcome] = []  # settled outcomes of steps applied but not yet saved
        try:
            # None: the rows set aside after the last page (a source's last lines), as a page of their own.
            for page in itertools.chain(pages, (None,)):
                aside = self._set_aside.popleft() if self._set_aside else ()
                if page is None and not aside:
                    break
                cut = list(self._steps(job, page, aside))
                for index, step in enumerate(cut):
                    if self._lease_half_spent():
                        # A slow page (its lookups, a pause): renew the lease before inserting, so a
                        # job cancelled or rolled back meanwhile (its lease expired) gets no batch.
                        job = self._save(job, unsaved, self._settings.lease_ttl)
                        if job.status != IN_PROGRESS:
                            return RunResult(job, steps, would_halt=would_halt)
                    job, wrote = self._apply(job, step, unsaved)
                    steps += 1
                    if wrote or index == len(cut) - 1:
                        # A step that wrote logs is saved at once (its cursor bounds any replay); one
                        # that wrote none rides along with the next save, at the latest at page end.
                        job = self._save(job, unsaved, self._settings.lease_ttl)
                        if job.status != IN_PROGRESS:
                            # Cancelled meanwhile (or, for a shard, the job halted or was cancelled).
                            return RunResult(job, steps, would_halt=would_halt)
                    reason = self._rule.decide(job.tally - job.halt_basis)
                    if reason is not None and would_halt is None:
                        would_halt = HaltPoint(job.last_audit_id, reason)
                        if self._settings.enforce_halt:
                            halted = self._finish(job, HALTED, reason, unsaved)
                            return RunResult(halted, steps, would_halt=would_halt)
                    if self._should_stop():
                        return RunResult(
                            self._finish(job, IN_PROGRESS, None, unsaved),
                            steps,
                            stopped=True,
                            would_halt=would_halt,
                        )
        finally:
            # Pages read ahead are dropped: the pipeline stops its work before anything else happens.
            pages.close()
        reason = self._rule.decide(job.tally - job.halt_basis, at_end=True) if self._check_at_end else None
        if reason is not None and would_halt is None:
            would_halt = HaltPoint(job.last_audit_id, reason)
            if self._settings.enforce_halt:
                return RunResult(self._finish(job, HALTED, reason), steps, would_halt=would_halt)
        return RunResult(self._finish(job, COMPLETED), steps, would_halt=would_halt)

    def _read(self, job: MigrationJob) -> Generator[Sequence[AuditRow], None, None]:
        """The pages from the job's cursor on, each after the last row of the one before.

        Read lazily: a pipeline that reads ahead asks for the next page before this one is
        written. Once a page is written to its end, the job's cursor is its last id, so the pages
        are the ones the loop would read after each write. An empty page ends them: a source may
        return fewer rows than asked before its end (``ports.AuditSource.page``: a byte budget).
        """
        scope = self._transformer.scope
        source = self._ports.source
        setting_aside = source if isinstance(source, RowsSetAside) else None

        def fetch(after_id: int, limit: int) -> Sequence[AuditRow]:
            rows = source.page(job.tenant, scope, after_id=after_id, cutoff=job.cutoff, limit=limit)
            if setting_aside is not None:
                self._set_aside.append(setting_aside.take_set_aside())
            return rows

        return self._walk(job, fetch, _row_id)

    def _spans(self, job: MigrationJob, source: AuditPageIds) -> Generator[PageSpan, None, None]:
        """The same pages as ``_read``, each told by its ids alone (``ports.AuditPageIds``)."""
        scope = tuple(self._transformer.scope)

        def fetch(after_id: int, limit: int) -> Sequence[int]:
            return source.page_ids(job.tenant, scope, after_id=after_id, cutoff=job.cutoff, limit=limit)

        for ids in self._walk(job, fetch, int):
            yield PageSpan(job.tenant, scope, job.cutoff, tuple(ids))

    def _walk(
        self, job: MigrationJob, fetch: Callable[[int, int], Sequence[_Item]], id_of: Callable[[_Item], int]
    ) -> Generator[Sequence[_Item], None, None]:
        """Keyset pages of ``fetch(after_id, limit)`` from the job's cursor, within a shard's range."""
        after_id = job.last_audit_id
        while True:
            limit = self._page_limit(after_id)
            if limit == 0:
                return  # a shard whose cursor reached the end of its range
            items = fetch(after_id, limit)
            last = False
            if self._until_id is not None and items and id_of(items[-1]) >= self._until_id:
                # A shard's last page: it reached its range's end; rows past it are the next shard's.
                until_id = self._until_id
                items = [item for item in items if id_of(item) <= until_id]
                last = True
            if not items:
                return
            yield items
            if last:
                return
            after_id = id_of(items[-1])

    def _page_limit(self, after_id: int) -> int:
        """The page size, capped for a shard at the ids left in its range: ids are unique
        integers, so ``(after_id, until_id]`` holds at most ``until_id - after_id`` rows, and a
        shard never asks for a page of rows that all belong to the next shard."""
        if self._until_id is None:
            return self._settings.page_size
        return max(0, min(self._settings.page_size, self._until_id - after_id))

    def _lookup(self, job: MigrationJob) -> Callable[[LookupRequest], LookupContext]:
        ports = LookupPorts(self._ports.users, self._ports.sso, self._ports.contacts)

        def lookup(request: LookupRequest) -> LookupContext:
            return fetch_lookups(
                request,
                company_sso_id=job.company_sso_id,
                tenant=job.tenant,
                ports=ports,
                cache=self._cache,
            )

        return lookup

    def _steps(
        self, job: MigrationJob, transformed: TransformedPage | None, aside: Sequence[Outcome]
    ) -> Iterator[_Step]:
        ids: Sequence[int] = ()
        outcomes: Sequence[Outcome] = ()
        fell_through: Sequence[bool] = ()
        degraded: Sequence[bool] = ()
        if transformed is not None:
            page = transformed.result
            ids = transformed.ids
            outcomes, fell_through, degraded = page.outcomes, page.fell_through, page.degraded
            if self._ports.entities is not None:
                outcomes = name_linked_entities(outcomes, tenant=job.tenant, entities=self._ports.entities)
        if aside:
            # The rows the source set aside take their place in id order (a repeat after its first).
            merged = sorted(
                [
                    *zip(ids, outcomes, fell_through, degraded, strict=True),
                    *((o.audit_id, o, False, False) for o in aside),
                ],
                key=lambda item: item[0],
            )
            ids = [item[0] for item in merged]
            outcomes = [item[1] for item in merged]
            fell_through = [item[2] for item in merged]
            degraded = [item[3] for item in merged]
        # Fallthroughs and degraded actors are counted per step (from the page's per-row flags),
        # so that a replayed step adds exactly its own. Steps also end at the halt rule's check
        # points, so the rule sees the same counts however the run was cut.
        first_check = self._rule.rows_to_next_check((job.tally - job.halt_basis).processed)
        yield from _cut(
            ids,
            outcomes,
            fell_through,
            degraded,
            self._batch_size,
            first_check=first_check,
            every=self._rule.sample,
        )

    def _apply(self, job: MigrationJob, step: _Step, unsaved: list[Outcome]) -> tuple[MigrationJob, bool]:
        """Write the step's logs and count it into ``job`` (not saved); whether it had logs to write.

        Its settled outcomes are appended to ``unsaved``, for ``on_outcomes`` once they are saved.
        """
        logs = [o.log for o in step.outcomes if isinstance(o, Migrated)]
        result = migrate_batch(logs, self._ports.logs, max_size=self._batch_size)
        settled = tuple(_settle(step.outcomes, result.results))
        tally = Tally.of(settled, step.fallthrough, step.degraded)
        enriched = EnrichmentTally() if self._ports.entities is None else names_tally(logs, result.results)
        unsaved.extend(settled)
        job = attrs.evolve(
            job,
            # A step of set-aside rows alone never moves the cursor back (ports.RowsSetAside).
            last_audit_id=max(job.last_audit_id, step.last_id),
            tally=job.tally + tally,
            enrichment=job.enrichment + enriched,
            updated_at=self._ports.clock.now(),
        )
        return job, bool(logs)

    def _save(self, job: MigrationJob, unsaved: list[Outcome], ttl: dt.timedelta | None) -> MigrationJob:
        # One write renews the lease (ttl None: releases it) and saves the progress; LeaseHeld if
        # another runner took over, the stored cancelled job (nothing written) if it was cancelled.
        job = self._ports.jobs.save_progress(job, self._owner, ttl)
        self._renewed = self._ports.clock.now()
        if self._on_progress is not None:
            self._on_progress(job)
        if self._on_outcomes is not None and unsaved:
            self._on_outcomes(tuple(unsaved))
        unsaved.clear()
        return job

    def _lease_half_spent(self) -> bool:
        """Whether half the lease has passed since it was last renewed, on this host's clock (a
        duration: the expiry itself is the store's)."""
        return self._ports.clock.now() - self._renewed >= self._settings.lease_ttl / 2

    def _finish(
        self,
        job: MigrationJob,
        status: str,
        halted_reason: str | None = None,
        unsaved: list[Outcome] | None = None,
    ) -> MigrationJob:
        now = self._ports.clock.now()
        job = attrs.evolve(
            job,
            status=status,
            updated_at=now,
            finished_at=now if status != IN_PROGRESS else None,
            halted_reason=halted_reason,
        )
        # Guarded like every progress write: a runner taken over meanwhile must not overwrite the job.
        return self._save(job, [] if unsaved is None else unsaved, None)


def _row_id(row: AuditRow) -> int:
    return row.id


def _cut(
    ids: Sequence[int],
    outcomes: Sequence[Outcome],
    fell_through: Sequence[bool],
    degraded: Sequence[bool],
    size: int,
    *,
    first_check: int,
    every: int,
) -> Iterator[_Step]:
    """Cut a page into steps of consecutive rows holding at most ``size`` logs to write, ending
    also after row ``first_check`` and every ``every`` rows after it (the halt rule's check points)."""
    start = 0
    logs = 0
    next_check = first_check
    for index, outcome in enumerate(outcomes):
        if index == next_check:
            if index > start:
                yield _step(ids, outcomes, fell_through, degraded, start, index)
                start, logs = index, 0
            next_check += every
        if isinstance(outcome, Migrated):
            if logs == size:
                yield _step(ids, outcomes, fell_through, degraded, start, index)
                start, logs = index, 0
            logs += 1
    if start < len(outcomes):
        yield _step(ids, outcomes, fell_through, degraded, start, len(outcomes))


def _step(
    ids: Sequence[int],
    outcomes: Sequence[Outcome],
    fell_through: Sequence[bool],
    degraded: Sequence[bool],
    a: int,
    b: int,
) -> _Step:
    return _Step(
        last_id=ids[b - 1],
        outcomes=tuple(outcomes[a:b]),
        fallthrough=sum(fell_through[a:b]),
        degraded=sum(degraded[a:b]),
    )


def _settle(outcomes: Sequence[Outcome], results: Sequence[WriteResult]) -> Iterator[Outcome]:
    """Fold the write results into the outcomes (see the counting rule in the module docstring)."""
    by_id = {r.external_id: r for r in results}
    for outcome in outcomes:
        if not isinstance(outcome, Migrated):
            yield outcome
            continue
        result = by_id.get(outcome.log.external_id)
        if result is None or result.status == "inserted" or result.reason == reasons.DUPLICATE_EXTERNAL_ID:
            yield outcome
        elif result.status == "skipped":
            yield Skipped(outcome.audit_id, result.reason, result.detail)
        else:
            yield Failed(outcome.audit_id, result.reason or reasons.WRITE_ERROR, result.detail)
