"""The ``crm-audit-migrate`` console script (``[project.scripts]``): the CLI, loaded inside its own
Ctrl-C handling.

Loading the CLI imports most of the package, a second or more on a busy machine. A Ctrl-C then
came before the CLI could report it (``error: INTERRUPTED``): Python printed a ``KeyboardInterrupt``
traceback and died by the signal. This module imports nothing of the package before it runs, so a
Ctrl-C during the load is the documented one line and exit 130 too (docs/runner.md).

It also keeps multiprocessing's resource tracker quiet about what it is there for. The tracker is a
process of its own, started by the first page pool or shard process, writing to this one's stderr
and outliving it. When a runner with workers is killed (``kill -9``: it cannot clean up), the
tracker frees the pool's semaphores and then warned, on the run's stderr, of "leaked semaphore
objects": a Python ``UserWarning`` an operator cannot act on, after the run's last line. The
warning filter given here reaches the tracker, which multiprocessing starts with this process's
``-W`` options; it ignores that module's ``UserWarning`` alone (its errors still show).
"""

from __future__ import annotations

import sys

QUIET_RESOURCE_TRACKER = "ignore::UserWarning:multiprocessing.resource_tracker"
INTERRUPTED_EXIT = 130
"""``cli.exit_codes.INTERRUPTED`` (a test keeps the two equal: importing it is what this avoids)."""


def main() -> None:
    """Load the CLI and run it; Ctrl-C during the load: ``error: INTERRUPTED``, exit 130."""
    if QUIET_RESOURCE_TRACKER not in sys.warnoptions:
        sys.warnoptions.append(QUIET_RESOURCE_TRACKER)  # the processes it starts: see above
    try:
        from .cli import main as cli_main
    except KeyboardInterrupt:
        sys.stderr.write("error: INTERRUPTED: Ctrl-C while the command was starting; nothing was done\n")
        sys.exit(INTERRUPTED_EXIT)
    cli_main()
