"""A run's page spans read ahead of the pool's need, in a thread of their own (``ReadAhead``).

With ``--workers`` on PostgreSQL the runner reads each page's ids (a unit of work of four round
trips: ``BEGIN READ ONLY``, its settings, the keyset query, ``COMMIT``) before it hands the page to
a worker or takes it itself. Read where it is needed, that wait was the runner's: a seventh of its
main thread's wall time in a traced, loaded 100k run (benchmarks/RESULTS.md, issue 15 goal 2, "the
pool's CPU by step, and its reads"), time in which it neither wrote nor transformed. A thread reads
the next spans instead while the runner works (the query waits off the GIL), at most ``depth`` of
them, so the memory stays flat. Only for a source that may be read from two threads at once
(``reads_from_threads``): the runner's main thread reads its own pages' rows meanwhile
(``in_flight.Feed``).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from typing import Final, Generic, TypeVar

__all__ = ["DEPTH", "ReadAhead", "reads_from_threads"]

DEPTH: Final = 2
"""Spans read ahead: a page's ids are about 4 KiB; two cover the page the runner hands next while
the thread reads the one after."""

JOIN_S: Final = 5.0
"""How long ``close`` waits for a read in progress to end (seconds): a unit of work is bounded by
the session's statement timeout and retries, and a thread left reading past this is a daemon that
ends with its read (it reads nothing more once closed)."""

_T = TypeVar("_T")


def reads_from_threads(source: object) -> bool:
    """Whether ``source`` may be read from two threads at once (its ``reads_from_threads`` is True:
    ``crm_postgres.PostgresAuditSource``, whose session serialises its units of work). A file's
    reads share one position in the file: never."""
    return getattr(source, "reads_from_threads", False) is True


class ReadAhead(Generic[_T]):
    """The items of ``source``, in order, up to ``depth`` read ahead by a thread (``page-reads``).

    An iterator: an exception ``source`` raised is raised by the ``next`` that reaches it (after
    the items before it), and every ``next`` after the end or an error ends. The thread starts at
    the first ``next`` (a run that never asks for a page starts none). ``close`` stops the reading:
    no item is read after it, and it waits ``JOIN_S`` at most for a read in progress.
    """

    __slots__ = ("_changed", "_closed", "_depth", "_ended", "_error", "_items", "_source", "_thread")

    def __init__(self, source: Iterator[_T], depth: int = DEPTH) -> None:
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self._source = source
        self._depth = depth
        self._items: deque[_T] = deque()
        self._ended = False  # the source ended or raised: no item after those in _items
        self._error: BaseException | None = None
        self._closed = False
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def __iter__(self) -> ReadAhead[_T]:
        return self

    def __next__(self) -> _T:
        if self._thread is None:
            self._thread = threading.Thread(target=self._read, name="page-reads", daemon=True)
            self._thread.start()
        with self._changed:
            self._changed.wait_for(lambda: self._items or self._ended)
            if self._items:
                item = self._items.popleft()
                self._changed.notify_all()  # room for one more
                return item
            error, self._error = self._error, None
        if error is not None:
            raise error
        raise StopIteration

    def close(self) -> None:
        """Stop reading ahead; wait for a read in progress (``JOIN_S`` at most)."""
        with self._changed:
            self._closed = True
            self._ended = True  # a next after the close ends at once, instead of waiting for good
            self._changed.notify_all()
        if self._thread is not None:
            self._thread.join(JOIN_S)

    def _read(self) -> None:
        source, changed = self._source, self._changed
        while True:
            with changed:
                changed.wait_for(lambda: self._closed or len(self._items) < self._depth)
                if self._closed:
                    return
            try:
                item = next(source)
            except StopIteration:
                self._end(None)
                return
            except BaseException as exc:  # raised in the reader's thread, by the next that reaches it
                self._end(exc)
                return
            with changed:
                self._items.append(item)
                changed.notify_all()

    def _end(self, error: BaseException | None) -> None:
        with self._changed:
            self._ended = True
            self._error = error
            self._changed.notify_all()
