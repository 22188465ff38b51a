"""What runs inside each worker process of the page pool (``pipeline.ProcessPagePipeline``).

A worker process holds one ``Transformer``, built by the pool's recipe when the process starts, and
what the run gave it at ``begin``: the run's writer's encoder and, when every lookup port of the
run can be copied to another process (``lookup.RunLookups.for_worker``), the run's lookups.

**One trip a page** (the run's lookups given): ``page(seq, rows)`` or ``page_span(seq, run)`` loads
the page's rows, makes its lookups here — users over the worker's own PostgreSQL connection, SSO ids
through its own USMAN client, contacts through its own MongoDB client or the contacts file's index,
with a cache of its own for the run — applies the rules and sends back the ``PageResult`` as
``wire.pack`` makes it, each migrated log encoded by the run's encoder. The parent only writes.
A lookup that raises (``DirectoryRefused`` for a 401, ``SourceUnavailable``) is the page's error,
raised in the parent when that page is the next to write, after the pages before it.

**Two trips** (a port that cannot be copied: the pages' lookups are made by the parent, with its
connections and its one cache). Each page passes twice, both times through the same worker (the
pool keeps one single-process executor per worker):

- ``prepare(seq, rows)``: load every row's ``audited_changes`` and the ids the rows name; the
  page's ``LookupRequest`` goes back to the parent, which makes the lookups; or
  ``prepare_span(seq, run)``: the same, over the rows read here with the run's span reader (the
  source's ``span_reader``, its own connection), their ids sent back with the request;
- ``finish(seq, context, company_sso_id)``: the rules over the prepared rows with the parent's
  ``LookupContext``; the ``PageResult`` goes back packed, as above.

So the loaded values never cross a process boundary: only the raw rows go out (as tuples of
their fields), or only their ids, and the request and the outcomes (as tuples of builtins) come
back.

Spans are read ahead. The parent sends each span on the worker's own channel (a one-way pipe)
as it hands the worker the page, before the page's ``prepare_span`` (or ``page_span``); a reader
thread here reads them in order, so the next page's rows arrive while this process loads and
transforms the current one, instead of its waiting for the server (the query waits off the GIL).
The channel also carries each run's span reader, ahead of its spans: the thread alone uses the
reader's connection. It holds the rows of at most the pages the parent has in flight on this
worker (``pages_per_worker``), so memory stays as flat as without it.

A worker process does nothing but a run loop's CPU work, so it runs with the run loop's collector
settings for its whole life (``collector.collect_as_run_loop``: the fork server's imports frozen,
young passes every 10,000 allocations), as ``run`` and ``dry-run`` run their own loop. The per-process
state is a module global because the process is its unit: one process, one transformer, its pages. A worker
ignores Ctrl-C (the parent decides when to stop and stops the pool) and ends itself when its
parent process is gone, so a parent killed with SIGKILL leaves no worker behind.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import threading
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from multiprocessing.util import Finalize
from typing import Any, Final

from crm_audit_transform.domain import AuditRow
from crm_audit_transform.lookup import LookupContext, LookupRequest, RunLookups
from crm_audit_transform.ports import LogEncoder, SpanReader
from crm_audit_transform.transformer import PageResult, PreparedRow, Transformer
from crm_audit_transform.usecases.pages import PageSpan, encode_ahead, read_ids

from ..collector import collect_as_run_loop
from ..fork_server import ignore_sigint
from .wire import WirePage, pack

__all__ = [
    "PORT_MODULES",
    "RUN",
    "SPAN",
    "begin",
    "finish",
    "page",
    "page_span",
    "prepare",
    "prepare_span",
    "start",
]

PORT_MODULES: Final = (
    "crm_audit_adapters.crm_postgres",
    "crm_audit_adapters.files",
    "crm_audit_adapters.files.audit_ranges",
    "crm_audit_adapters.files.audit_spans",
    "crm_audit_adapters.mongo.contacts",
    "crm_audit_adapters.usman",
)
"""The modules of the span readers and lookup ports a run sends a worker, imported before its reader
thread starts (and by the fork server): the reader thread unpickling the run's span reader and the
main thread unpickling the run's lookups then never import one module from two threads at once.
Two threads importing ``crm_postgres``'s modules, which import each other, can hit importlib's
per-module locks in opposite orders (``_DeadlockError``: seen once in the CLI's USMAN-outage walk-
through with ``--workers 2``, the reader thread dead and the run ending INTERNAL)."""

RUN = "run"
"""Channel message ``(RUN, run, reader)``: run ``run`` starts; its spans are read with ``reader``."""
SPAN = "span"
"""Channel message ``(SPAN, run, seq, span)``: page ``seq`` of run ``run`` is told by ``span``."""


class _SpanReads:
    """The reader thread: reads the spans the parent sends on ``channel``, in order, and keeps each
    page's rows (or the error reading them raised) until ``prepare_span`` takes them.

    A run's rows are kept under ``(run, seq)``; a new run drops those of earlier ones (a run that
    stopped early leaves pages it never prepared). The thread ends when the parent closes its end.
    """

    __slots__ = ("_channel", "_done", "_reader", "_reading", "_rows", "_stopped", "_thread")

    def __init__(self, channel: Connection) -> None:
        self._channel = channel
        self._done = threading.Condition()
        self._reading = threading.Lock()  # held while the reader's connection is in use
        self._rows: dict[tuple[int, int], Sequence[AuditRow] | BaseException] = {}
        self._reader: SpanReader | None = None
        # Set (under _done) when _serve ends: take waits on it, not on the thread's liveness, since
        # the thread is still alive while it notifies and a waiter woken then would wait for good.
        self._stopped = False
        self._thread = threading.Thread(target=self._serve, name="span-reads", daemon=True)
        self._thread.start()

    def take(self, run: int, seq: int) -> Sequence[AuditRow]:
        """Page ``seq``'s rows, waiting for the thread to have read them; its error if it failed."""
        key = (run, seq)
        with self._done:
            self._done.wait_for(lambda: key in self._rows or self._stopped)
            got = self._rows.pop(key, None)
        if got is None:  # the thread ended (the parent closed the channel) without reading this page
            raise RuntimeError("page worker's span reader has stopped")
        if isinstance(got, BaseException):
            raise got
        return got

    def close(self) -> None:
        """Close the reader's connection, once any read in progress has ended."""
        with self._reading:
            _close(self._reader)
            self._reader = None

    def _serve(self) -> None:
        try:
            while True:
                try:
                    message = self._channel.recv()
                except (EOFError, OSError):
                    return  # the parent closed the channel: the pool is closing
                if message[0] == RUN:
                    self._start_run(message[1], message[2])
                else:
                    self._read(message[1], message[2], message[3])
        finally:
            self.close()
            with self._done:
                self._stopped = True
                self._done.notify_all()

    def _start_run(self, run: int, reader: SpanReader | None) -> None:
        with self._reading:
            _close(self._reader)
            self._reader = reader

    def forget_before(self, run: int) -> None:
        """Drop the rows of runs before ``run``: called from ``begin``, which runs after every task
        of those runs on this worker, so no queued ``prepare_span`` of theirs still waits for them."""
        with self._done:
            for key in [key for key in self._rows if key[0] < run]:
                del self._rows[key]

    def _read(self, run: int, seq: int, span: PageSpan) -> None:
        got: Sequence[AuditRow] | BaseException
        with self._reading:
            try:
                if self._reader is None:  # pragma: no cover - the pool sends spans only with a reader
                    raise RuntimeError("page worker has no span reader")
                got = self._reader(span)
            except Exception as exc:  # the parent gets it from the page's prepare_span, as raised here
                got = exc
        with self._done:
            self._rows[(run, seq)] = got
            self._done.notify_all()


def _close(reader: SpanReader | None) -> None:
    """Close a span reader's connection, if it has one (a reader with ``close``)."""
    close = getattr(reader, "close", None)
    if callable(close):
        close()


class _Worker:
    __slots__ = ("encoder", "lookups", "names_entities", "pending", "reads", "transformer")

    def __init__(self, transformer: Transformer, reads: _SpanReads | None) -> None:
        self.transformer = transformer
        self.encoder: LogEncoder | None = None
        self.names_entities = False
        self.pending: dict[int, tuple[PreparedRow, ...]] = {}
        self.reads = reads
        self.lookups: RunLookups | None = None

    def use_lookups(self, lookups: RunLookups | None) -> None:
        """The run's lookups from now on; the previous run's connections closed."""
        previous, self.lookups = self.lookups, lookups
        if previous is not None:
            previous.close()


_worker: _Worker | None = None


def start(recipe: Callable[[], Transformer], channel: Connection | None = None) -> None:
    """The executor's initializer: ignore Ctrl-C, watch the parent, build the transformer, start
    reading the spans sent on ``channel`` (the read end of the worker's pipe), take the run loop's
    collector settings."""
    global _worker
    ignore_sigint()  # one sent since the fork is dropped (fork_server)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_end_with, args=(parent,), name="parent-watch", daemon=True).start()
    for name in PORT_MODULES:  # before the reader thread: no module imported by two threads at once
        importlib.import_module(name)
    _worker = _Worker(recipe(), None if channel is None else _SpanReads(channel))
    # multiprocessing ends a worker with os._exit: close its reader's connection first, so the
    # server sees a goodbye, not a dropped client.
    Finalize(None, _drop_reader, exitpriority=10)
    collect_as_run_loop()


def _drop_reader() -> None:
    if _worker is not None:
        if _worker.reads is not None:
            _worker.reads.close()
        _worker.use_lookups(None)


def _end_with(parent: Any) -> None:
    parent.join()  # returns when the parent process has ended, however it ended
    os._exit(1)


def _state() -> _Worker:
    if _worker is None:  # pragma: no cover - the executor always runs ``start`` first
        raise RuntimeError("page worker not started")
    return _worker


def begin(
    encoder: LogEncoder | None, names_entities: bool, run: int = 0, lookups: RunLookups | None = None
) -> None:
    """A run starts: its writer's encoder (``ports.PagePipeline``) and, for one trip a page, its
    lookups (the previous run's closed); drop the pages a previous run prepared and never finished
    (it stopped early). Its span reader comes on the channel."""
    worker = _state()
    worker.pending.clear()
    worker.encoder = encoder
    worker.names_entities = names_entities
    worker.use_lookups(lookups)
    if worker.reads is not None:
        worker.reads.forget_before(run)


def prepare(seq: int, rows: Sequence[Any], *, flat: bool) -> tuple[Sequence[int] | None, LookupRequest]:
    """Load page ``seq``'s rows and keep them; the lookups they need.

    ``flat``: each row is the tuple of an ``AuditRow``'s field values, in order (cheaper to send
    than the object); else the rows are as the source gave them (a row that is no ``AuditRow``
    fails as its own outcome, as in one process).
    """
    worker = _state()
    page = [AuditRow(*row) for row in rows] if flat else rows
    prepared = worker.transformer.prepare(page)
    worker.pending[seq] = prepared
    return None, worker.transformer.plan(prepared)


def prepare_span(seq: int, run: int) -> tuple[Sequence[int] | None, LookupRequest]:
    """Page ``seq`` of run ``run``, whose span came on the channel: its rows as the reader thread
    read them (waiting for them if need be; the error reading them raised, if any), loaded and
    kept; their ids (a whole range's ``ReadIds``, with what its reader told) and the lookups they
    need (``prepare``)."""
    worker = _state()
    if worker.reads is None:  # pragma: no cover - the pool sends spans only with a channel
        raise RuntimeError("page worker has no span channel")
    rows = worker.reads.take(run, seq)
    prepared = worker.transformer.prepare(rows)
    worker.pending[seq] = prepared
    return read_ids(rows), worker.transformer.plan(prepared)


def finish(seq: int, context: LookupContext, company_sso_id: str) -> WirePage:
    """Page ``seq``'s outcomes, one per row in order, with the parent's lookups, packed
    (``wire.pack``): each migrated log encoded by the run's encoder, if it has one, unless the
    run loop may still change it (``encode_ahead``)."""
    worker = _state()
    prepared = worker.pending.pop(seq)
    return _packed(worker, worker.transformer.transform(prepared, context, company_sso_id=company_sso_id))


def page(seq: int, rows: Sequence[Any], *, flat: bool, company_sso_id: str) -> tuple[None, WirePage]:
    """Page ``seq`` in one trip (the run's lookups given at ``begin``): its rows (as ``prepare``
    takes them) loaded, looked up here, transformed and packed (``finish``)."""
    return None, _whole(_state(), [AuditRow(*row) for row in rows] if flat else rows, company_sso_id)


def page_span(seq: int, run: int, company_sso_id: str) -> tuple[Sequence[int], WirePage]:
    """``page`` over the rows of page ``seq`` of run ``run`` as the reader thread read them
    (``prepare_span``), with their ids."""
    worker = _state()
    if worker.reads is None:  # pragma: no cover - the pool sends spans only with a channel
        raise RuntimeError("page worker has no span channel")
    rows = worker.reads.take(run, seq)
    return read_ids(rows), _whole(worker, rows, company_sso_id)


def _whole(worker: _Worker, rows: Sequence[Any], company_sso_id: str) -> WirePage:
    if worker.lookups is None:  # pragma: no cover - the pool sends whole pages only with lookups
        raise RuntimeError("page worker has no lookups for this run")
    transformer = worker.transformer
    prepared = transformer.prepare(rows)
    context = worker.lookups(transformer.plan(prepared))
    return _packed(worker, transformer.transform(prepared, context, company_sso_id=company_sso_id))


def _packed(worker: _Worker, result: PageResult) -> WirePage:
    encoder = worker.encoder
    if encoder is None:
        return pack(result)
    names = worker.names_entities
    return pack(result, lambda log: encode_ahead(log, encoder, names_entities=names))
