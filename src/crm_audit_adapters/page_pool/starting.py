"""A page worker's process started by a thread of its own, so the runner is not held meanwhile.

``ProcessPoolExecutor`` starts its process inside ``submit``, under the lock ``shutdown`` takes,
and with ``forkserver`` that start waits for the server to have imported its preload and forked
(0.45–0.65 s of a 100k-row run's runner held at its first page: benchmarks/RESULTS.md, issue 15
goal 2, pool round). A ``Starting`` makes that first ``submit`` in a daemon thread; the runner
goes on with pages of its own and hands the worker pages once ``ready``.

A pool left while a start is in progress (a Ctrl-C, a typed error: ``close(wait=False)``)
``abandon``s it instead of calling ``shutdown``, which would wait for that lock (for ever if the
fork server is stopped); the thread shuts the executor down itself once its start returns, and a
worker forked after its runner has gone ends itself (``worker._end_with``). A pool closed after a
run that ended normally waits for the start, as a run starting its worker inside ``submit`` would,
but for ``START_WAIT_S`` at most: a fork server that never answers is then abandoned too.

**The process's exit waits for a start in progress** (``START_WAIT_S`` at most), abandoning it: its
thread shuts the worker down once it is up. The start's thread is a daemon, which an exit does not
wait for, and multiprocessing's exit removes the named semaphores of the executor's queues: a worker
forked just before the exit, still loading what its parent had sent it, would fail to open them and
print a traceback (``FileNotFoundError`` in ``SemLock._rebuild``) on the command's stderr after its
one error line (``run --workers 2`` refused by USMAN on its first page meets that once in a few
dozen runs on a loaded machine). The wait runs at the interpreter's exit (``atexit``), before
multiprocessing's own exit handler (registered when ``multiprocessing.util`` was imported, earlier:
handlers run last in, first out). A command left by a Ctrl-C ends at once
(``console.exit_at_once``), without the exit's handlers: ``console.end_children`` calls
``end_starts`` first, else a Ctrl-C as the fork server forks a worker would end the runner before it
had sent the worker its start-up data, and the worker would print an ``EOFError`` traceback after
the command's ``error: INTERRUPTED`` line.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing.connection import Connection  # imports multiprocessing.util: its exit handler
from typing import Final

__all__ = ["START_WAIT_S", "Starting", "end_starts"]

START_WAIT_S: Final = 10.0
"""How long ``close`` after a normal run (``worker_processes``), and the process's exit, wait for a
worker's start still in progress (seconds). A start takes 0.45–0.65 s (benchmarks/RESULTS.md, issue
15 goal 2, pool round); one not returned by then is a fork server that does not answer (stopped,
hung), which the run went on without: it is abandoned as after an error instead of holding the
command's exit for ever."""

_IN_PROGRESS: set[Starting] = set()
"""The starts whose thread has not ended yet: what the process's exit waits for."""


class Starting:
    """``executor``'s process being started (its first ``submit``) in a thread of its own.

    ``reading`` (the read end of the worker's channel, sent to the process as it starts) is closed
    here once the start has returned, so a write to a worker that died fails instead of filling a
    pipe no one reads. ``ready()``: whether the start has returned (raising what it raised: an
    ``OSError`` from a fork server gone, a ``BrokenProcessPool``); ``wait()`` blocks until then.
    """

    __slots__ = ("_abandoned", "_done", "_error", "_lock", "_reading", "_thread", "executor")

    def __init__(self, executor: ProcessPoolExecutor, reading: Connection) -> None:
        self.executor = executor
        self._reading = reading
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._abandoned = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._start, name="page-worker-start", daemon=True)
        _IN_PROGRESS.add(self)
        try:
            self._thread.start()
        except BaseException:  # no thread (none can be started now): nothing for the exit to wait for
            _IN_PROGRESS.discard(self)
            raise

    def _start(self) -> None:
        try:
            # A task of no cost: the executor starts its process in submit (not with fork).
            self.executor.submit(os.getpid)
        except BaseException as exc:  # raised in the runner's thread by ready() or wait()
            self._error = exc
        finally:
            self._reading.close()
            with self._lock:
                self._done.set()
                abandoned = self._abandoned
            if abandoned:  # let the worker, up now, stop (this thread may wait: only the exit waits on it)
                self.executor.shutdown(wait=True, cancel_futures=True)
            _IN_PROGRESS.discard(self)

    def ready(self) -> bool:
        """Whether the process is started; what the start raised, if it did."""
        if not self._done.is_set():
            return False
        if self._error is not None:
            raise self._error
        return True

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until the start has returned, or ``timeout_s`` seconds at most (None: no bound);
        whether it has returned, raising what it raised, if it did."""
        self._done.wait(timeout_s)
        return self.ready()

    def abandon(self) -> bool:
        """The pool is closing: whether the start is still in progress (its thread then shuts the
        executor down when it returns); False when it has returned (the caller shuts it down)."""
        with self._lock:
            if self._done.is_set():
                return False
            self._abandoned = True
            return True


def end_starts() -> None:
    """Abandon each start still in progress and wait for its thread (the start, then the worker's
    shutdown), ``START_WAIT_S`` at most in all: at the interpreter's exit, and before a command left
    by a Ctrl-C ends at once (``console.end_children``; see the module docstring)."""
    deadline = time.monotonic() + START_WAIT_S
    for starting in list(_IN_PROGRESS):
        starting.abandon()
        starting._thread.join(max(0.0, deadline - time.monotonic()))


atexit.register(end_starts)
