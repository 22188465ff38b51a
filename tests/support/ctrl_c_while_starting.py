"""A command left by a Ctrl-C while its page pool's worker is being forked: run as a script by
tests/integration/test_page_pool_start.py (``python ctrl_c_while_starting.py``), its stderr and exit
code the verdict.

It goes through the console script's own Ctrl-C handling (``console.main``), its CLI a stand-in:
the command starts a pool, and its worker's start is held in the window that matters — the fork
server has forked the worker, which waits for its start-up data, not yet sent — while the process
sends itself SIGINT. The command is left by the ``KeyboardInterrupt`` (the pool closed without
waiting, as a run left by one closes it), the console prints its one line and ends at once
(``console.exit_at_once``). Before ``end_children`` waited for the start, the worker then read an
end of file where its data should be and printed an ``EOFError`` traceback after that line.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import types
from typing import Any

HOLD_S = 1.0


def command() -> None:
    """The stand-in CLI: a pool whose worker is forked, then Ctrl-C while its start is held."""
    from multiprocessing import forkserver

    from crm_audit_adapters.page_pool import ProcessPagePipeline, TransformerRecipe
    from crm_audit_transform.config import load_default_config

    forked = threading.Event()
    connect = forkserver.connect_to_new_process  # what popen_forkserver calls, bound at import

    def held(fds: Any) -> Any:  # in the start's thread: the worker forked, its data not yet sent
        got = connect(fds)
        forked.set()
        time.sleep(HOLD_S)
        return got

    forkserver.connect_to_new_process = held
    with ProcessPagePipeline(2, TransformerRecipe(load_default_config())) as pool:
        pool.start()
        if not forked.wait(60):
            sys.stderr.write("the worker was never forked\n")
            sys.exit(1)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(60)  # the KeyboardInterrupt comes here


def main() -> None:
    cli = types.ModuleType("crm_audit_adapters.cli")
    cli.main = command  # type: ignore[attr-defined]
    sys.modules["crm_audit_adapters.cli"] = cli
    sys.argv = ["crm-audit-migrate", "run"]
    from crm_audit_adapters.console import main as console_main

    console_main()


if __name__ == "__main__":
    main()
