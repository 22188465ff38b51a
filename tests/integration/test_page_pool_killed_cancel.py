"""A worker killed as its run ends: the pages left on it are its executor's to fail, never cancelled
by the runner.

CPython 3.11's ``ProcessPoolExecutor`` fails every pending future of a dead worker in its manager
thread (``terminate_broken``), and ``set_exception`` on a future cancelled meanwhile raises
``InvalidStateError`` there, an uncaught exception in that thread (the rest of its futures never
set, its queues never closed). ``dbe3bd4`` left the futures alone once one of them had failed with
``BrokenProcessPool``; a run that ended before the manager thread had failed any (a write that
failed, a Ctrl-C, the worker's channel found closed) still cancelled them. The test holds the
manager thread at ``terminate_broken`` until the run has ended.
"""

from __future__ import annotations

import concurrent.futures.process as process_pool
import os
import signal
import threading
from typing import Any

import pytest

from crm_audit_adapters.page_pool import ProcessPagePipeline
from crm_audit_transform.config import load_default_config
from crm_audit_transform.lookup import LookupContext
from crm_audit_transform.transformer import Transformer
from support.corpus_account import audit_rows
from support.page_workers import SlowToPrepare


class LookupFailed(Exception):
    pass


def test_the_pages_of_a_worker_killed_as_the_run_ends_are_left_to_its_executor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    held, reached = threading.Event(), threading.Event()
    terminate_broken = process_pool._ExecutorManagerThread.terminate_broken

    def late(self: Any, cause: Any) -> None:
        reached.set()
        held.wait(30)
        terminate_broken(self, cause)

    failures: list[BaseException | None] = []
    monkeypatch.setattr(process_pool._ExecutorManagerThread, "terminate_broken", late)
    monkeypatch.setattr(threading, "excepthook", lambda args: failures.append(args.exc_value))
    rows = sorted(audit_rows("acme"), key=lambda row: row.id)[:40]
    pages = [rows[i : i + 4] for i in range(0, 40, 4)]
    # One worker, eight pages in flight on it, each 0.5 s to load: when the first page's lookup is
    # made, the others are still queued in its executor, four of them not yet handed to its process
    # (its call queue holds two), unless this process was held for two seconds meanwhile.
    pool = ProcessPagePipeline(1, SlowToPrepare(0.5), share=False, pages_per_worker=8)
    executors: list[Any] = []

    def lookup(request: object) -> LookupContext:
        """The first page's lookup, its next pages queued on the worker: the worker is killed,
        then the lookup fails (the run ends)."""
        executor = pool._processes.executors[0]
        assert executor is not None
        executors.append(executor)
        (pid,) = list(executor._processes)
        os.kill(pid, signal.SIGKILL)
        assert reached.wait(30), "the executor never saw its worker die"
        pending = [item.future for item in executor._pending_work_items.values()]
        assert any(not future.running() and not future.done() for future in pending)
        raise LookupFailed

    try:
        run = pool.transform_pages(pages, Transformer(load_default_config()), lookup, company_sso_id="c")
        with pytest.raises(LookupFailed):
            next(run)
        (executor,) = executors
        manager = executor._executor_manager_thread
        assert manager is not None
        held.set()  # the run has ended: the executor now fails what was left on its worker
        manager.join(30)
        assert not manager.is_alive()
    finally:
        held.set()
        pool.close(wait=False)
    assert failures == []
