"""The fork server that page-pool workers and shard processes are forked from, started so that a
Ctrl-C cannot kill it, or a process it forks, before they ignore SIGINT.

A terminal's Ctrl-C reaches the whole process group; the runner alone decides what it means (stop
after the batch in flight, exit 130). But the fork server imports its preload modules with
Python's default SIGINT handler, and each process it forks gets that handler back
(``multiprocessing.forkserver._serve_one``) until our code sets ``SIG_IGN``. A Ctrl-C in either
window raised ``KeyboardInterrupt`` there: the server died (the run ended ``INTERNAL: unexpected
EOF``) or the new process did (``WORKER_LOST … exit status 1``).

So the server is started with SIGINT blocked: a process inherits its parent's signal mask, across
``exec`` too (multiprocessing starts its resource tracker the same way), and the processes it forks
inherit the block. Each unblocks it only once it ignores SIGINT (``ignore_sigint``): a Ctrl-C that
came meanwhile was held pending, and is then discarded, never delivered.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from multiprocessing import forkserver, resource_tracker


@contextlib.contextmanager
def sigint_blocked() -> Iterator[None]:
    """SIGINT blocked in this thread while the body runs: a fork server it starts (a
    ``ProcessPagePipeline``, a ``ProcessShardLauncher``) inherits the block. A Ctrl-C meanwhile is
    delivered here when the body ends."""
    # The resource tracker first: starting it, multiprocessing blocks SIGINT for it and then
    # unblocks it in this thread, which would undo the block below; once it runs, that is skipped.
    resource_tracker.ensure_running()
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def ensure_fork_server() -> None:
    """``multiprocessing.forkserver.ensure_running()``, the server started with SIGINT blocked."""
    with sigint_blocked():
        forkserver.ensure_running()


def ignore_sigint() -> None:
    """In a process of the fork server: ignore SIGINT, then unblock it (one pending is discarded)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
