"""``ProcessPagePipeline``: a run's pages loaded and transformed by several processes, written by one.

    with ProcessPagePipeline(2, TransformerRecipe(mapping)) as pool:
        MigrationService(ports, transformer, pipeline=pool).run(company, owner=...)

The run loop (``crm_audit_transform.usecases.run``) stays the one writer: it reads the pages, cuts
the steps, checks the halt rule, writes them and saves the cursor after each, in id order, exactly
as in one process. The pool takes the rest of a page: loading ``audited_changes`` (libyaml and the
Psych rules), its lookups and the rule chain.

**One trip a page** when the run's lookups can be copied to another process (the loop's lookup is a
``lookup.RunLookups`` whose ``for_worker`` gives copies of every port: ``ports.WorkerCopy``). Each
worker gets the copies at the run's ``worker.begin`` (its own connections, its own cache) and each
page is one task, ``worker.page`` or ``worker.page_span``, which comes back transformed. Between a
page's loading and its rules nothing waits for this process (the seventh round of issue 15 goal 2,
benchmarks/RESULTS.md: the worker idled a third of a loaded 100k run there). What that gives up:
lookups are not made in one process's order, and each worker's cache asks for what another's
already knows (USMAN up to ``processes`` times for one email); a worker's lookup error is its
page's error, raised when that page is the head, after the pages before it.

**Two trips a page** otherwise (a port without a copy: an injected client, mongomock, the in-memory
ports): each half on the page's own worker (``worker.prepare`` → the page's ``LookupRequest``;
``worker.finish`` with the ``LookupContext`` → the ``PageResult``), because the contacts a page
needs are named inside its loaded changes, and this process makes the lookups in between. The
lookups are then made in page order, each as soon as its page is prepared and every earlier page
is looked up, so the lookup cache and USMAN see the calls one process would make, in its order.

Either way the workers also encode the migrated logs with the run's writer's encoder
(``ports.EncodingLogWriter``) and send each page back as tuples of builtins (``wire``): the parent
writes bytes it never made.

Flow: up to ``pages_per_worker`` pages per worker process are in flight (read, and not yet handed
back); the ``n``-th page sent goes to worker ``n mod processes``. Sharing (the default), the parent
is one of the ``workers``: whenever the next page to write is still on its worker and every worker
has its pages, it reads a page and transforms it itself (up to ``pages_per_worker`` of its own in
flight) instead of waiting, so ``workers`` processes — not ``workers + 1`` — share the cores, and
that page crosses no process boundary (without sharing, the parent was busy 45 % of a 100k-row
run: benchmarks/RESULTS.md, issue 15 goal 2). Memory stays flat. This process looks its own pages
up with the run's lookups (its connections, its cache). Pages come back in order; the parent's own
keep their ``ActivityLog``s, which the writer encodes.

Pages by id range: when the run's source can tell a page by its ids (``ports.AuditPageIds``:
PostgreSQL) the run loop gives ``transform_spans`` each page's ids alone, and each worker reads its
pages' rows itself (over its own connection, opened at its first page: the source's
``span_reader``), as does this process for the pages it takes. So the parent neither fetches nor
ships the rows' text; it reads ids, looks up, writes and saves the cursor. A worker reads ahead:
each span goes on the worker's own channel (a one-way pipe) as the page is handed to it, and a
thread there reads the rows while the worker loads and transforms the pages before it
(``worker``), so the server's time for a page is no longer the worker's idle time.

Workers start with ``forkserver`` (``spawn`` may be asked for): a fresh interpreter forks them,
so no PostgreSQL, MongoDB or HTTP connection of the parent is ever inherited. That interpreter is
started when the pool is built, so its imports (a quarter of a second) overlap the caller's setup
instead of delaying the first page. The workers themselves start in the background (``starting``):
sharing, this process transforms the run's first pages itself until a worker is up (it was held
0.45–0.65 s there: benchmarks/RESULTS.md, issue 15 goal 2, pool round). A worker that dies
(SIGKILL, out of memory) ends the run with ``WorkerLost`` (exit 6): nothing it had not finished
was written, the lease is handed back, and a rerun resumes from the cursor — with a new worker,
since the pool replaces a broken one at the next run.
"""

from __future__ import annotations

import contextlib
import multiprocessing
from collections import deque
from collections.abc import Callable, Generator, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import forkserver
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Any, Final, Literal, TypeVar

from crm_audit_transform.domain import AuditRow
from crm_audit_transform.errors import WorkerLost
from crm_audit_transform.lookup import RunLookups
from crm_audit_transform.ports import AuditPageIds, LogEncoder, SpanReader
from crm_audit_transform.transformer import PageResult, Transformer
from crm_audit_transform.usecases.pages import PageLookup, PageSpan, RangeRows, TransformedPage

from ..fork_server import sigint_deferred
from . import worker
from .in_flight import NO_PLAN, Feed, Page, Plan, Whole, done
from .result_pipe import widen_result_pipe
from .sending import TransformerRecipe, for_workers, require_picklable, wire_rows
from .sent_rows import SentRows
from .starting import Starting
from .wire import unpack

__all__ = ["MAX_WORKERS", "ProcessPagePipeline", "TransformerRecipe"]

MAX_WORKERS: Final = 64
"""More worker processes than this is a mistake, not a machine."""

WRITER_ENCODERS: Final = ("crm_audit_adapters.files.sink", "crm_audit_adapters.mongo.activity_logs")
"""The modules of the writers' encoders, imported by the fork server too: a worker unpickling its
run's encoder then imports nothing (the sink's brings pymongo and orjson: 0.1 s of CPU a worker)."""

START_WAIT_S: Final = 10.0
"""How long ``close`` after a normal run waits for a worker's start still in progress (seconds). A
start takes 0.45–0.65 s (benchmarks/RESULTS.md, issue 15 goal 2, pool round); one not returned by
then is a fork server that does not answer (stopped, hung), which the run went on without: it is
abandoned as after an error instead of holding the command's exit for ever."""

StartMethod = Literal["forkserver", "spawn"]
_T = TypeVar("_T")


class ProcessPagePipeline:
    """``ports.PagePipeline`` over ``workers`` processes; a context manager that stops them on exit.

    ``workers`` processes transform pages. With ``share`` (the default) this process is one of
    them: it starts ``workers - 1`` worker processes and transforms a page itself whenever the
    next page to write is still on its worker and every worker has its pages (so ``workers`` ≥ 2);
    without, it starts ``workers`` and only reads, looks up and writes. ``recipe`` builds each
    worker's transformer: it must make the same rules as the transformer the run loop is given
    (the loop takes its scope from that one, and this process transforms its pages with it).
    ``pages_per_worker`` bounds the pages in flight per worker process (≥ 1; 2 keeps a worker busy
    while the parent writes), ``own_pages`` this process's own (default: ``pages_per_worker``). The fork
    server starts here and imports the worker side while the caller sets up (its connections, its
    lease, its first page); the workers are forked from it at the first run (or ``start``), in the
    background, and serve every run until ``close``. ``preload``: more modules for the fork server
    to import, those the run's
    lookup ports import in a worker (``fork_server.RUNNER_PORTS`` for the runner's).
    """

    __slots__ = (
        "_begins",
        "_begun",
        "_channels",
        "_context",
        "_executors",
        "_own_pages",
        "_pages_per_worker",
        "_processes",
        "_recipe",
        "_runs",
        "_share",
        "_starts",
        "_workers",
    )

    def __init__(
        self,
        workers: int,
        recipe: Callable[[], Transformer],
        *,
        pages_per_worker: int = 2,
        own_pages: int | None = None,
        share: bool = True,
        start_method: StartMethod = "forkserver",
        preload: Sequence[str] = (),
    ) -> None:
        if not 1 + share <= workers <= MAX_WORKERS:
            raise ValueError(f"workers must be between {1 + share} and {MAX_WORKERS}, got {workers}")
        if pages_per_worker < 1:
            raise ValueError(f"pages_per_worker must be at least 1, got {pages_per_worker}")
        self._workers = workers
        self._share = share
        self._processes = workers - share
        self._recipe = recipe
        self._pages_per_worker = pages_per_worker
        self._own_pages = pages_per_worker if own_pages is None else own_pages
        if self._own_pages < 1:
            raise ValueError(f"own_pages must be at least 1, got {self._own_pages}")
        require_picklable(recipe)
        self._context = multiprocessing.get_context(start_method)
        if start_method == "forkserver":
            # The fork server imports the worker side (and with it the core, PyYAML, libyaml) once,
            # so each worker forked from it starts in milliseconds instead of re-importing. It is
            # started now and imports while the caller connects, leases, reads its first page: the
            # first run's workers are then forked from a ready server instead of waiting for it.
            self._context.set_forkserver_preload(
                [worker.__name__, *WRITER_ENCODERS, *worker.PORT_MODULES, *preload]
            )
            forkserver.ensure_running()
        self._executors: list[ProcessPoolExecutor | None] = [None] * self._processes
        self._channels: list[Connection | None] = [None] * self._processes
        # A worker whose process is still starting (``starting``), and the run it has begun (0: none).
        self._starts: list[Starting | None] = [None] * self._processes
        self._begun = [0] * self._processes
        self._begins: tuple[Any, ...] = ()  # the run's worker.begin arguments, for a late worker
        self._runs = 0

    @property
    def workers(self) -> int:
        return self._workers

    def __repr__(self) -> str:
        return f"ProcessPagePipeline(workers={self._workers})"

    def __enter__(self) -> ProcessPagePipeline:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close(wait=exc_type is None)

    def start(self, *, wait: bool = False) -> None:
        """Start now each worker process this pipeline has not made yet, instead of at the next
        run's first page; with ``wait``, return once each start has returned (``WorkerLost`` if one
        could not start). A worker that died in an earlier run is not replaced here: the next run
        replaces it (``_started``). A run begins the workers it finds up, and hands pages to the
        others once they are."""
        with sigint_deferred():  # no KeyboardInterrupt between a start and its record
            for slot, executor in enumerate(self._executors):
                if executor is None:
                    self._create(slot)
        if wait:
            for slot in range(self._processes):
                self._wait_up(slot)

    def close(self, *, wait: bool = True) -> None:
        """Stop the workers: queued work is cancelled, a page being transformed is let finish.

        ``wait=False`` (the pool left by an exception: an abort, a lost worker, a typed error)
        returns at once instead of waiting for the pages in flight: the workers only read and
        transform, so nothing of theirs needs finishing, and a worker that never answers (stopped,
        hung in a lookup) must not hold the command's exit. They end on their own once their page
        is done; the console ends those still alive after a Ctrl-C (``console.end_children``).
        ``wait=True`` waits ``START_WAIT_S`` at most for a worker still starting, then leaves it
        to its start's thread (``starting``), as ``wait=False`` does at once.
        """
        executors, self._executors = self._executors, [None] * self._processes
        channels, self._channels = self._channels, [None] * self._processes
        starts, self._starts = self._starts, [None] * self._processes
        self._begun = [0] * self._processes
        for executor, starting in zip(executors, starts, strict=True):
            if executor is None:
                continue
            if starting is not None:
                if wait:
                    # A run that ended before its worker was up (a small one): let the start end
                    # and the worker stop, as a worker whose start had held the run would have.
                    # Gone unwaited, it was forked as this process exited, and failed (a traceback
                    # on the command's stderr) to open what its executor had already removed.
                    # Bounded: a fork server that never answers must not hold the exit for ever.
                    with contextlib.suppress(Exception):  # a failed start: shut down below
                        starting.wait(START_WAIT_S)
                if starting.abandon():
                    continue  # its start's thread shuts it down when the start returns (starting)
            executor.shutdown(wait=wait, cancel_futures=True)
        for channel in channels:
            if channel is not None:
                channel.close()

    def transform_pages(
        self,
        pages: Iterable[Sequence[AuditRow]],
        transformer: Transformer,
        lookup: PageLookup,
        *,
        company_sso_id: str,
        encoder: LogEncoder | None = None,
        names_entities: bool = False,
    ) -> Generator[TransformedPage, None, None]:
        """The pages transformed by the workers, and by this process, in the order given
        (``ports.PagePipeline``).

        ``transformer`` transforms the pages this process takes (``share``); the workers build
        theirs from the recipe. With ``encoder`` (sent to the workers: ``CONFIG_INVALID`` if it
        cannot be), the workers' migrated logs come back as its ``EncodedLog``, but those the loop
        may name (``names_entities``); this process's own pages keep their ``ActivityLog``s, which
        the writer encodes as in one process. ``WorkerLost`` when a worker process dies; what the
        workers were doing is dropped when the generator is closed.
        """
        feed = Feed(pages)
        return self._transform(feed, None, transformer, lookup, company_sso_id, encoder, names_entities)

    def transform_spans(
        self,
        spans: Iterable[PageSpan],
        source: AuditPageIds,
        transformer: Transformer,
        lookup: PageLookup,
        *,
        company_sso_id: str,
        encoder: LogEncoder | None = None,
        names_entities: bool = False,
    ) -> Generator[TransformedPage, None, None]:
        """``transform_pages`` over pages told by their ids (``ports.SpanPipeline``): each worker
        reads its pages' rows with ``source.span_reader()`` (sent to it once per run: it opens its
        own connection), this process its own pages with ``source.span_rows``. A source that cannot
        be read from another process (``span_reader`` None) is read here and its rows sent."""
        reader = source.span_reader()
        feed = Feed(source.span_rows(span) for span in spans) if reader is None else Feed(spans, source)
        return self._transform(feed, reader, transformer, lookup, company_sso_id, encoder, names_entities)

    def _transform(
        self,
        feed: Feed,
        reader: SpanReader | None,
        transformer: Transformer,
        lookup: PageLookup,
        company_sso_id: str,
        encoder: LogEncoder | None,
        names_entities: bool,
    ) -> Generator[TransformedPage, None, None]:
        require_picklable(encoder)
        run = self._runs = self._runs + 1
        lookups = for_workers(lookup)
        executors = self._start(encoder, names_entities, reader, run, lookups)
        # One trip a page when the workers look their pages up themselves: the company they need.
        whole = None if lookups is None else company_sso_id
        inflight: deque[Page] = deque()
        try:
            while True:
                self._send(feed, inflight, executors, run, whole)
                if not inflight:
                    # Sharing, no worker is up yet (or every one is): this process takes the page.
                    if self._share and self._work_here(feed, inflight, transformer, company_sso_id):
                        continue
                    if feed.error is not None:
                        raise feed.error  # every page read before it was handed back
                    return
                # Sharing, this process does not wait for the head's plan while it has a step of
                # its own to take (a page to read and prepare while the worker prepares the head).
                self._look_up(inflight, executors, lookup, company_sso_id, wait=not self._share)
                head = inflight[0]
                if self._share and head.worker is not None and not done(head):
                    if self._work_here(feed, inflight, transformer, company_sso_id):
                        continue
                    # A page of its own waits for its lookup behind a worker's page still being
                    # prepared: wait for that plan, not only the head's result, and transform the
                    # own page while the worker finishes the head.
                    if self._look_up_own(inflight, executors, lookup, company_sso_id):
                        continue
                if not head.looked_up:
                    self._look_up(inflight, executors, lookup, company_sso_id, wait=True)
                inflight.popleft()
                result = self._result(head, transformer, company_sso_id)
                yield TransformedPage(head.row_ids(), result)
        finally:
            for page in inflight:
                page.plan.cancel()
                if page.result is not None:
                    page.result.cancel()

    def _send(
        self,
        feed: Feed,
        inflight: deque[Page],
        executors: Sequence[ProcessPoolExecutor],
        run: int,
        whole: str | None,
    ) -> None:
        """Read pages and send them to the workers until each has ``pages_per_worker`` in flight;
        the ``n``-th page sent goes to worker ``n mod processes``, or the next one up (a worker
        still starting takes none: ``_usable``). A span goes on the worker's channel first, so its
        reader thread reads the rows ahead of the page's ``prepare_span``. With ``whole`` (the
        company, when the workers make the lookups), each page is one task, ``worker.page`` or
        ``worker.page_span``, which comes back transformed."""
        held = [0] * self._processes
        for waiting in inflight:
            if waiting.worker is not None:
                held[waiting.worker] += 1
        while True:
            slot = self._free_slot(held, feed.sent, run)
            if slot is None:
                return
            page = feed.next()
            if page is None:
                return
            seq, item = page
            if whole is not None:
                done: Future[Whole]
                if isinstance(item, PageSpan):
                    self._tell(slot, (worker.SPAN, run, seq, item))
                    done = self._submit(executors[slot], worker.page_span, seq, run, whole)
                    inflight.append(Page(seq, None, slot, NO_PLAN, whole=done))
                else:
                    wired, flat = wire_rows(item)
                    done = self._submit(
                        executors[slot], worker.page, seq, SentRows(wired), flat=flat, company_sso_id=whole
                    )
                    inflight.append(Page(seq, item, slot, NO_PLAN, whole=done))
            elif isinstance(item, PageSpan):
                self._tell(slot, (worker.SPAN, run, seq, item))
                plan = self._submit(executors[slot], worker.prepare_span, seq, run)
                inflight.append(Page(seq, None, slot, plan))
            else:
                wired, flat = wire_rows(item)
                plan = self._submit(executors[slot], worker.prepare, seq, SentRows(wired), flat=flat)
                inflight.append(Page(seq, item, slot, plan))
            feed.sent += 1
            held[slot] += 1

    def _free_slot(self, held: Sequence[int], sent: int, run: int) -> int | None:
        """The worker the next page goes to: the first, from ``sent mod processes`` on, that is up
        and holds fewer than ``pages_per_worker`` pages; None if none."""
        for step in range(self._processes):
            slot = (sent + step) % self._processes
            if held[slot] < self._pages_per_worker and self._usable(slot, run):
                return slot
        return None

    def _usable(self, slot: int, run: int) -> bool:
        """Whether worker ``slot``'s process is up; if so, it has begun run ``run`` (its
        ``worker.begin`` submitted, its span reader on its channel). ``WorkerLost`` if its start
        failed (the fork server gone, the process dead as it started)."""
        starting = self._starts[slot]
        if starting is not None:
            try:
                if not starting.ready():
                    return False
            except (BrokenProcessPool, OSError, EOFError) as exc:
                raise self._lost(exc) from exc
            self._starts[slot] = None
        if self._begun[slot] != run:
            try:
                self._begin(slot, run)
            except BrokenProcessPool as exc:  # it died as it started
                raise self._lost(exc) from exc
        return True

    def _work_here(
        self, feed: Feed, inflight: deque[Page], transformer: Transformer, company_sso_id: str
    ) -> bool:
        """Whether this process did a step of a page of its own while the head is on its worker:
        transformed one it has looked up, or read and prepared a new one (at most
        ``pages_per_worker`` in flight, and only when none waits for its transform)."""
        own = [page for page in inflight if page.worker is None]
        for page in own:
            if page.own is None:
                if page.context is None:
                    return False  # waiting for its lookup, behind the workers' pages before it
                page.own = transformer.transform(page.prepared, page.context, company_sso_id=company_sso_id)
                return True
        if len(own) >= self._own_pages:
            return False
        taken = feed.next()
        if taken is None:
            return False
        seq, item = taken
        if isinstance(item, PageSpan):
            assert feed.reads is not None  # spans come only with their source (transform_spans)
            try:
                rows = feed.reads.span_rows(item)
            except Exception as exc:  # raised once the pages before it are handed back
                feed.fail(exc)
                return False
        else:
            rows = item
        prepared = transformer.prepare(rows)
        plan: Future[Plan] = Future()
        plan.set_result((None, transformer.plan(prepared)))
        page = Page(seq, rows, None, plan, prepared)
        if isinstance(rows, RangeRows):
            page.ids = rows.ids  # a whole range's ids, with what its reader told (ports.PagesByRange)
        inflight.append(page)
        return True

    def _result(self, page: Page, transformer: Transformer, company_sso_id: str) -> PageResult:
        """The head's result: unpacked from its worker, or transformed here if not yet."""
        if page.worker is not None:
            assert page.result is not None  # the head is always looked up
            got = self._wait(page.result)
            if page.whole:
                ids, got = got
                if ids is not None:
                    page.ids = ids
            return unpack(got)
        if page.own is None:
            assert page.context is not None  # the head is always looked up
            page.own = transformer.transform(page.prepared, page.context, company_sso_id=company_sso_id)
        return page.own

    def _look_up(
        self,
        inflight: deque[Page],
        executors: Sequence[ProcessPoolExecutor],
        lookup: PageLookup,
        company_sso_id: str,
        *,
        wait: bool,
    ) -> None:
        """Look up, in page order, the head (with ``wait``, waiting for its plan) and every next
        page already prepared.

        A next page whose preparing raised (its worker could not read its rows) waits to be the head:
        its error is raised after the pages before it are handed back, as in one process."""
        for index, page in enumerate(inflight):
            if page.looked_up:
                continue
            if (index or not wait) and (not page.plan.done() or page.plan.exception() is not None):
                return
            ids, request = self._wait(page.plan)
            if ids is not None:
                page.ids = ids
            context = lookup(request)
            if page.worker is None:
                page.context = context
            else:
                page.result = self._submit(
                    executors[page.worker], worker.finish, page.seq, context, company_sso_id
                )

    def _look_up_own(
        self,
        inflight: deque[Page],
        executors: Sequence[ProcessPoolExecutor],
        lookup: PageLookup,
        company_sso_id: str,
    ) -> bool:
        """Whether this process's first page not yet looked up is now: the plans of the workers'
        pages before it waited for, and every page up to it looked up, in page order.

        It stops as soon as the head's result comes first (the head is then written), and at a plan
        that raised (or a worker that died): that error is raised when its page is the head, after
        the pages before it are handed back."""
        target = next((page for page in inflight if page.worker is None and not page.looked_up), None)
        if target is None:
            return False
        for page in inflight:
            if page is target:
                break
            if page.looked_up:
                continue
            # A worker's page before it, still being prepared: its plan usually comes before the
            # head's result (the worker prepares it before it finishes the head).
            head = inflight[0].result
            either: tuple[Future[Any], ...] = (page.plan,) if head is None else (page.plan, head)
            wait(either, return_when=FIRST_COMPLETED)
            if not page.plan.done() or page.plan.exception() is not None:
                return False
            self._look_up(inflight, executors, lookup, company_sso_id, wait=False)
        self._look_up(inflight, executors, lookup, company_sso_id, wait=False)
        return target.looked_up

    def _start(
        self,
        encoder: LogEncoder | None,
        names_entities: bool,
        reader: SpanReader | None,
        run: int,
        lookups: RunLookups | None,
    ) -> list[ProcessPoolExecutor]:
        """The executors, a new one for any that is missing or broken; each forgets old pages and
        takes this run's encoder and lookups (``worker.begin`` runs before this run's pages on that
        worker) and, on its channel ahead of this run's spans, its span reader.

        A new one's process starts in a thread of its own (``starting``): sharing, this process
        transforms the run's first pages itself meanwhile, and a worker takes pages (and begins the
        run) once it is up (``_usable``); without sharing, there is nothing to do but wait for it."""
        self._begins = (encoder, names_entities, run, lookups, reader)
        with sigint_deferred():  # no KeyboardInterrupt between a start and its record
            executors = self._started(run)
        if not self._share:
            for slot in range(self._processes):
                self._wait_up(slot)
                self._usable(slot, run)
        return executors

    def _wait_up(self, slot: int) -> None:
        """Wait for worker ``slot``'s start, if in progress; ``WorkerLost`` if it failed."""
        starting = self._starts[slot]
        if starting is not None:
            try:
                starting.wait()
            except (BrokenProcessPool, OSError, EOFError) as exc:
                raise self._lost(exc) from exc

    def _started(self, run: int) -> list[ProcessPoolExecutor]:
        started: list[ProcessPoolExecutor] = []
        for slot, executor in enumerate(self._executors):
            starting = self._starts[slot]
            if executor is not None and starting is None:
                try:
                    self._begin(slot, run)
                except BrokenProcessPool:  # its worker died in an earlier run: replace it
                    executor.shutdown(wait=False, cancel_futures=True)
                    executor = None
            elif executor is not None and starting is not None:
                try:
                    starting.ready()  # still starting (an earlier run ended first): it begins when up
                except (BrokenProcessPool, OSError, EOFError):  # its start failed: replace it
                    self._starts[slot] = None
                    executor.shutdown(wait=False, cancel_futures=True)
                    executor = None
            started.append(executor or self._create(slot))
        return started

    def _create(self, slot: int) -> ProcessPoolExecutor:
        """Worker ``slot``'s executor and channel, its process starting in the background."""
        channel = self._channels[slot]
        if channel is not None:
            channel.close()
        reading, writing = self._context.Pipe(duplex=False)
        executor = ProcessPoolExecutor(
            max_workers=1,
            mp_context=self._context,
            initializer=worker.start,
            initargs=(self._recipe, reading),
        )
        widen_result_pipe(executor)  # its pages' results written at once, read when the runner can
        self._executors[slot] = executor
        self._channels[slot] = writing
        self._begun[slot] = 0
        self._starts[slot] = Starting(executor, reading)
        return executor

    def _begin(self, slot: int, run: int) -> None:
        """Worker ``slot``, up, begins run ``run``: ``worker.begin`` and its span reader."""
        executor = self._executors[slot]
        assert executor is not None  # made before its start
        encoder, names_entities, _, lookups, reader = self._begins
        executor.submit(worker.begin, encoder, names_entities, run, lookups)
        self._tell(slot, (worker.RUN, run, reader))
        self._begun[slot] = run

    def _tell(self, slot: int, message: tuple[Any, ...]) -> None:
        """Send ``message`` on worker ``slot``'s channel (``worker._SpanReads``)."""
        channel = self._channels[slot]
        assert channel is not None  # made with its executor
        try:
            channel.send(message)
        except OSError as exc:  # its process died, and with it the channel's read end
            raise self._lost(exc) from exc

    def _submit(
        self, executor: ProcessPoolExecutor, call: Callable[..., _T], *args: Any, **kwargs: Any
    ) -> Future[_T]:
        try:
            return executor.submit(call, *args, **kwargs)
        except BrokenProcessPool as exc:  # a worker died since the last result was read
            raise self._lost(exc) from exc

    def _wait(self, future: Future[_T]) -> _T:
        try:
            return future.result()
        except BrokenProcessPool as exc:
            raise self._lost(exc) from exc

    def _lost(self, exc: Exception) -> WorkerLost:
        return WorkerLost(
            f"a page worker process died (killed, or out of memory) with --workers {self._workers} "
            f"({exc}): nothing it had not finished was written; run again to resume from the cursor"
        )
