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

The runner, for its part, defers a Ctrl-C while it starts those processes (``sigint_deferred``): a
``KeyboardInterrupt`` raised between a process's start and its pool's record of it would leave a
worker no one stops, which the interpreter's exit then joins for ever (the runner hung after
printing ``error: INTERRUPTED``), or a worker still unpickling its start-up after the runner has
gone (a ``FileNotFoundError`` traceback on the run's stderr).

What the server imports before it forks (its preload) each process it forks has at no cost. A
module a process imports after the fork is imported again by every process, on the way to its
first page. ``RUNNER_PORTS`` are those a runner's process reaches its servers through.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
import threading
from collections.abc import Iterator, Sequence
from multiprocessing import forkserver, resource_tracker
from types import FrameType
from typing import Final

RUNNER_PORTS: Final = (
    "crm_audit_adapters.bootstrap.mongo_client",
    "crm_audit_adapters.crm_postgres",
    "crm_audit_adapters.mongo.contacts",
    "crm_audit_adapters.retrying",
    "crm_audit_adapters.usman",
    "crm_audit_adapters.usman_transport",
    "httpx",
    "pymongo",
    "tenacity",
)
"""What a runner's process (a shard process, a page pool's worker) imports to reach PostgreSQL,
MongoDB and USMAN through clients of its own, the drivers among them: the adapters import their
drivers where a client is built, so a package's import alone leaves them out. Missing from the
preload, they would be imported by each process after the fork: 319 modules, 0.2 s of CPU a process
(benchmarks/RESULTS.md, "Eighth round")."""

RUN_PRELOAD: Final = (
    "crm_audit_adapters.shard_processes",
    "crm_audit_adapters.bootstrap",
    "crm_audit_adapters.collector",
    "crm_audit_adapters.mongo.activity_logs",
    "crm_audit_adapters.mongo.indexes",
    "crm_audit_adapters.mongo.jobs",
    "crm_audit_transform.usecases.shards",
    "crm_audit_adapters.page_pool.worker",
    "crm_audit_adapters.files",
    "crm_audit_adapters.files.audit_ranges",
    "crm_audit_adapters.files.audit_spans",
    "crm_audit_adapters.files.sink",
    *RUNNER_PORTS,
)
"""What ``run --workers N`` has its fork server import when it starts it before it loads the CLI
(``console.start_fork_server_for``): what a shard process and what a page pool's worker import
(a test holds it to ``shard_processes.PRELOAD`` and the runner's pool preload), since which of
the two the run forks is known only once the job is read."""


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


def ensure_fork_server(preload: Sequence[str] = ()) -> None:
    """``multiprocessing.forkserver.ensure_running()``, the server started with SIGINT blocked.

    A server this call starts imports ``preload`` (module names) before it forks; one already
    running keeps what it imported (the server is one per process)."""
    if preload:
        multiprocessing.get_context("forkserver").set_forkserver_preload(preload_first(preload))
    with sigint_blocked():
        forkserver.ensure_running()


PRELOAD_FIRST: Final = "crm_audit_adapters.httpx_no_cli"
"""The module every fork server of ours imports first: httpx without its command line (click,
rich, pygments), which no process it forks runs (``httpx_no_cli``)."""


def preload_first(preload: Sequence[str]) -> list[str]:
    """A fork server's preload (module names, imported in order), ``PRELOAD_FIRST`` first."""
    return [PRELOAD_FIRST, *(name for name in preload if name != PRELOAD_FIRST)]


def ignore_sigint() -> None:
    """In a process of the fork server: ignore SIGINT, then unblock it (one pending is discarded)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


BREAK_THROUGH: Final = 3
"""The SIGINTs ``sigint_deferred`` holds before it passes them on at once, inside its body: a start
that never returns (its fork server stopped or hung) still gives way to a third Ctrl-C."""


@contextlib.contextmanager
def sigint_deferred() -> Iterator[None]:
    """A SIGINT that comes while the body runs is handled when it ends, by the handler it found.

    For the main thread's bookkeeping of child processes (starting one and recording it): the
    handler's ``KeyboardInterrupt`` then never lands between the two. Each signal received is
    passed on, in order (a run's handler counts them: once stops after the batch, twice aborts).
    A terminal's Ctrl-C Ctrl-C is two; at the ``BREAK_THROUGH``-th they are passed on at once, in
    the body: a start that hangs (a fork server stopped, which the runner then waits on for ever)
    did ignore every Ctrl-C. A process started and not recorded then is ended on the way out
    (``console.end_children``). Outside the main thread (where no Python signal handler runs) the
    body just runs.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[tuple[int, FrameType | None]] = []

    def pass_on() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL if previous is None else previous)
        held = received[:]
        received.clear()
        for signum, frame in held:
            if callable(previous):
                previous(signum, frame)
            elif previous != signal.SIG_IGN:  # the default action (None: not set from Python)
                signal.raise_signal(signum)

    def hold(signum: int, frame: FrameType | None) -> None:
        received.append((signum, frame))
        if len(received) >= BREAK_THROUGH:
            pass_on()

    previous = signal.signal(signal.SIGINT, hold)
    try:
        yield
    finally:
        pass_on()
