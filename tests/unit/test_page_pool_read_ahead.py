"""The page pool's read-ahead of a run's spans (``page_pool.read_ahead``): in order, bounded, an
error where the source raised it, nothing read once closed."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from crm_audit_adapters.crm_postgres import PostgresAuditSource, ReadOnlySession
from crm_audit_adapters.files import FileAuditSource
from crm_audit_adapters.page_pool.read_ahead import ReadAhead, reads_from_threads

GUARD_S = 60
"""A guard against a test that hangs, never a timing: each wait below ends as soon as it can."""


class _Counted:
    """An iterator over ``0 .. count - 1`` that notes how many items were taken, and by which
    thread; it raises ``LookupError`` in place of item ``fail_at``."""

    def __init__(self, count: int, fail_at: int | None = None) -> None:
        self.count = count
        self.fail_at = fail_at
        self.taken = 0
        self.threads: set[str] = set()
        self.changed = threading.Condition()

    def __iter__(self) -> Iterator[int]:
        return self

    def __next__(self) -> int:
        with self.changed:
            if self.taken >= self.count:
                raise StopIteration
            item, self.taken = self.taken, self.taken + 1
            self.threads.add(threading.current_thread().name)
            self.changed.notify_all()
        if item == self.fail_at:
            raise LookupError(f"item {item}")
        return item

    def wait_taken(self, count: int) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: self.taken >= count, GUARD_S)


class TestReadAhead:
    def test_items_come_in_order_read_by_a_thread_of_its_own(self) -> None:
        """Every item, in the source's order, each taken from the source by the ``page-reads`` thread."""
        source = _Counted(7)
        ahead = ReadAhead(source, depth=2)
        assert list(ahead) == list(range(7))
        ahead.close()
        assert source.threads == {"page-reads"}

    def test_no_more_than_depth_items_are_read_ahead(self) -> None:
        """After the first item is handed, the thread reads ``depth`` more and then waits: the
        source is not drained ahead of the caller."""
        source = _Counted(100)
        ahead = ReadAhead(source, depth=2)
        assert next(ahead) == 0
        source.wait_taken(3)
        with ahead._changed:  # the thread waits once its buffer holds depth items
            assert ahead._changed.wait_for(lambda: len(ahead._items) == 2, GUARD_S)
        assert source.taken == 3
        assert next(ahead) == 1
        source.wait_taken(4)
        ahead.close()
        assert source.taken == 4

    def test_an_error_is_raised_after_the_items_before_it_and_ends_the_items(self) -> None:
        """The source raised at its third item: the first two come back, then its error, then the end."""
        ahead = ReadAhead(_Counted(10, fail_at=2), depth=3)
        assert next(ahead) == 0
        assert next(ahead) == 1
        with pytest.raises(LookupError, match="item 2"):
            next(ahead)
        with pytest.raises(StopIteration):
            next(ahead)
        ahead.close()

    def test_nothing_is_read_after_close_and_a_next_after_it_ends(self) -> None:
        """Closed with items left, the source is not read again, and a ``next`` ends at once instead
        of waiting for an item no thread will read."""
        source = _Counted(100)
        ahead = ReadAhead(source, depth=1)
        assert next(ahead) == 0
        source.wait_taken(2)
        ahead.close()
        assert ahead._thread is not None
        assert not ahead._thread.is_alive()
        taken = source.taken
        assert list(ahead) in ([], [1])  # the one read ahead, if any, and then the end
        assert source.taken == taken

    def test_a_feed_that_is_never_read_starts_no_thread(self) -> None:
        """The thread starts at the first ``next``: a run that asks for no page starts none."""
        ahead = ReadAhead(_Counted(3))
        ahead.close()
        assert ahead._thread is None

    def test_depth_below_one_is_refused(self) -> None:
        with pytest.raises(ValueError, match="depth"):
            ReadAhead(_Counted(1), depth=0)


class TestReadsFromThreads:
    def test_a_postgres_source_is_read_ahead_a_file_source_is_not(self) -> None:
        """PostgreSQL's session runs one unit of work at a time, so the pool may read its next
        pages' ids in a thread while the runner reads its own page; a file's reads share a position."""
        assert reads_from_threads(PostgresAuditSource(ReadOnlySession.from_dsn("dbname=unused")))
        assert not reads_from_threads(FileAuditSource.__new__(FileAuditSource))
        assert not reads_from_threads(object())
