"""A call that might block for ever (``open()`` of a FIFO with no writer), run where a test can
give up on it instead of hanging the suite."""

from __future__ import annotations

import threading
from collections.abc import Callable


def in_a_thread(call: Callable[[], object], seconds: float = 30.0) -> BaseException | None:
    """What ``call`` raised, run in a daemon thread; fails the test when it is still running after
    ``seconds`` (a reader blocked for ever in ``open()`` would hang the whole suite otherwise)."""
    caught: list[BaseException | None] = []

    def target() -> None:
        try:
            call()
        except BaseException as exc:  # handed to the test
            caught.append(exc)
        else:
            caught.append(None)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "the read is still blocked"
    return caught[0]
