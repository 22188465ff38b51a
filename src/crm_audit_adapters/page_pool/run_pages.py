"""One run's pages in a ``ProcessPagePipeline``: handed to the workers, taken by the runner, looked
up in page order, and each one's result when it is the next to write (``RunPages``)."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, Final

from crm_audit_transform.transformer import PageResult, Transformer
from crm_audit_transform.usecases.pages import PageLookup, PageSpan, RangeRows

from . import worker
from .in_flight import NO_PLAN, Feed, Page, Plan, Whole
from .in_flight import done as page_done
from .sending import wire_rows
from .sent_rows import SentRows
from .wire import unpack
from .worker_processes import WorkerProcesses

__all__ = ["TAIL_PAGES", "RunPages"]

TAIL_PAGES: Final = 2
"""Once the feed's last pages are in sight (``Feed.ends_within`` the worker's depth), a worker is
handed a page only while fewer than this many of its pages are not yet done: the one it transforms
and the next; the runner takes the others itself (``work_here``). With its full depth, its last
pages would wait in its queue while the runner, done with its own, waited for them (0.07–0.18 s of a
loaded 100k run: benchmarks/RESULTS.md, issue 15 goal 2, the pool's last idle tenth)."""


class RunPages:
    """Run ``run``'s pages in flight (``inflight``, in page order), read from ``feed``.

    ``executors`` are the run's workers (``WorkerProcesses.started``), at most ``pages_per_worker``
    pages each; ``transformer`` transforms the runner's own pages, at most ``own_pages`` of them.
    ``share``: the runner takes pages of its own (``work_here``), and so the last pages a worker is
    not handed (``TAIL_PAGES``); without, every page goes to a worker.
    With ``whole`` (the company, when the workers make the lookups) each worker's page is one task
    that comes back transformed; without, two (``worker.prepare*``, then ``worker.finish`` with the
    lookups made here by ``lookup``, in page order)."""

    __slots__ = (
        "_company_sso_id",
        "_executors",
        "_lookup",
        "_own_pages",
        "_pages_per_worker",
        "_processes",
        "_run",
        "_share",
        "_transformer",
        "_whole",
        "feed",
        "inflight",
    )

    def __init__(
        self,
        feed: Feed,
        processes: WorkerProcesses,
        executors: Sequence[ProcessPoolExecutor],
        run: int,
        transformer: Transformer,
        lookup: PageLookup,
        company_sso_id: str,
        *,
        whole: bool,
        pages_per_worker: int,
        own_pages: int,
        share: bool = True,
    ) -> None:
        self.feed = feed
        self.inflight: deque[Page] = deque()
        self._processes = processes
        self._executors = executors
        self._run = run
        self._transformer = transformer
        self._lookup = lookup
        self._company_sso_id = company_sso_id
        self._whole = company_sso_id if whole else None
        self._pages_per_worker = pages_per_worker
        self._own_pages = own_pages
        self._share = share

    def send(self) -> None:
        """Read pages and send them to the workers until each has ``pages_per_worker`` in flight;
        the ``n``-th page sent goes to worker ``n mod processes``, or the next one up (a worker
        still starting takes none: ``WorkerProcesses.usable``). A span goes on the worker's channel
        first, so its reader thread reads the rows ahead of the page's ``prepare_span``. With
        ``whole``, each page is one task, ``worker.page`` or ``worker.page_span``, which comes back
        transformed."""
        feed, inflight, processes, executors, run = (
            self.feed,
            self.inflight,
            self._processes,
            self._executors,
            self._run,
        )
        held = [0] * len(executors)
        busy = [0] * len(executors)
        for waiting in inflight:
            if waiting.worker is not None:
                held[waiting.worker] += 1
                busy[waiting.worker] += not page_done(waiting)
        # Near the feed's end a worker gets a page only while it has fewer than TAIL_PAGES not yet
        # done: the last pages go to whichever process is free, not into a queue the other waits on.
        tail = self._share and feed.reads is not None and feed.ends_within(self._pages_per_worker)
        while True:
            slot = self._free_slot(held, busy if tail else None, feed.sent)
            if slot is None:
                return
            page = feed.next()
            if page is None:
                return
            seq, item = page
            if self._whole is not None:
                done: Future[Whole]
                if isinstance(item, PageSpan):
                    processes.tell(slot, (worker.SPAN, run, seq, item))
                    done = processes.submit(executors[slot], worker.page_span, seq, run, self._whole)
                    inflight.append(Page(seq, None, slot, NO_PLAN, whole=done))
                else:
                    wired, flat = wire_rows(item)
                    done = processes.submit(
                        executors[slot],
                        worker.page,
                        seq,
                        SentRows(wired),
                        flat=flat,
                        company_sso_id=self._whole,
                    )
                    inflight.append(Page(seq, item, slot, NO_PLAN, whole=done))
            elif isinstance(item, PageSpan):
                processes.tell(slot, (worker.SPAN, run, seq, item))
                plan = processes.submit(executors[slot], worker.prepare_span, seq, run)
                inflight.append(Page(seq, None, slot, plan))
            else:
                wired, flat = wire_rows(item)
                plan = processes.submit(executors[slot], worker.prepare, seq, SentRows(wired), flat=flat)
                inflight.append(Page(seq, item, slot, plan))
            feed.sent += 1
            held[slot] += 1
            busy[slot] += 1

    def _free_slot(self, held: Sequence[int], busy: Sequence[int] | None, sent: int) -> int | None:
        """The worker the next page goes to: the first, from ``sent mod processes`` on, that is up
        and holds fewer than ``pages_per_worker`` pages (and, given ``busy``, has fewer than
        ``TAIL_PAGES`` not yet done); None if none."""
        count = len(held)
        for step in range(count):
            slot = (sent + step) % count
            if (
                held[slot] < self._pages_per_worker
                and (busy is None or busy[slot] < TAIL_PAGES)
                and self._processes.usable(slot, self._run)
            ):
                return slot
        return None

    def work_here(self) -> bool:
        """Whether this process did a step of a page of its own while the head is on its worker:
        transformed one it has looked up, or read and prepared a new one (at most ``own_pages`` in
        flight, and only when none waits for its transform)."""
        transformer, feed = self._transformer, self.feed
        own = [page for page in self.inflight if page.worker is None]
        for page in own:
            if page.own is None:
                if page.context is None:
                    return False  # waiting for its lookup, behind the workers' pages before it
                page.own = transformer.transform(
                    page.prepared, page.context, company_sso_id=self._company_sso_id
                )
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
        self.inflight.append(page)
        return True

    def result(self, page: Page) -> PageResult:
        """The head's result: unpacked from its worker, or transformed here if not yet."""
        if page.worker is None and page.result is not None:
            page.result.result()  # its lookup raised (``look_up``): raised now, the pages before it written
        if page.worker is not None:
            assert page.result is not None  # the head is always looked up
            got = self._processes.wait(page.result)
            if page.whole:
                ids, got = got
                if ids is not None:
                    page.ids = ids
            return unpack(got)
        if page.own is None:
            assert page.context is not None  # the head is always looked up
            page.own = self._transformer.transform(
                page.prepared, page.context, company_sso_id=self._company_sso_id
            )
        return page.own

    def look_up(self, *, wait: bool) -> None:
        """Look up, in page order, the head (with ``wait``, waiting for its plan) and every next
        page already prepared.

        A next page whose preparing raised (its worker could not read its rows) waits to be the head:
        its error is raised after the pages before it are handed back, as in one process. So does a
        page whose lookup raised here (USMAN's ``DirectoryRefused``, the CRM's ``SourceUnavailable``):
        raised at once, it dropped the pages before it still on their workers, which one process
        writes first."""
        for index, page in enumerate(self.inflight):
            if page.looked_up:
                continue
            if (index or not wait) and (not page.plan.done() or page.plan.exception() is not None):
                return
            ids, request = self._processes.wait(page.plan)
            if ids is not None:
                page.ids = ids
            try:
                context = self._lookup(request)
            except Exception as exc:  # raised by ``result`` when its page is the head
                failed: Future[Any] = Future()
                failed.set_exception(exc)
                page.result = failed
                return  # the pages after it wait: one process would not look them up
            if page.worker is None:
                page.context = context
            else:
                page.result = self._processes.submit(
                    self._executors[page.worker], worker.finish, page.seq, context, self._company_sso_id
                )

    def look_up_own(self) -> bool:
        """Whether this process's first page not yet looked up is now: the plans of the workers'
        pages before it waited for, and every page up to it looked up, in page order.

        It stops as soon as the head's result comes first (the head is then written), and at a plan
        that raised (or a worker that died): that error is raised when its page is the head, after
        the pages before it are handed back."""
        inflight = self.inflight
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
            self.look_up(wait=False)
        self.look_up(wait=False)
        return target.looked_up
