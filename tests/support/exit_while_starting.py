"""A process that exits while its page pool's worker is still starting: run as a script by
tests/integration/test_page_pool_start.py (``python exit_while_starting.py``), its stderr the verdict.

The race it makes certain: the runner ends (a typed error on its first page, as ``run --workers 2``
refused by USMAN) after the fork server has forked the worker and before the start's thread has
returned, while the worker still loads what its parent sent it. Two waits make that window wide:
the start's thread is held ``HOLD_S`` between the fork and its return (the GIL a loaded machine
gives it late), and the worker's start-up takes ``SLOW_S`` (this file is its ``__main__``, imported
again there as ``__mp_main__`` before the worker's objects are read). The process closes the pool
without waiting, as a run left by an error does, and exits 3; it prints nothing itself.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

HOLD_S = 0.5
SLOW_S = 1.5

if __name__ == "__mp_main__":  # in the worker, before it reads its queues: a slow start-up
    time.sleep(SLOW_S)


def main() -> None:
    from concurrent.futures import process

    from crm_audit_adapters.page_pool import ProcessPagePipeline, TransformerRecipe
    from crm_audit_transform.config import load_default_config

    forked = threading.Event()
    start_thread = process.ProcessPoolExecutor._start_executor_manager_thread

    def held(executor: Any) -> None:  # in the start's thread, once its process is forked
        forked.set()
        time.sleep(HOLD_S)
        start_thread(executor)

    process.ProcessPoolExecutor._start_executor_manager_thread = held  # type: ignore[method-assign]
    pool = ProcessPagePipeline(2, TransformerRecipe(load_default_config()))
    pool.start()
    if not forked.wait(60):
        sys.stderr.write("the worker was never forked\n")
        sys.exit(1)
    pool.close(wait=False)  # as a run left by an error: a start in progress is abandoned
    sys.exit(3)


if __name__ == "__main__":
    main()
