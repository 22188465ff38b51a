"""The loop itself: pages read, transformed, cut into steps, written and saved (``usecases.run``
says the contract: durable steps, the counting rule, halting, cancel, pages, rows set aside).
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from typing import TypeVar

import attrs

from ..domain import AuditRow, Migrated, Outcome
from ..jobs import COMPLETED, HALTED, IN_PROGRESS, MigrationJob
from ..lookup import LookupPorts, RunLookups
from ..lookup_cache import LookupCache
from ..packed import PackedOutcomes, join
from ..ports import AuditPageIds, EncodingLogWriter, PackedLogWriter, PagePipeline, RowsSetAside, SpanPipeline
from ..ports.audit_source import PageExtents, PagesByRange
from ..transformer import Transformer
from ._entity_names import name_linked_entities
from ._page_rows import CountedAtCursor, PageRows, with_set_aside
from ._run_ports import RunPorts
from ._run_result import HaltPoint, RunResult
from ._run_steps import Step, cut_steps
from ._source_check import grow_source_mark
from ._step_counts import count_packed, settle, write_packed
from .migrate_batch import MAX_BATCH_SIZE, migrate_batch
from .pages import InProcessPages, PageSpan, TransformedPage
from .settings import RunSettings

_Item = TypeVar("_Item")


class RunLoop:
    __slots__ = (
        "_aside_last",
        "_batch_size",
        "_cache",
        "_check_at_end",
        "_counted",
        "_on_outcomes",
        "_on_progress",
        "_owner",
        "_packed",
        "_pipeline",
        "_ports",
        "_renewed",
        "_rule",
        "_set_aside",
        "_sets_aside",
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
        *,
        leased_at: float | None = None,
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
        # A writer that writes a worker's packed steps from their arrays (ports.PackedLogWriter).
        self._packed = ports.logs if isinstance(ports.logs, PackedLogWriter) else None
        self._rule = settings.halt_rule
        self._cache = LookupCache()
        self._until_id: int | None = None
        self._check_at_end = True
        # When the lease was asked for (run_loop), on this host's monotonic clock: see _save.
        self._renewed = ports.clock.monotonic() if leased_at is None else leased_at
        # Rows the source set aside (ports.RowsSetAside), one entry per page read, in read order:
        # the pages come back from the pipeline in that order. The last entry may follow no page.
        self._set_aside: deque[Sequence[Outcome]] = deque()
        # A source that sets rows aside may hand one id more than once (a file's repeats): a step
        # may end among them, and the job counts them with its cursor (cut_steps, rows_at_cursor).
        self._sets_aside = isinstance(ports.source, RowsSetAside)
        self._counted: CountedAtCursor | None = None
        # The highest id of the rows set aside that the last page read handed (_walk starts it at the
        # cursor: ids may be 0 or below, and a page is never asked after an id the run has not reached).
        self._aside_last = 0

    def bound(self, until_id: int | None, *, check_at_end: bool) -> None:
        self._until_id = until_id
        self._check_at_end = check_at_end

    def run(self, job: MigrationJob) -> RunResult:
        steps = 0
        counted = self._counted = CountedAtCursor(job)
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
        if isinstance(source, PagesByRange) and isinstance(pipeline, SpanPipeline) and self._until_id is None:
            # The source cuts its ranges and merges what their readers told: this loop reads nothing.
            transformer, lookup = self._transformer, self._lookup(job)

            def transform(spans: Iterable[PageSpan]) -> Iterator[TransformedPage]:
                return pipeline.transform_spans(
                    spans,
                    source,
                    transformer,
                    lookup,
                    company_sso_id=job.company_sso_id,
                    encoder=encoder,
                    names_entities=names_entities,
                )

            pages = source.pages_by_range(
                job.tenant,
                tuple(transformer.scope),
                after_id=self._counted.after_id,
                cutoff=job.cutoff,
                limit=self._settings.page_size,
                transform=transform,
                on_set_aside=self._set_aside.append,
            )
        elif isinstance(source, AuditPageIds) and isinstance(pipeline, SpanPipeline):
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
        unsaved: list[Sequence[Outcome]] = []  # settled outcomes of steps applied but not yet saved
        try:
            # None: the rows set aside after the last page (a source's last lines), as a page of their own.
            for page in itertools.chain(pages, (None,)):
                aside = self._set_aside.popleft() if self._set_aside else ()
                if page is None and not aside:
                    break
                # Rows added to a marked source since its job was made (a file's rows appended):
                # the job's mark covers them before any is handed over (_source_check).
                job = grow_source_mark(self._ports.source, self._ports.jobs, job, self._owner)
                if job.status != IN_PROGRESS:
                    # Ended meanwhile: the save hands the lease back (or says why it cannot).
                    return RunResult(self._save(job, unsaved, None), steps, would_halt=would_halt)
                cut = list(self._steps(job, page, aside))
                for index, step in enumerate(cut):
                    if self._lease_half_spent():
                        # A slow page (its lookups, a pause): renew the lease before inserting, so a
                        # job cancelled or rolled back meanwhile (its lease expired) gets no batch.
                        job = self._save(job, unsaved, self._settings.lease_ttl)
                        if job.status != IN_PROGRESS:
                            return RunResult(job, steps, would_halt=would_halt)
                    before = job.tally.processed
                    job, wrote = self._apply(job, step, unsaved)
                    steps += 1
                    reason = self._decide(before, job)
                    if wrote or index == len(cut) - 1:
                        # A step that wrote logs is saved at once (its cursor bounds any replay); one
                        # that wrote none rides along with the next save, at the latest at page end.
                        job = self._save(job, unsaved, self._settings.lease_ttl)
                        if job.status != IN_PROGRESS:
                            # Cancelled meanwhile (or, for a shard, the job halted or was cancelled).
                            return RunResult(job, steps, would_halt=would_halt)
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
        counted.at_end()  # a resume's cursor id held all the rows the job counted of it (SourceChanged)
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
                self._take_set_aside(setting_aside)
            return rows

        return self._walk(job, fetch, _row_id)

    def _spans(self, job: MigrationJob, source: AuditPageIds) -> Generator[PageSpan, None, None]:
        """The same pages as ``_read``, each told by its ids alone (``ports.AuditPageIds``), and
        where it lies when the source tells (``ports.PageExtents``); the rows the source set aside
        are taken after each page, as ``_read`` takes them."""
        scope = tuple(self._transformer.scope)
        setting_aside = source if isinstance(source, RowsSetAside) else None
        extents = source if isinstance(source, PageExtents) else None
        extent: tuple[int, ...] = ()

        def fetch(after_id: int, limit: int) -> Sequence[int]:
            nonlocal extent
            ids = source.page_ids(job.tenant, scope, after_id=after_id, cutoff=job.cutoff, limit=limit)
            if setting_aside is not None:
                self._take_set_aside(setting_aside)
            if extents is not None:
                extent = extents.page_extent()
            return ids

        # _walk yields a page before it fetches the next, so ``extent`` is the yielded page's (a
        # shard's last page may drop ids past its range: its extent still holds the ones kept).
        for ids in self._walk(job, fetch, int):
            yield PageSpan(job.tenant, scope, job.cutoff, tuple(ids), extent)

    def _take_set_aside(self, source: RowsSetAside) -> None:
        taken = source.take_set_aside()
        self._set_aside.append(taken)
        if taken:
            self._aside_last = max(self._aside_last, taken[-1].audit_id)

    def _walk(
        self, job: MigrationJob, fetch: Callable[[int, int], Sequence[_Item]], id_of: Callable[[_Item], int]
    ) -> Generator[Sequence[_Item], None, None]:
        """Keyset pages of ``fetch(after_id, limit)`` from the job's cursor, within a shard's range.

        Each page is asked after the last one's highest id, its rows' or the rows set aside with it
        (``ports.RowsSetAside``): past what the source handed, so that it goes on reading where it
        paused, and reads again only for a cursor behind what it handed (a resume).

        A shard's walk ends once the source handed an id past its range's ``until_id`` (those rows
        are the next shard's) or reached its end. Where ids are unique, a page whose last row is
        ``until_id`` is the range's last. A source that sets rows aside may repeat ``until_id``
        after that row (a file's repeats, read with the next page): the walk asks one more page
        after it (``_page_limit``), whose rows set aside of ``until_id`` are this shard's, and whose
        row past it, if any, is dropped (stopping at that row would leave the repeats to nobody:
        the next shard counts no id at or below its ``after_id``)."""
        assert self._counted is not None  # set by run
        after_id = self._aside_last = self._counted.after_id
        until_id = self._until_id
        while True:
            limit = self._page_limit(after_id)
            if limit == 0:
                return  # a shard whose cursor reached the end of its range
            items = fetch(after_id, limit)
            past = False  # the source handed a row past the shard's range: its last page
            if until_id is not None and items and id_of(items[-1]) >= until_id:
                if id_of(items[-1]) > until_id:
                    items = [item for item in items if id_of(item) <= until_id]
                    past = True
                else:
                    # A page ending on the range's last id: its last unless that id may repeat.
                    past = not self._sets_aside
            if not items:
                if past or not (self._set_aside and self._set_aside[-1]):
                    return
                # The source paused in a run of rows it set aside (ports.RowsSetAside): a page of
                # none, counted with them; it goes on after the last of them.
                yield items
                after_id = max(after_id, self._aside_last)
                continue
            yield items
            if past:
                return
            after_id = max(id_of(items[-1]), self._aside_last)

    def _page_limit(self, after_id: int) -> int:
        """The page size, capped for a shard at the ids left in its range: the rows a page hands
        are unique integers (a source's repeats are set aside, not handed), so ``(after_id,
        until_id]`` holds at most ``until_id - after_id`` of them, and a shard never asks for a
        page of rows that all belong to the next shard. At ``until_id`` itself, a source that sets
        rows aside is asked for one row more: the read to it hands the repeats of ``until_id``
        that follow its row (set aside), and then stops (``_walk``)."""
        until_id = self._until_id
        if until_id is None:
            return self._settings.page_size
        if after_id == until_id and self._sets_aside:
            return 1
        return max(0, min(self._settings.page_size, until_id - after_id))

    def _lookup(self, job: MigrationJob) -> RunLookups:
        ports = LookupPorts(self._ports.users, self._ports.sso, self._ports.contacts)
        return RunLookups(ports, company_sso_id=job.company_sso_id, tenant=job.tenant, cache=self._cache)

    def _steps(
        self, job: MigrationJob, transformed: TransformedPage | None, aside: Sequence[Outcome]
    ) -> Iterator[Step]:
        rows = PageRows((), (), (), ())
        if transformed is not None:
            page = transformed.result
            outcomes = page.outcomes
            # A packed page's PACKED logs are never named (usecases.pages.encode_ahead): only its
            # other logs may be, and a page without any is as named as it gets.
            plain = isinstance(outcomes, PackedOutcomes) and outcomes.plain
            if self._ports.entities is not None and not plain:
                outcomes = name_linked_entities(outcomes, tenant=job.tenant, entities=self._ports.entities)
            rows = PageRows(transformed.ids, outcomes, page.fell_through, page.degraded)
        assert self._counted is not None  # set by run
        rows = with_set_aside(rows, aside, after_id=self._counted.after_id, until_id=self._until_id)
        rows = self._counted.pass_over(rows)
        # Fallthroughs and degraded actors are counted per step (from the page's per-row flags),
        # so that a replayed step adds exactly its own. Steps also end at the halt rule's check
        # points, so the rule sees the same counts however the run was cut.
        first_check = self._rule.rows_to_next_check((job.tally - job.halt_basis).processed)
        yield from cut_steps(
            rows.ids,
            rows.outcomes,
            rows.fell_through,
            rows.degraded,
            self._batch_size,
            first_check=first_check,
            every=self._rule.sample,
            repeats=self._sets_aside,
        )

    def _apply(
        self, job: MigrationJob, step: Step, unsaved: list[Sequence[Outcome]]
    ) -> tuple[MigrationJob, bool]:
        """Write the step's logs and count it into ``job`` (not saved); whether it had logs to write.

        Its settled outcomes are appended to ``unsaved``, for ``on_outcomes`` once they are saved.
        A worker's packed step whose logs are all packed goes to a ``PackedLogWriter`` as it is and,
        when every log was inserted, is counted on its arrays: the same writes, counts and outcomes,
        no object a row (``packed``, ``_step_counts``).
        """
        names, clock = self._ports.entities is not None, self._ports.clock
        outcomes = step.outcomes
        if isinstance(outcomes, PackedOutcomes):
            if self._packed is not None and outcomes.plain:
                results = write_packed(self._packed, outcomes, self._batch_size)
                if results is None:  # every log inserted: the outcomes stand as they are
                    counted = count_packed(job, step, outcomes, unsaved, names=names, clock=clock)
                    return counted, outcomes.has_packed
                outcomes = tuple(outcomes)
                logs = [o.log for o in outcomes if isinstance(o, Migrated)]
                settled = settle(job, step, outcomes, logs, results, unsaved, names=names, clock=clock)
                return settled, bool(logs)
            outcomes = tuple(outcomes)  # read once, row by row
        logs = [o.log for o in outcomes if isinstance(o, Migrated)]
        results = migrate_batch(logs, self._ports.logs, max_size=self._batch_size).results
        return settle(job, step, outcomes, logs, results, unsaved, names=names, clock=clock), bool(logs)

    def _save(
        self, job: MigrationJob, unsaved: list[Sequence[Outcome]], ttl: dt.timedelta | None
    ) -> MigrationJob:
        # One write renews the lease (ttl None: releases it) and saves the progress; LeaseHeld if
        # another runner took over, the stored cancelled job (nothing written) if it was cancelled.
        # The half lease counts from the sending: the expiry is set when the store applies the
        # write, which is after it was sent and may be long before its answer comes back.
        sent = self._ports.clock.monotonic()
        job = self._ports.jobs.save_progress(job, self._owner, ttl)
        self._renewed = sent
        if self._on_progress is not None:
            self._on_progress(job)
        if self._on_outcomes is not None and unsaved:
            # One step's packed outcomes stay a view (the --outcomes file writes them from it).
            self._on_outcomes(join(unsaved))
        unsaved.clear()
        return job

    def _decide(self, before: int, job: MigrationJob) -> str | None:
        """The halt rule after a step that took the rows counted from ``before`` to the job's: the
        tally since the basis is built only where the step reached or passed a check point
        (``HaltRule.crossed``), where alone ``decide`` can answer anything but None."""
        basis = job.halt_basis.processed
        if not self._rule.crossed(before - basis, job.tally.processed - basis):
            return None
        return self._rule.decide(job.tally - job.halt_basis, crossed=True)

    def _lease_half_spent(self) -> bool:
        """Whether half the lease has passed since its last renewal was sent, on this host's
        monotonic clock (a duration: the expiry itself is the store's, set when it applied that
        renewal; a wall clock stepped back would shorten the duration by the step)."""
        return self._ports.clock.monotonic() - self._renewed >= self._settings.lease_ttl.total_seconds() / 2

    def _finish(
        self,
        job: MigrationJob,
        status: str,
        halted_reason: str | None = None,
        unsaved: list[Sequence[Outcome]] | None = None,
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
