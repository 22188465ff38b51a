"""The pages a ``ProcessPagePipeline`` has in flight: as it reads them (``Feed``), and each one
until it is handed back to the run loop (``Page``)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from typing import Any, Final, TypeAlias

from crm_audit_transform.domain import AuditRow
from crm_audit_transform.lookup import LookupContext, LookupRequest
from crm_audit_transform.ports import AuditPageIds
from crm_audit_transform.transformer import PageResult, PreparedRow
from crm_audit_transform.usecases.pages import PageSpan

from .wire import WirePage

__all__ = ["NO_PLAN", "Feed", "Item", "Page", "Plan", "Whole", "done"]

Plan: TypeAlias = tuple[Sequence[int] | None, LookupRequest]
"""A prepared page's lookups, and the ids of the rows its worker read (None: the rows were sent)."""
Whole: TypeAlias = tuple[Sequence[int] | None, WirePage]
"""A page done in one trip: the ids of the rows its worker read (None: the rows were sent), its result."""
Item: TypeAlias = Sequence[AuditRow] | PageSpan
"""A page as the run loop gives it: its rows, or its ids (``PageSpan``) for the workers to read."""


class Page:
    """A page in flight: on worker ``worker`` (its ``result`` once looked up, or from the start for
    a ``whole`` page, done in one trip), or this process's own (``worker`` None: ``prepared`` here,
    ``plan`` a done future, then ``context``, then ``own``). ``rows`` as given, or — a span read by
    its worker — None until ``ids`` come with its plan (with its result, for a whole page)."""

    __slots__ = ("context", "ids", "own", "plan", "prepared", "result", "rows", "seq", "whole", "worker")

    def __init__(
        self,
        seq: int,
        rows: Sequence[AuditRow] | None,
        worker: int | None,
        plan: Future[Plan],
        prepared: tuple[PreparedRow, ...] = (),
        whole: Future[Whole] | None = None,
    ) -> None:
        self.seq = seq
        self.rows = rows
        self.ids: Sequence[int] | None = None
        self.worker = worker
        self.plan = plan
        self.prepared = prepared
        self.whole = whole is not None
        self.result: Future[Any] | None = whole  # WirePage, or Whole for a whole page
        self.context: LookupContext | None = None
        self.own: PageResult | None = None

    @property
    def looked_up(self) -> bool:
        return self.result is not None or self.context is not None

    def row_ids(self) -> Sequence[int]:
        if self.ids is not None:
            return self.ids
        assert self.rows is not None  # a span's ids come with its plan, before it is looked up
        return [row.id for row in self.rows]


class Feed:
    """The pages as read, numbered; ``sent`` counts those sent to the workers. ``reads``: the source
    that reads the spans among them here.

    A read that raises ends the feed and keeps its error (``error``): the pages read before it are
    still transformed and handed back, in order, and only then is the error raised
    (``ProcessPagePipeline._transform``), as in one process, where a page is read after the ones
    before it are written. Without it a bad line read ahead lost the pages before it.

    ``ends_within`` reads a few pages ahead (``ahead``, handed out first by ``next``, in order) to
    tell that the feed ends soon: the pool then hands its last pages out so that its processes end
    together (``RunPages.send``).
    """

    __slots__ = ("ahead", "error", "more", "reads", "sent", "seq", "source")

    def __init__(self, pages: Iterable[Item], reads: AuditPageIds | None = None) -> None:
        self.source = iter(pages)
        self.reads = reads
        self.seq = 0
        self.sent = 0
        self.more = True
        self.error: Exception | None = None
        self.ahead: deque[tuple[int, Item]] = deque()

    def next(self) -> tuple[int, Item] | None:
        """The next page and its number; None at the end, or after a read that raised."""
        if self.ahead:
            return self.ahead.popleft()
        return self._read()

    def ends_within(self, count: int) -> bool:
        """Whether at most ``count`` pages are left to hand out: up to ``count + 1`` pages read
        ahead to tell (kept for ``next``), fewer if the feed ends (or a read raises) before."""
        while self.more and len(self.ahead) <= count:
            page = self._read()
            if page is None:
                break
            self.ahead.append(page)
        return not self.more

    def _read(self) -> tuple[int, Item] | None:
        if self.more:
            try:
                rows = next(self.source, None)
            except Exception as exc:  # raised once the pages read before it are handed back
                self.more = False
                self.error = exc
                return None
            if rows is not None:
                self.seq += 1
                return self.seq - 1, rows
            self.more = False
        return None

    def fail(self, error: Exception) -> None:
        """End the feed at a page whose read raised ``error``, raised after the pages before it; the
        pages read ahead of it are dropped, as one process never reads past a page that failed."""
        self.more = False
        self.error = error
        self.ahead.clear()


def done(page: Page) -> bool:
    return page.result is not None and page.result.done()


NO_PLAN: Final[Future[Plan]] = Future()
NO_PLAN.set_result((None, LookupRequest()))
"""A whole page's plan: it has none (its worker looks it up), and is never asked for it."""
