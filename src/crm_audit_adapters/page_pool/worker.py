"""What runs inside each worker process of the page pool (``pipeline.ProcessPagePipeline``).

A worker process holds one ``Transformer``, built by the pool's recipe when the process starts, and
the pages it has prepared and not yet finished, by sequence number. Each page passes twice, both
times through the same worker (the pool keeps one single-process executor per worker):

- ``prepare(seq, rows)``: load every row's ``audited_changes`` and the ids the rows name; the
  page's ``LookupRequest`` goes back to the parent, which makes the lookups (its connections,
  its one cache); or ``prepare_span(seq, span)``: the same, the rows first read here with the
  run's span reader (``begin``: the source's ``span_reader``, its own connection), their ids sent
  back with the request;
- ``finish(seq, context, company_sso_id)``: the rules over the prepared rows with the parent's
  ``LookupContext``; the ``PageResult`` goes back as ``wire.pack`` makes it — each migrated log
  encoded by the run's writer's encoder (``begin``), so the parent only writes its bytes.

So the loaded values never cross a process boundary: only the raw rows go out (as tuples of
their fields), or only their ids, and the request and the outcomes (as tuples of builtins) come
back. The per-process
state is a module global because the process is its unit: one process, one transformer, its pages. A worker
ignores Ctrl-C (the parent decides when to stop and stops the pool) and ends itself when its
parent process is gone, so a parent killed with SIGKILL leaves no worker behind.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Sequence
from multiprocessing.util import Finalize
from typing import Any

from crm_audit_transform.domain import AuditRow
from crm_audit_transform.lookup import LookupContext, LookupRequest
from crm_audit_transform.ports import LogEncoder, SpanReader
from crm_audit_transform.transformer import PreparedRow, Transformer
from crm_audit_transform.usecases.pages import PageSpan, encode_ahead

from .wire import WirePage, pack

__all__ = ["begin", "finish", "prepare", "prepare_span", "start"]


class _Worker:
    __slots__ = ("encoder", "names_entities", "pending", "reader", "transformer")

    def __init__(self, transformer: Transformer) -> None:
        self.transformer = transformer
        self.encoder: LogEncoder | None = None
        self.names_entities = False
        self.pending: dict[int, tuple[PreparedRow, ...]] = {}
        self.reader: SpanReader | None = None

    def drop_reader(self) -> None:
        """Close the span reader's connection, if it has one (a reader with ``close``)."""
        reader, self.reader = self.reader, None
        close = getattr(reader, "close", None)
        if callable(close):
            close()


_worker: _Worker | None = None


def start(recipe: Callable[[], Transformer]) -> None:
    """The executor's initializer: ignore Ctrl-C, watch the parent, build the transformer."""
    global _worker
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_end_with, args=(parent,), name="parent-watch", daemon=True).start()
    _worker = _Worker(recipe())
    # multiprocessing ends a worker with os._exit: close its reader's connection first, so the
    # server sees a goodbye, not a dropped client.
    Finalize(None, _drop_reader, exitpriority=10)


def _drop_reader() -> None:
    if _worker is not None:
        _worker.drop_reader()


def _end_with(parent: Any) -> None:
    parent.join()  # returns when the parent process has ended, however it ended
    os._exit(1)


def _state() -> _Worker:
    if _worker is None:  # pragma: no cover - the executor always runs ``start`` first
        raise RuntimeError("page worker not started")
    return _worker


def begin(encoder: LogEncoder | None, names_entities: bool, reader: SpanReader | None = None) -> None:
    """A run starts: its writer's encoder (``ports.PagePipeline``) and its span reader
    (``ports.AuditPageIds``; the previous run's is closed); drop the pages a previous run prepared
    and never finished (it stopped early)."""
    worker = _state()
    worker.pending.clear()
    worker.encoder = encoder
    worker.names_entities = names_entities
    worker.drop_reader()
    worker.reader = reader


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


def prepare_span(seq: int, span: PageSpan) -> tuple[Sequence[int] | None, LookupRequest]:
    """Read page ``seq``'s rows with the run's span reader, load them and keep them; their ids and
    the lookups they need (``prepare``)."""
    worker = _state()
    if worker.reader is None:  # pragma: no cover - the pool sends spans only with a reader
        raise RuntimeError("page worker has no span reader")
    rows = worker.reader(span)
    prepared = worker.transformer.prepare(rows)
    worker.pending[seq] = prepared
    return tuple(row.id for row in rows), worker.transformer.plan(prepared)


def finish(seq: int, context: LookupContext, company_sso_id: str) -> WirePage:
    """Page ``seq``'s outcomes, one per row in order, with the parent's lookups, packed
    (``wire.pack``): each migrated log encoded by the run's encoder, if it has one, unless the
    run loop may still change it (``encode_ahead``)."""
    worker = _state()
    prepared = worker.pending.pop(seq)
    result = worker.transformer.transform(prepared, context, company_sso_id=company_sso_id)
    encoder = worker.encoder
    if encoder is None:
        return pack(result)
    names = worker.names_entities
    return pack(result, lambda log: encode_ahead(log, encoder, names_entities=names))
