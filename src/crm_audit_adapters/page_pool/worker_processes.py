"""A ``ProcessPagePipeline``'s worker processes: each one's executor, channel and start, the run
each has begun, and their stop.

Each worker is a one-process ``ProcessPoolExecutor`` (its pages' tasks run in the order sent) and a
one-way pipe, its channel, on which the pool sends each run's span reader and each page's span
ahead of the page's task (``worker._SpanReads``). A worker's process starts in a thread of its own
(``starting``): ``usable`` says whether it is up, and makes it begin the current run (its
``worker.begin`` and its span reader) the first time it is. A worker that died (SIGKILL, out of
memory) or could not start is ``WorkerLost`` (exit 6) where the pool next meets it; a dead one is
replaced at the next run (``started``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from typing import Any, TypeVar

from crm_audit_transform.errors import WorkerLost
from crm_audit_transform.transformer import Transformer

from ..fork_server import sigint_deferred
from . import worker
from .result_pipe import widen_result_pipe
from .starting import START_WAIT_S, Starting

__all__ = ["START_WAIT_S", "WorkerProcesses"]

_T = TypeVar("_T")


class WorkerProcesses:
    """``count`` worker processes made from ``context``, each building its transformer with
    ``recipe``; ``workers`` (the pool's ``--workers N``) is named in ``WorkerLost``'s message.

    ``executors[slot]`` is None until worker ``slot`` is made (``create``, ``start_missing``, or a
    run's ``started``), and again after ``close``."""

    __slots__ = ("_begins", "_begun", "_channels", "_context", "_recipe", "_starts", "_workers", "executors")

    def __init__(
        self, count: int, recipe: Callable[[], Transformer], context: BaseContext, *, workers: int
    ) -> None:
        self._recipe = recipe
        self._context = context
        self._workers = workers
        self.executors: list[ProcessPoolExecutor | None] = [None] * count
        self._channels: list[Connection | None] = [None] * count
        # A worker whose process is still starting (``starting``), and the run it has begun (0: none).
        self._starts: list[Starting | None] = [None] * count
        self._begun = [0] * count
        self._begins: tuple[Any, ...] = ()  # the run's worker.begin arguments, for a late worker

    def start_missing(self) -> None:
        """Make each worker not made yet, its process starting in the background."""
        with sigint_deferred():  # no KeyboardInterrupt between a start and its record
            for slot, executor in enumerate(self.executors):
                if executor is None:
                    self._create(slot)

    def started(self, run: int, begins: tuple[Any, ...]) -> list[ProcessPoolExecutor]:
        """The executors for run ``run``, a new one for any that is missing or broken; each up
        begins the run now (``worker.begin`` with ``begins``: encoder, names_entities, run,
        lookups, reader), each still starting once it is up (``usable``)."""
        self._begins = begins
        started: list[ProcessPoolExecutor] = []
        with sigint_deferred():  # no KeyboardInterrupt between a start and its record
            for slot, executor in enumerate(self.executors):
                starting = self._starts[slot]
                if executor is not None and starting is None:
                    try:
                        self._begin(slot, run)
                    except BrokenProcessPool:  # its worker died in an earlier run: replace it
                        executor.shutdown(wait=False, cancel_futures=True)
                        executor = None
                elif executor is not None and starting is not None:
                    try:
                        starting.ready()  # still starting (an earlier run ended first): it begins when up
                    except (BrokenProcessPool, OSError, EOFError):  # its start failed: replace it
                        self._starts[slot] = None
                        executor.shutdown(wait=False, cancel_futures=True)
                        executor = None
                started.append(executor or self._create(slot))
        return started

    def wait_up(self, slot: int) -> None:
        """Wait for worker ``slot``'s start, if in progress; ``WorkerLost`` if it failed."""
        starting = self._starts[slot]
        if starting is not None:
            try:
                starting.wait()
            except (BrokenProcessPool, OSError, EOFError) as exc:
                raise self.lost(exc) from exc

    def usable(self, slot: int, run: int) -> bool:
        """Whether worker ``slot``'s process is up; if so, it has begun run ``run`` (its
        ``worker.begin`` submitted, its span reader on its channel). ``WorkerLost`` if its start
        failed (the fork server gone, the process dead as it started)."""
        starting = self._starts[slot]
        if starting is not None:
            try:
                if not starting.ready():
                    return False
            except (BrokenProcessPool, OSError, EOFError) as exc:
                raise self.lost(exc) from exc
            self._starts[slot] = None
        if self._begun[slot] != run:
            try:
                self._begin(slot, run)
            except BrokenProcessPool as exc:  # it died as it started
                raise self.lost(exc) from exc
        return True

    def tell(self, slot: int, message: tuple[Any, ...]) -> None:
        """Send ``message`` on worker ``slot``'s channel (``worker._SpanReads``)."""
        channel = self._channels[slot]
        assert channel is not None  # made with its executor
        try:
            channel.send(message)
        except OSError as exc:  # its process died, and with it the channel's read end
            raise self.lost(exc) from exc

    def submit(
        self, executor: ProcessPoolExecutor, call: Callable[..., _T], *args: Any, **kwargs: Any
    ) -> Future[_T]:
        try:
            return executor.submit(call, *args, **kwargs)
        except BrokenProcessPool as exc:  # a worker died since the last result was read
            raise self.lost(exc) from exc

    def wait(self, future: Future[_T]) -> _T:
        try:
            return future.result()
        except BrokenProcessPool as exc:
            raise self.lost(exc) from exc

    def lost(self, exc: Exception) -> WorkerLost:
        return WorkerLost(
            f"a page worker process died (killed, or out of memory) with --workers {self._workers} "
            f"({exc}): nothing it had not finished was written; run again to resume from the cursor"
        )

    def close(self, *, wait: bool) -> None:
        """Stop every worker (``ProcessPagePipeline.close``): queued work cancelled; with ``wait``,
        a start in progress waited for ``START_WAIT_S`` at most and each process joined. A Ctrl-C
        (``KeyboardInterrupt``) during those waits ends the waiting, not the close: what is left is
        stopped as without ``wait``, and ``close`` returns."""
        executors, self.executors = self.executors, [None] * len(self.executors)
        channels, self._channels = self._channels, [None] * len(self._channels)
        starts, self._starts = self._starts, [None] * len(self._starts)
        self._begun = [0] * len(self._begun)
        for executor, starting in zip(executors, starts, strict=True):
            if executor is None:
                continue
            if starting is not None:
                if wait:
                    # A run that ended before its worker was up (a small one): let the start end
                    # and the worker stop, as a worker whose start had held the run would have.
                    # Gone unwaited, it was forked as this process exited, and failed (a traceback
                    # on the command's stderr) to open what its executor had already removed.
                    # Bounded: a fork server that never answers must not hold the exit for ever.
                    with contextlib.suppress(Exception):  # a failed start: shut down below
                        wait = _uninterrupted(starting.wait, START_WAIT_S)
                if starting.abandon():
                    continue  # its start's thread shuts it down when the start returns (starting)
            if wait:
                wait = _uninterrupted(executor.shutdown, wait=True, cancel_futures=True)
                if wait:
                    continue
            executor.shutdown(wait=False, cancel_futures=True)
        for channel in channels:
            if channel is not None:
                channel.close()

    def _create(self, slot: int) -> ProcessPoolExecutor:
        """Worker ``slot``'s executor and channel, its process starting in the background."""
        channel = self._channels[slot]
        if channel is not None:
            channel.close()
        reading, writing = self._context.Pipe(duplex=False)
        executor = ProcessPoolExecutor(
            max_workers=1,
            mp_context=self._context,
            initializer=worker.start,
            initargs=(self._recipe, reading),
        )
        widen_result_pipe(executor)  # its pages' results written at once, read when the runner can
        self.executors[slot] = executor
        self._channels[slot] = writing
        self._begun[slot] = 0
        self._starts[slot] = Starting(executor, reading)
        return executor

    def _begin(self, slot: int, run: int) -> None:
        """Worker ``slot``, up, begins run ``run``: ``worker.begin`` and its span reader."""
        executor = self.executors[slot]
        assert executor is not None  # made before its start
        encoder, names_entities, _, lookups, reader = self._begins
        executor.submit(worker.begin, encoder, names_entities, run, lookups)
        self.tell(slot, (worker.RUN, run, reader))
        self._begun[slot] = run


def _uninterrupted(waiting: Callable[..., object], *args: Any, **kwargs: Any) -> bool:
    """Call ``waiting`` (one of ``close``'s waits); False when a Ctrl-C cut it short.

    ``close`` waits only after a run that ended (``wait``): the Ctrl-C then asks it not to wait,
    and the rest of the close is done as without ``wait``. Raised on, it would end a completed
    ``run --workers N`` as interrupted (exit 130, its summary printed as completed)."""
    try:
        waiting(*args, **kwargs)
    except KeyboardInterrupt:
        return False
    return True
