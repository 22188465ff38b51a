"""No test file leaves an asyncio event loop running on the main thread of its test process.

A loop left running there outlives its test: every later test in the same process that calls
``asyncio.run`` (the HTTP surface's handlers, for one) is refused ("cannot be called from a running
event loop"), and which tests those are depends on how pytest-xdist hands the files out. Playwright's
sync API is such a loop: it runs in a greenlet of the main thread for as long as its ``with`` block
lasts, which a session-scoped browser made the whole session (tests/web/conftest.py).

So after the last test of each file, once pytest has torn down that file's fixtures, the main thread
must run no loop: the file's last test then errors at its teardown, naming the test after which the
loop was first seen running and the fixtures it used. A loop held by a session-scoped fixture is
caught there too: it is still running when its file ends.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Generator

import pytest

__all__ = ["LoopLeftRunning", "pytest_runtest_teardown", "running_loop"]


class LoopLeftRunning(AssertionError):
    """A test file ended with an asyncio event loop running on the main thread."""


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop running on this thread, or ``None``."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


_SEEN = pytest.StashKey[tuple[asyncio.AbstractEventLoop, str, bool]]()
"""The loop last seen running after a test, after which test it was first seen, whether reported."""


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None]:
    """After ``item``'s teardown: where it was the last test of its file, no loop runs."""
    result = yield
    loop = running_loop() if threading.current_thread() is threading.main_thread() else None
    if loop is None:
        return result
    stash = item.session.stash
    seen, first, reported = stash.get(_SEEN, (None, "", False))
    if seen is not loop:
        first = f"{item.nodeid} (fixtures: {', '.join(sorted(item.fixturenames))})"
        reported = False
    ends_file = nextitem is None or nextitem.path != item.path
    stash[_SEEN] = (loop, first, reported or ends_file)
    if ends_file and not reported:  # once a loop: the files after it did not start it
        raise LoopLeftRunning(
            f"an asyncio event loop is still running on the main thread after {item.path.name} ended;"
            f" first seen after {first}: end it with its file (a module-scoped fixture), or"
            " asyncio.run fails in whichever later test shares this process"
        )
    return result
