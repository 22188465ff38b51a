"""The ``crm-audit-migrate`` console script (``[project.scripts]``): the CLI, loaded inside its own
Ctrl-C handling.

Loading the CLI imports most of the package, a second or more on a busy machine. A Ctrl-C then
comes before the CLI can report it (``error: INTERRUPTED``), and Python would print a
``KeyboardInterrupt`` traceback and die by the signal. This module imports nothing of the package
before it runs, so a Ctrl-C during the load is the documented one line and exit 130 too
(docs/runner.md). One before
``main`` installed its handler (this module's own imports: ``signal`` alone takes milliseconds) is
held from the package's first line (``crm_audit_adapters.EARLY_SIGINTS``) and ends the same way.

It also keeps multiprocessing's resource tracker quiet about what it is there for. The tracker is a
process of its own, started by the first page pool or shard process, writing to this one's stderr
and outliving it. When a runner with workers is killed (``kill -9``: it cannot clean up), the
tracker frees the pool's semaphores and then warns, on the run's stderr, of "leaked semaphore
objects": a Python ``UserWarning`` an operator cannot act on, after the run's last line. The
warning filter given here reaches the tracker, which multiprocessing starts with this process's
``-W`` options; it ignores that module's ``UserWarning`` alone (its errors still show).

**Ctrl-C is raised once.** The command's first ``KeyboardInterrupt`` (a run's second Ctrl-C, or a
dry run's first) ends it: what it had open is closed on the way out (the page pool, the shard
processes, the lease). A further Ctrl-C would interrupt that closing in turn — a terminal's
Ctrl-C Ctrl-C sends two within milliseconds — and leave ``dry-run --workers 2`` hung for ever
after printing ``error: INTERRUPTED`` (the interpreter's exit joining a page worker that waits for
work, started but never registered with its pool), or dead by the signal (exit -2, not 130). So
the handler installed here raises ``KeyboardInterrupt`` once and ignores every
later SIGINT, and once the command has ended (after an interrupt: its child processes still alive
ended too, ``end_children``) SIGINT is ignored to the process's exit.

**Unless the first was lost.** A handler's exception is raised in whatever code runs when the
signal is handled, and some code drops every exception: ``copyreg._slotnames`` caches a class's
slot names under a bare ``except: pass``, and pickling an aware datetime passes there each time
(``datetime.timezone`` cannot take the cache), as each page span sent to a worker does. A Ctrl-C
that lands there is lost, and were the second ignored too, the dry run would go on to its end and
exit 0. So a later SIGINT is ignored only while the first ``KeyboardInterrupt`` still exists
(on its way out, through what closes) or once the CLI has reported it (``interrupt_reported``); one
that was dropped unreported is raised again, one dropped inside a reference cycle too (the collector
is run first: ``InterruptOnce._still_exists``).

For ``run --workers N`` it starts the fork server first (``start_fork_server_for``), so the server
imports what the shard processes or the workers need while the CLI loads.
"""

from __future__ import annotations

import gc
import signal
import sys
import weakref
from types import FrameType

from . import EARLY_SIGINTS

QUIET_RESOURCE_TRACKER = "ignore::UserWarning:multiprocessing.resource_tracker"
INTERRUPTED_EXIT = 130
"""``cli.exit_codes.INTERRUPTED`` (a test keeps the two equal: importing it is what this avoids)."""
CHILD_END_S = 10.0
"""How long ``end_children`` waits for each child after SIGTERM (then SIGKILL), in seconds: a
shard process hands its lease back on SIGTERM, one MongoDB write."""


class CtrlC(KeyboardInterrupt):
    """The ``KeyboardInterrupt`` ``InterruptOnce`` raises: a subclass only so that it can be weakly
    referenced (``BaseException`` cannot), which tells one still on its way out from one dropped."""


class InterruptOnce:
    """A SIGINT handler that raises ``KeyboardInterrupt`` (``CtrlC``) the first time, and ignores the
    signal after while that exception exists or once the CLI has reported it (``reported``); a
    SIGINT after one dropped unreported (see the module docstring) raises again.

    ``raised``: whether it has raised one."""

    __slots__ = ("_last", "reported")

    def __init__(self) -> None:
        self._last: weakref.ref[CtrlC] | None = None
        self.reported = False

    @property
    def raised(self) -> bool:
        return self._last is not None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self._last is not None and (self.reported or self._still_exists()):
            return
        # Never bound to a name here: this frame is in the exception's traceback, and a local
        # holding it would keep a dropped one alive (a cycle) until the garbage collector ran.
        raise self._new()

    def _still_exists(self) -> bool:
        """Whether the ``CtrlC`` raised last still exists once garbage is collected.

        Code that keeps what it catches in a local of a frame of the exception's own traceback
        (``except KeyboardInterrupt as e: kept = e``) drops it inside a reference cycle: exception,
        traceback, frame, exception. Only the collector frees that, whenever it next runs, and the
        next Ctrl-C would be ignored until then. Collected here (a full collection, only on a Ctrl-C that
        would otherwise be ignored), one on its way out is still referenced and stays."""
        if self._last is None or self._last() is None:
            return False
        gc.collect()
        return self._last() is not None

    def _new(self) -> CtrlC:
        interrupt = CtrlC()
        self._last = weakref.ref(interrupt)
        return interrupt


def interrupt_reported() -> None:
    """The CLI has a ``KeyboardInterrupt`` in hand and reports it: every later SIGINT is ignored
    (``InterruptOnce``, when it handles SIGINT; else nothing)."""
    handler = signal.getsignal(signal.SIGINT)
    if isinstance(handler, InterruptOnce):
        handler.reported = True


def end_children() -> None:
    """End this process's ``multiprocessing`` children still alive: SIGTERM (and SIGCONT), then
    SIGKILL after ``CHILD_END_S``. After a ``KeyboardInterrupt`` a page worker may be alive that its
    pool never registered (interrupted between starting it and recording it): nothing would end it,
    and the interpreter's exit joins every non-daemon child. A stopped child (SIGSTOP, a debugger)
    acts on its SIGTERM only once continued: it is sent SIGCONT after it, as a shell's ``kill`` does
    to a stopped job, instead of waiting out ``CHILD_END_S`` for the SIGKILL.

    First, a page pool's worker starts still in progress are waited for (``page_pool.starting.
    end_starts``: ``START_WAIT_S`` at most), as the interpreter's exit waits for them: the command
    then ends at once (``exit_at_once``), and a worker the fork server had forked but not yet been
    sent its start-up data printed an ``EOFError`` traceback after the command's last line."""
    import contextlib
    import multiprocessing  # only after an interrupt: a command's start imports nothing more
    import os

    starting = sys.modules.get("crm_audit_adapters.page_pool.starting")  # imported by a pool only
    if starting is not None:
        starting.end_starts()
    children = multiprocessing.active_children()
    for child in children:
        child.terminate()
        if child.pid is not None:
            with contextlib.suppress(ProcessLookupError):  # ended meanwhile, and reaped
                os.kill(child.pid, signal.SIGCONT)
    for child in children:
        child.join(CHILD_END_S)
        if child.is_alive():
            child.kill()
            child.join(CHILD_END_S)


def main() -> None:
    """Load the CLI and run it; Ctrl-C during the load: ``error: INTERRUPTED``, exit 130.

    SIGINT raises ``KeyboardInterrupt`` once (``InterruptOnce``); after the command, it is ignored.
    A SIGINT the process was started ignoring (``SIG_IGN`` inherited) is left ignored throughout.
    """
    if QUIET_RESOURCE_TRACKER not in sys.warnoptions:
        sys.warnoptions.append(QUIET_RESOURCE_TRACKER)  # the processes it starts: see above
    interrupt = InterruptOnce()
    # An ignored SIGINT stays ignored (a command started in the background by a script, ``cmd &``,
    # inherits SIG_IGN: the shell's way of keeping its Ctrl-C from the job), as a C program keeps it.
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, interrupt)
    code: object = INTERRUPTED_EXIT
    try:
        try:
            if EARLY_SIGINTS:  # held since the package's first line (``crm_audit_adapters``)
                raise KeyboardInterrupt
            start_fork_server_for(sys.argv[1:])  # run --workers N: its imports overlap the CLI's
            from .cli import main as cli_main
        except KeyboardInterrupt:
            interrupt.reported = True
            sys.stderr.write("error: INTERRUPTED: Ctrl-C while the command was starting; nothing was done\n")
            sys.exit(INTERRUPTED_EXIT)
        try:
            cli_main()
        except KeyboardInterrupt:  # outside a command's own handling (reading its options, its last line)
            interrupt.reported = True
            from .abort_lines import aborted, command_of  # only now: a command's start imports nothing more

            sys.stderr.write(f"error: INTERRUPTED: {aborted(command_of(sys.argv[1:]))}\n")
            sys.exit(INTERRUPTED_EXIT)
    except SystemExit as exit_:
        code = exit_.code
        raise
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the command has ended: its exit is not interrupted
        if interrupt.raised:
            end_children()
            exit_at_once(code)


def start_fork_server_for(args: list[str]) -> bool:
    """Start the fork server (``fork_server.RUN_PRELOAD``) when ``args``, the command line after the
    program's name, are ``run … --workers N`` with N ≥ 2; whether it did.

    The server's imports (most of a second of CPU) then overlap the CLI's own and the runner's
    reading of its job, instead of starting when the first process is needed, which then waited
    for them. Anything else (another command, one process, ``--workers`` not given plainly, an
    option before ``run``) starts and imports nothing (``multiprocessing`` included): the pool or
    the shard launcher starts the server as before, and the CLI reports a bad option.
    """
    words = args
    command = next((i for i, word in enumerate(words) if not word.startswith("-")), None)
    if command is None or words[command] != "run":
        return False
    workers = None
    for i, word in enumerate(words[command + 1 :], start=command + 1):
        if word == "--workers" and i + 1 < len(words):
            workers = words[i + 1]
        elif word.startswith("--workers="):
            workers = word.partition("=")[2]
    if workers is None or not workers.isdigit() or int(workers) < 2:
        return False
    from .fork_server import RUN_PRELOAD, ensure_fork_server

    ensure_fork_server(RUN_PRELOAD)
    return True


def exit_at_once(code: object) -> None:
    """End the process with ``code`` (``SystemExit.code``: None is 0, text is printed and 1) without
    the interpreter's exit handlers, after flushing stdout and stderr.

    Only after an interrupt, once the command has closed what it holds (its output, its lease) and
    its child processes have ended: the handlers left are other libraries' joins (``concurrent.
    futures``' executor threads, multiprocessing's children, pymongo's monitors), and one of them
    waiting on a page worker that never answers left the command hung after its last line."""
    import contextlib
    import os

    if code is None:
        code = 0
    elif not isinstance(code, int):
        sys.stderr.write(f"{code}\n")
        code = 1
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # closed, or its reader gone
            stream.flush()
    os._exit(code)


# ``python -m crm_audit_adapters.console``, as ``python -m crm_audit_adapters`` (``__main__``): it
# exited 0 doing nothing. The package's own module runs, not this copy of it (``__main__``), whose
# ``InterruptOnce`` the CLI would not know for its own (``interrupt_reported``); and not when
# multiprocessing imports this file again as ``__mp_main__`` in a process it starts.
if __name__ == "__main__":
    from crm_audit_adapters.console import main as _main

    _main()
