"""``ProcessShardLauncher``: a sharded job's shards side by side, each in a process of its own.

    launcher = ProcessShardLauncher(2, SettingsShardRun(settings))
    MigrationService(ports, transformer, shards=launcher).run(company, owner=...)

Each shard runs in a fresh process (``forkserver``, as the page pool starts its workers: a fresh
interpreter forks it, so no PostgreSQL, MongoDB or HTTP connection of the parent is ever
inherited). There ``SettingsShardRun`` builds a runtime of its own from the same ``Settings``
(``build_runtime``: its own CRM session, MongoDB client and USMAN client, its own lookup cache) and
runs ``MigrationService.run_shard`` under its own lease — owner ``host:pid:token``, its own pid
and the runner's token (``lease_owners``), so
``status`` names the process that holds each shard — with the run loop's collector settings. The
process reports on its pipe: the shard's view after a durable batch (at most every
``PROGRESS_EVERY_S``), then how its run ended.
The parent (``usecases.side_by_side``) follows them; this module only moves the messages. Any
picklable ``ShardRun`` may stand in for ``SettingsShardRun`` (benchmarks/scale_pipeline.py runs
each shard into a JSONL file of its own).

- **Ctrl-C.** The shard processes ignore SIGINT (a terminal sends it to the whole process group):
  the parent decides, and ``stop`` tells each to stop after its batch in flight. A process whose
  parent is gone (``kill -9`` of the runner) sees its pipe close and stops the same way, saving its
  cursor and handing its lease back. SIGTERM (``close``, a second Ctrl-C) ends its run at once,
  the lease handed back on the way out (``run_loop``'s hand-back).
- **A process that dies** (SIGKILL, out of memory) ends its pipe without a last word: ``lost``,
  with the exit status; nothing it had not saved counts, and the next run replays its last batch.
- **Errors** cross the pipe as they were raised (every error of the tree pickles to an equal one:
  tests/unit/test_errors_pickle.py); one that cannot is sent as ``ShardFailed`` with its code and
  message, so the CLI's exit code is the same.

Only settings and the rule chain cross: a runtime built with injected parts (a ``mongo_client``,
an ``sso``, a ``mongomock://`` URI, a ``clock`` or ``flags``) cannot be rebuilt in another process
(``Runtime.use_shard_processes`` refuses it).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Final, Literal, Protocol

from attrs import frozen

from crm_audit_transform.chain import RuleChain
from crm_audit_transform.config import MappingConfig
from crm_audit_transform.errors import CrmAuditError, WorkerLost
from crm_audit_transform.jobs import MigrationJob
from crm_audit_transform.ports import ShardEvent
from crm_audit_transform.usecases import RunResult

from .fork_server import RUNNER_PORTS, ensure_fork_server, ignore_sigint, sigint_deferred
from .lease_owners import lease_owner, process_token
from .settings import Settings

__all__ = ["MAX_SHARD_PROCESSES", "ProcessShardLauncher", "SettingsShardRun", "ShardFailed", "ShardRun"]

MAX_SHARD_PROCESSES: Final = 64
"""As many as a job can have shards (``trigger --shards``)."""
PRELOAD: Final = (
    __name__,
    "crm_audit_adapters.bootstrap",
    "crm_audit_adapters.collector",
    "crm_audit_adapters.mongo.activity_logs",
    "crm_audit_adapters.mongo.indexes",
    "crm_audit_adapters.mongo.jobs",
    "crm_audit_transform.usecases.shards",
    *RUNNER_PORTS,
)
"""What the fork server imports before it forks the shard processes: everything a shard's run
imports (its runtime, its stores, the drivers), so none is imported again in each process."""
PROGRESS_EVERY_S: Final = 0.2
"""A shard process reports its progress at most this often (seconds): the runner's progress line
needs no more, and a report a batch cost the runner ~0.2 ms each (~4,000 at 100k rows in pages of
500 and batches of 20). How a shard's run ended is always reported."""
_JOIN_S: Final = 30.0
"""How long ``close`` waits for a process to end before it kills it."""
_ENDING_S: Final = 0.1
"""How long the runner waits, between two events, for a process that said its last word to end."""

StartMethod = Literal["forkserver", "spawn"]


class ShardFailed(CrmAuditError):
    """A shard process's error that could not cross the pipe as itself: its ``code`` and message."""

    code = "INTERNAL"
    """The error's own code, set on the instance (so it is built from its message alone)."""


class ShardRun(Protocol):
    """One shard's whole run, called in its process: ``run_shard`` over ports it builds there.

    Sent to each process, so it must pickle (a module-level class or function)."""

    def __call__(
        self,
        company_sso_id: str,
        shard: int,
        *,
        owner: str,
        should_stop: Callable[[], bool],
        on_progress: Callable[[MigrationJob], None],
    ) -> RunResult: ...


@frozen
class SettingsShardRun:
    """``ShardRun`` over a runtime built from ``settings`` in the shard's process (the runner's).

    ``rule_chain``: the runner's own rules (``Runtime``'s), so every shard transforms as the runner
    would; it must pickle (a module-level function), as the page pool's ``TransformerRecipe`` asks.
    """

    settings: Settings
    rule_chain: Callable[[MappingConfig], RuleChain] | None = None

    def __call__(
        self,
        company_sso_id: str,
        shard: int,
        *,
        owner: str,
        should_stop: Callable[[], bool],
        on_progress: Callable[[MigrationJob], None],
    ) -> RunResult:
        from .bootstrap import build_runtime
        from .collector import run_loop_collection

        runtime = build_runtime(self.settings, rule_chain=self.rule_chain)
        with runtime, run_loop_collection():
            return runtime.service.run_shard(
                company_sso_id, shard, owner=owner, should_stop=should_stop, on_progress=on_progress
            )


class _Shard:
    __slots__ = ("conn", "ended", "process", "shard")

    def __init__(self, shard: int, process: BaseProcess, conn: Connection) -> None:
        self.shard = shard
        self.process = process
        self.conn = conn
        self.ended = False


class ProcessShardLauncher:
    """``ports.ShardLauncher`` over processes: up to ``workers`` shards at once, each in its own.

    ``run`` is what each process runs (``SettingsShardRun`` for the runner). ``close`` ends any
    still running.
    """

    __slots__ = ("_context", "_ending", "_events", "_run", "_running", "_workers")

    def __init__(self, workers: int, run: ShardRun, *, start_method: StartMethod = "forkserver") -> None:
        if not 2 <= workers <= MAX_SHARD_PROCESSES:
            raise ValueError(f"workers must be between 2 and {MAX_SHARD_PROCESSES}, got {workers}")
        self._workers = workers
        self._run = run
        self._context = (
            multiprocessing.get_context("forkserver")
            if start_method == "forkserver"
            else multiprocessing.get_context("spawn")
        )
        if start_method == "forkserver":
            # As the page pool does: the fork server imports the runner's adapters (and their
            # drivers) once, while the caller reads its job, so each shard process starts ready.
            ensure_fork_server(PRELOAD)  # SIGINT blocked until its processes ignore it (fork_server)
        self._running: dict[int, _Shard] = {}
        self._ending: list[BaseProcess] = []
        self._events: deque[ShardEvent] = deque()

    @property
    def workers(self) -> int:
        return self._workers

    def __repr__(self) -> str:
        return f"ProcessShardLauncher(workers={self._workers})"

    def start(self, company_sso_id: str, shard: int) -> str:
        mine, theirs = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=_run_shard,
            args=(self._run, company_sso_id, shard, theirs, process_token()),
            name=f"crm-audit-shard-{shard}",
            daemon=True,
        )
        with sigint_deferred():  # no KeyboardInterrupt between its start and its record (close ends it)
            try:
                process.start()
            finally:
                theirs.close()  # the process holds it now: its end closes when the process ends
            self._running[shard] = _Shard(shard, process, mine)
        return lease_owner(process.pid)

    def next_event(self, timeout: float) -> ShardEvent | None:
        if not self._events and self._running:
            ready = set(
                wait([w for s in self._running.values() for w in (s.conn, s.process.sentinel)], timeout)
            )
            for entry in list(self._running.values()):
                if entry.conn in ready or entry.process.sentinel in ready:
                    self._read(entry)
        return self._events.popleft() if self._events else None

    def _read(self, entry: _Shard) -> None:
        """Every message waiting on ``entry``'s pipe; at its end without a last word, ``lost``."""
        while not entry.ended:
            try:
                if not entry.conn.poll():
                    if entry.process.is_alive():
                        return
                    # Ended: what it sent before its end is in the pipe; nothing more will come.
                    if not entry.conn.poll():
                        raise EOFError
                message = entry.conn.recv()
            except (EOFError, OSError):
                self._end(entry, ShardEvent(entry.shard, "lost", error=self._lost(entry)))
                return
            kind = message[0]
            if kind == "progress":
                self._events.append(ShardEvent(entry.shard, "progress", job=message[1]))
            elif kind == "done":
                self._end(entry, ShardEvent(entry.shard, "done", job=message[1], stopped=message[2]))
            else:
                self._end(entry, ShardEvent(entry.shard, "failed", error=_received(message[1])))

    def _end(self, entry: _Shard, event: ShardEvent) -> None:
        entry.ended = True
        self._events.append(event)
        del self._running[entry.shard]
        # Its last word is read: the runner goes on (and sees a Ctrl-C) while the process closes
        # its clients, which may wait on the network; ``close`` waits for it.
        entry.process.join(_ENDING_S)
        if entry.process.is_alive():
            self._ending.append(entry.process)
        entry.conn.close()

    def _lost(self, entry: _Shard) -> WorkerLost:
        entry.process.join(_JOIN_S)
        code = entry.process.exitcode
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit status {code}"
        return WorkerLost(
            f"shard {entry.shard}'s process ({entry.process.pid}) died ({how}: killed, or out of memory); "
            "the other shards stopped after their batch in flight; run again to resume every shard "
            "from its cursor"
        )

    def stop(self) -> None:
        for entry in self._running.values():
            with contextlib.suppress(OSError):  # it ended meanwhile: its end is read as it comes
                entry.conn.send(("stop",))

    def close(self) -> None:
        """End every shard process still running (SIGTERM: its lease handed back on the way out)."""
        running, self._running = list(self._running.values()), {}
        for entry in running:
            if entry.process.is_alive():
                entry.process.terminate()
        for entry in running:
            entry.process.join(_JOIN_S)
            if entry.process.is_alive():
                entry.process.kill()
                entry.process.join(_JOIN_S)
            entry.conn.close()
        ending, self._ending = self._ending, []
        for process in ending:  # said their last word (their lease is back): nothing to lose
            process.terminate()
            process.join(_JOIN_S)
            if process.is_alive():
                process.kill()
                process.join(_JOIN_S)
        self._events.clear()


def _received(error: object) -> BaseException:
    return error if isinstance(error, BaseException) else ShardFailed(str(error))


def _portable(error: BaseException) -> BaseException:
    """``error`` if it crosses a pipe as itself, else a ``ShardFailed`` with its code and message."""
    try:
        back = pickle.loads(pickle.dumps(error))  # noqa: S301 -- the bytes it just made
    except Exception:
        back = None
    if isinstance(back, BaseException) and type(back) is type(error):
        return error
    code = getattr(error, "code", None)
    text = " ".join(str(error).split()) or type(error).__name__
    failed = ShardFailed(text)
    if isinstance(code, str):
        failed.code = code
    return failed


def _run_shard(run: ShardRun, company_sso_id: str, shard: int, conn: Connection, token: str) -> None:
    """A shard process: ``run`` for ``shard``, reported on ``conn``; its lease owner has the runner's
    ``token``, so the runner names it from its PID (``lease_owner``) to hand a dead one's lease back."""
    ignore_sigint()  # the parent decides (``stop``); one sent since the fork is dropped

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)  # through run_loop's hand-back of the lease

    signal.signal(signal.SIGTERM, on_term)
    stop = threading.Event()

    def listen() -> None:
        with contextlib.suppress(EOFError, OSError):
            while conn.recv()[0] != "stop":
                pass
        stop.set()  # asked to, or the parent is gone: stop after the batch in flight

    threading.Thread(target=listen, name="shard-stop", daemon=True).start()
    sending = threading.Lock()

    def send(message: tuple[object, ...]) -> None:
        with sending:
            conn.send(message)

    reported = [float("-inf")]

    def progress(view: MigrationJob) -> None:
        now = time.monotonic()
        if now - reported[0] < PROGRESS_EVERY_S:
            return
        reported[0] = now
        with contextlib.suppress(OSError):  # the parent is gone: the run stops at its next batch
            send(("progress", view))

    try:
        result = run(
            company_sso_id,
            shard,
            owner=lease_owner(os.getpid(), token),
            should_stop=stop.is_set,
            on_progress=progress,
        )
    except BaseException as exc:  # every end is told, then the process ends
        with contextlib.suppress(OSError):
            send(("failed", _portable(exc)))
        return
    with contextlib.suppress(OSError):
        send(("done", result.job, result.stopped))
