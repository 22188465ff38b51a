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
run: benchmarks/RESULTS.md, issue 15 goal 2). Near the run's end a worker holds fewer pages not yet
done (``run_pages.TAIL_PAGES``), so that the processes end together. Memory stays flat. This
process looks its own pages up with the run's lookups (its connections, its cache). Pages come
back in order; the parent's own keep their ``ActivityLog``s, which the writer encodes.

Pages by id range: when the run's source can tell a page by its ids (``ports.AuditPageIds``:
PostgreSQL) the run loop gives ``transform_spans`` each page's ids alone, and each worker reads its
pages' rows itself (over its own connection, opened at its first page: the source's
``span_reader``), as does this process for the pages it takes. So the parent neither fetches nor
ships the rows' text; it reads ids, looks up, writes and saves the cursor. A worker reads ahead:
each span goes on the worker's own channel (a one-way pipe) as the page is handed to it, and a
thread there reads the rows while the worker loads and transforms the pages before it
(``worker``), so the server's time for a page is not the worker's idle time.

The modules: this one is the pool and a run's loop over its pages; ``run_pages`` what happens to
each page of a run (handed to a worker, or taken here; looked up in page order; its result);
``worker_processes`` the worker processes (made, started, begun for each run, stopped); ``worker``
what runs in one.

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
import sys
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import forkserver
from types import TracebackType
from typing import Any, Final, Literal

from crm_audit_transform.domain import AuditRow
from crm_audit_transform.lookup import RunLookups
from crm_audit_transform.ports import AuditPageIds, LogEncoder, SpanReader
from crm_audit_transform.transformer import Transformer
from crm_audit_transform.usecases.pages import PageLookup, PageSpan, TransformedPage

from ..fork_server import preload_first
from . import worker
from .in_flight import Feed, done
from .run_pages import RunPages
from .sending import TransformerRecipe, for_workers, require_picklable
from .worker_processes import WorkerProcesses

__all__ = ["MAX_WORKERS", "PAGES_IN_FLIGHT", "ProcessPagePipeline", "TransformerRecipe"]

MAX_WORKERS: Final = 64
"""More worker processes than this is a mistake, not a machine."""

PAGES_IN_FLIGHT: Final = 4
"""The pages in flight on each worker process, and of the runner's own, by default
(``pages_per_worker``, ``own_pages``). With 2 a side the worker ran dry while the runner took a step
of its own or read the next pages' ids, and the runner's own pages waited behind the worker's; with 4
each side has more to go on while the other is busy: the pool ran 1.07 × faster by its medians
(benchmarks/RESULTS.md, issue 15 goal 2, the pool's depth). The runner holds about 4 MiB more."""

WRITER_ENCODERS: Final = ("crm_audit_adapters.files.sink", "crm_audit_adapters.mongo.activity_logs")
"""The modules of the writers' encoders, imported by the fork server too: a worker unpickling its
run's encoder then imports nothing (the sink's brings pymongo and orjson: 0.1 s of CPU a worker)."""

StartMethod = Literal["forkserver", "spawn"]


class ProcessPagePipeline:
    """``ports.PagePipeline`` over ``workers`` processes; a context manager that stops them on exit.

    ``workers`` processes transform pages. With ``share`` (the default) this process is one of
    them: it starts ``workers - 1`` worker processes and transforms a page itself whenever the
    next page to write is still on its worker and every worker has its pages (so ``workers`` ≥ 2);
    without, it starts ``workers`` and only reads, looks up and writes. ``recipe`` builds each
    worker's transformer: it must make the same rules as the transformer the run loop is given
    (the loop takes its scope from that one, and this process transforms its pages with it).
    ``pages_per_worker`` bounds the pages in flight per worker process (≥ 1; default
    ``PAGES_IN_FLIGHT``, which keeps a worker busy while the parent writes or takes a step of its own),
    ``own_pages`` this process's own (default: ``pages_per_worker``). The fork
    server starts here and imports the worker side while the caller sets up (its connections, its
    lease, its first page); the workers are forked from it at the first run (or ``start``), in the
    background, and serve every run until ``close``. ``preload``: more modules for the fork server
    to import, those the run's lookup ports import in a worker (``fork_server.RUNNER_PORTS`` for
    the runner's). ``switch_interval_s``: the interpreter's thread switch interval while a run goes
    on (``sys.setswitchinterval``; the one before is put back when the run ends); None (the
    default) leaves Python's 5 ms. The executors' threads that hand a worker its next task and read
    its result get the GIL from a runner busy with its own page only at that interval; 0.5 ms ran
    1.08 × faster in a same-run A/B at 100k, not past that A/B's noise (benchmarks/RESULTS.md, issue
    15 goal 2, the switch interval), so it is not the default.
    """

    __slots__ = (
        "_own_pages",
        "_pages_per_worker",
        "_processes",
        "_runs",
        "_share",
        "_switch_interval_s",
        "_workers",
    )

    def __init__(
        self,
        workers: int,
        recipe: Callable[[], Transformer],
        *,
        pages_per_worker: int = PAGES_IN_FLIGHT,
        own_pages: int | None = None,
        share: bool = True,
        start_method: StartMethod = "forkserver",
        preload: Sequence[str] = (),
        switch_interval_s: float | None = None,
    ) -> None:
        if not 1 + share <= workers <= MAX_WORKERS:
            raise ValueError(f"workers must be between {1 + share} and {MAX_WORKERS}, got {workers}")
        if pages_per_worker < 1:
            raise ValueError(f"pages_per_worker must be at least 1, got {pages_per_worker}")
        self._workers = workers
        self._share = share
        self._switch_interval_s = switch_interval_s
        self._pages_per_worker = pages_per_worker
        self._own_pages = pages_per_worker if own_pages is None else own_pages
        if self._own_pages < 1:
            raise ValueError(f"own_pages must be at least 1, got {self._own_pages}")
        require_picklable(recipe)
        context = multiprocessing.get_context(start_method)
        if start_method == "forkserver":
            # The fork server imports the worker side (and with it the core, PyYAML, libyaml) once,
            # so each worker forked from it starts in milliseconds instead of re-importing. It is
            # started now and imports while the caller connects, leases, reads its first page: the
            # first run's workers are then forked from a ready server instead of waiting for it.
            context.set_forkserver_preload(
                preload_first([worker.__name__, *WRITER_ENCODERS, *worker.PORT_MODULES, *preload])
            )
            forkserver.ensure_running()
        self._processes = WorkerProcesses(workers - share, recipe, context, workers=workers)
        self._runs = 0

    @classmethod
    def started(cls, workers: int, recipe: Callable[[], Transformer], **options: Any) -> ProcessPagePipeline:
        """A pool (``options``: the constructor's) whose workers start at once, in the background
        (``start``), as ``run --workers N`` builds it once it has read its job
        (``Runtime.use_workers``) and ``dry-run --workers N`` once it has checked its inputs: the
        runner knows by then that its run needs them. Their fork and start overlap what it does
        before its first page (its lease, its checks, its first pages' ids) instead of its first
        pages. In a quiet 100k-row run the pool then ran as fast as with the worker started at the
        first page, within that A/B's noise (benchmarks/RESULTS.md, issue 15 goal 2, the worker's
        start)."""
        pool = cls(workers, recipe, **options)
        try:
            pool.start()
        except BaseException:
            pool.close(wait=False)
            raise
        return pool

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
        replaces it (``WorkerProcesses.started``). A run begins the workers it finds up, and hands
        pages to the others once they are."""
        self._processes.start_missing()
        if wait:
            for slot in range(len(self._processes.executors)):
                self._processes.wait_up(slot)

    def close(self, *, wait: bool = True) -> None:
        """Stop the workers: queued work is cancelled, a page being transformed is let finish.

        ``wait=False`` (the pool left by an exception: an abort, a lost worker, a typed error)
        returns at once instead of waiting for the pages in flight: the workers only read and
        transform, so nothing of theirs needs finishing, and a worker that never answers (stopped,
        hung in a lookup) must not hold the command's exit. They end on their own once their page
        is done; the console ends those still alive after a Ctrl-C (``console.end_children``).
        ``wait=True`` waits ``starting.START_WAIT_S`` at most for a worker still starting,
        then leaves it to its start's thread (``starting``), as ``wait=False`` does at once. A
        Ctrl-C during those waits ends them, not the close: the rest is stopped as with
        ``wait=False`` and ``close`` returns (``WorkerProcesses.close``), since the run had ended
        and a completed run must end as completed.
        """
        self._processes.close(wait=wait)

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
        the writer encodes as in one process. ``WorkerLost`` when a worker process dies; the results of
        what the workers were doing are dropped when the generator is closed (``_pages``).
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
        with switch_interval(self._switch_interval_s):
            run = self._runs = self._runs + 1
            # The first page read before the workers are sent the run: the tenant's checks its read
            # ran are then in the copies of the runner's session they are sent, and their own
            # connections do not run them again (``crm_postgres.ReadOnlySession.__getstate__``).
            feed.ends_within(0)
            lookups = for_workers(lookup)
            executors = self._start(encoder, names_entities, reader, run, lookups)
            pages = RunPages(
                feed,
                self._processes,
                executors,
                run,
                transformer,
                lookup,
                company_sso_id,
                # One trip a page when the workers look their pages up themselves.
                whole=lookups is not None,
                pages_per_worker=self._pages_per_worker,
                own_pages=self._own_pages,
                share=self._share,
            )
            yield from self._pages(pages, feed)

    def _pages(self, pages: RunPages, feed: Feed) -> Generator[TransformedPage, None, None]:
        """The run's pages handed back in order, each transformed by its worker or here.

        A run that ends early (the generator closed, or an error) leaves what its workers were given
        to them: their results are never read, and the pages not yet started are cancelled by each
        executor's own thread when the pool closes (``WorkerProcesses.close``), or run before the
        next run's pages on a pool used again. None is cancelled here: after a worker died, its
        executor's thread fails every pending future (CPython 3.11's ``terminate_broken``) and
        raises ``InvalidStateError`` on one cancelled meanwhile, which no check made first can
        rule out (the worker may die between the check and the cancel)."""
        inflight = pages.inflight
        while True:
            pages.send()
            if not inflight:
                # Sharing, no worker is up yet (or every one is): this process takes the page.
                if self._share and pages.work_here():
                    continue
                if feed.error is not None:
                    raise feed.error  # every page read before it was handed back
                return
            # Sharing, this process does not wait for the head's plan while it has a step of
            # its own to take (a page to read and prepare while the worker prepares the head).
            pages.look_up(wait=not self._share)
            head = inflight[0]
            if self._share and head.worker is not None and not done(head):
                if pages.work_here():
                    continue
                # A page of its own waits for its lookup behind a worker's page still being
                # prepared: wait for that plan, not only the head's result, and transform the
                # own page while the worker finishes the head.
                if pages.look_up_own():
                    continue
            if not head.looked_up:
                pages.look_up(wait=True)
            inflight.popleft()
            result = pages.result(head)
            yield TransformedPage(head.row_ids(), result)

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
        run) once it is up (``WorkerProcesses.usable``); without sharing, there is nothing to do but
        wait for it."""
        processes = self._processes
        executors = processes.started(run, (encoder, names_entities, run, lookups, reader))
        if not self._share:
            for slot in range(len(executors)):
                processes.wait_up(slot)
                processes.usable(slot, run)
        return executors


@contextlib.contextmanager
def switch_interval(seconds: float | None) -> Iterator[None]:
    """The interpreter's thread switch interval at ``seconds`` while the body runs, then the one
    before, unless the body set another meanwhile (None: left as it is)."""
    if seconds is None:
        yield
        return
    previous = sys.getswitchinterval()
    sys.setswitchinterval(seconds)
    ours = sys.getswitchinterval()  # as the interpreter keeps it (whole microseconds)
    try:
        yield
    finally:
        if sys.getswitchinterval() == ours:
            sys.setswitchinterval(previous)
