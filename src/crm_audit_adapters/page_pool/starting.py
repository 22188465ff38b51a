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
run that ended normally waits for the start, as the run would have waited for it before, but for
``worker_processes.START_WAIT_S`` at most: a fork server that never answers is then abandoned too.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ProcessPoolExecutor
from multiprocessing.connection import Connection

__all__ = ["Starting"]


class Starting:
    """``executor``'s process being started (its first ``submit``) in a thread of its own.

    ``reading`` (the read end of the worker's channel, sent to the process as it starts) is closed
    here once the start has returned, so a write to a worker that died fails instead of filling a
    pipe no one reads. ``ready()``: whether the start has returned (raising what it raised: an
    ``OSError`` from a fork server gone, a ``BrokenProcessPool``); ``wait()`` blocks until then.
    """

    __slots__ = ("_abandoned", "_done", "_error", "_lock", "_reading", "executor")

    def __init__(self, executor: ProcessPoolExecutor, reading: Connection) -> None:
        self.executor = executor
        self._reading = reading
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._abandoned = False
        self._error: BaseException | None = None
        threading.Thread(target=self._start, name="page-worker-start", daemon=True).start()

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
            if abandoned:  # and let the worker, up now, stop (this thread may wait: no one waits on it)
                self.executor.shutdown(wait=True, cancel_futures=True)

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
