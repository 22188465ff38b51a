"""A page worker's span reader thread: a page asked for after the thread ended is an error, never a wait."""

from __future__ import annotations

import threading
from multiprocessing import Pipe

import pytest

from crm_audit_adapters.page_pool.worker import _SpanReads


class _StillAlive:
    """A thread that reports itself alive: the reader thread between its last notify and its end."""

    @staticmethod
    def is_alive() -> bool:
        return True


class TestSpanReads:
    def test_a_page_asked_for_after_the_channel_closed_raises(self) -> None:
        """The parent closes its end with no page sent: the thread ends, and ``take`` raises instead
        of waiting for a page no one will read, even if the thread still looks alive (as it does
        while it notifies its last waiter)."""
        parent, child = Pipe()
        reads = _SpanReads(child)
        thread = reads._thread
        reads._thread = _StillAlive()  # type: ignore[assignment]
        parent.close()
        thread.join()
        failures: list[BaseException] = []

        def take() -> None:
            try:
                reads.take(0, 0)
            except BaseException as exc:  # handed to the test's thread
                failures.append(exc)

        taker = threading.Thread(target=take, daemon=True)
        taker.start()
        taker.join(60)  # a guard against a test that hangs, not a timing: take returns at once
        assert not taker.is_alive(), "take waited for a page the stopped reader will never read"
        assert len(failures) == 1
        assert isinstance(failures[0], RuntimeError)
        with pytest.raises(RuntimeError, match="span reader has stopped"):
            reads.take(0, 1)
