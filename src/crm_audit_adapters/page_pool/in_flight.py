"""The pages a ``ProcessPagePipeline`` has in flight: as it reads them (``Feed``), and each one
until it is handed back to the run loop (``Page``)."""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future
from typing import Any, Final, TypeAlias

from crm_audit_transform.domain import AuditRow
from crm_audit_transform.lookup import LookupContext, LookupRequest
from crm_audit_transform.ports import AuditPageIds, SpanReader
from crm_audit_transform.transformer import PageResult, PreparedRow
from crm_audit_transform.usecases.pages import PageSpan

from .read_ahead import ReadAhead, reads_from_threads
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

    A source that may be read from two threads (``read_ahead.reads_from_threads``: PostgreSQL) has
    its spans read ahead by a thread (``read_ahead.ReadAhead``) and the rows of this process's own
    pages read over a connection of their own (the source's ``span_reader``, as a worker's), so
    neither waits for the other's query.

    A read that raises ends the feed and keeps its error (``error``): the pages read before it are
    still transformed and handed back, in order, and only then is the error raised
    (``ProcessPagePipeline._transform``), as in one process, where a page is read after the ones
    before it are written. Without it a bad line read ahead lost the pages before it.
    """

    __slots__ = ("_ahead", "_own_reads", "error", "more", "reads", "sent", "seq", "source")

    def __init__(self, pages: Iterable[Item], reads: AuditPageIds | None = None) -> None:
        source = iter(pages)
        threads = reads is not None and reads_from_threads(reads)
        self._ahead = ReadAhead(source) if threads else None
        self._own_reads = _own_copy(reads.span_reader()) if threads and reads is not None else None
        self.source: Iterator[Item] = source if self._ahead is None else self._ahead
        self.reads = reads
        self.seq = 0
        self.sent = 0
        self.more = True
        self.error: Exception | None = None

    def next(self) -> tuple[int, Item] | None:
        """The next page and its number; None at the end, or after a read that raised."""
        if self.more:
            try:
                rows = next(self.source, None)
            except Exception as exc:  # raised once the pages before it are handed back
                self.fail(exc)
                return None
            if rows is not None:
                self.seq += 1
                return self.seq - 1, rows
            self.more = False
        return None

    def span_rows(self, span: PageSpan) -> Sequence[AuditRow]:
        """The rows of a span this process transforms itself."""
        if self._own_reads is not None:
            return self._own_reads(span)
        assert self.reads is not None  # spans come only with their source (transform_spans)
        return self.reads.span_rows(span)

    def close(self) -> None:
        """Stop reading ahead, and close the own pages' connection, if this feed has them (the run
        has ended)."""
        if self._ahead is not None:
            self._ahead.close()
        close = getattr(self._own_reads, "close", None)
        if callable(close):
            close()

    def fail(self, error: Exception) -> None:
        """End the feed at a read that raised ``error``, raised after the pages before it."""
        self.more = False
        self.error = error


def _own_copy(reader: SpanReader | None) -> SpanReader | None:
    """``reader`` as a worker gets it (its ``span_reader`` pickles, and a copy opens a connection of
    its own: ``PostgresSpanReader``), for this process's own pages: the source's session, which the
    ids are read on, is neither shared nor closed with it."""
    return None if reader is None else pickle.loads(pickle.dumps(reader))  # noqa: S301 (our own bytes)


def done(page: Page) -> bool:
    return page.result is not None and page.result.done()


NO_PLAN: Final[Future[Plan]] = Future()
NO_PLAN.set_result((None, LookupRequest()))
"""A whole page's plan: it has none (its worker looks it up), and is never asked for it."""
