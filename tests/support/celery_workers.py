"""Real ``crm-audit-migrate worker`` processes (Celery) for the scale-out tests, killed at teardown.

``celery_workers`` yields a ``WorkerPool``: ``pool.start(env, count=2)`` starts that many workers
(solo pool by default: one process, one task at a time) with the given environment, and waits until
each says it is ready. Every worker's output goes to a log file the test can read
(``pool.output(i)``). Teardown kills (SIGKILL) whatever is still running, so no worker outlives its
test, and each worker's temporary files (``TMPDIR``) are in the pool's directory, removed with it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from .redis_server import die_with_parent

__all__ = ["WorkerPool", "celery_workers"]

CLI = Path(sys.executable).with_name("crm-audit-migrate")


class WorkerPool:
    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self.processes: list[subprocess.Popen[bytes]] = []
        self._logs: list[Path] = []

    def start(
        self, env: Mapping[str, str], *, count: int = 1, pool: str = "solo", extra: tuple[str, ...] = ()
    ) -> list[subprocess.Popen[bytes]]:
        started = []
        for _ in range(count):
            index = len(self.processes)
            log = self._directory / f"worker-{index}.log"
            args = [str(CLI), "worker", *extra, "--pool", pool, "--concurrency", "1", "-n", f"w{index}@%h"]
            args += ["--without-gossip", "--without-mingle", "--loglevel", "INFO"]
            with log.open("wb") as out:
                process = subprocess.Popen(
                    args,
                    # What a killed worker leaves in TMPDIR (a --metrics-port directory) goes with
                    # the pool's directory; a test may give its own.
                    env={**os.environ, "TMPDIR": str(self._directory), **env},
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=die_with_parent,
                )
            self.processes.append(process)
            self._logs.append(log)
            started.append(process)
        for process in started:
            self._wait_ready(self.processes.index(process))
        return started

    def output(self, index: int) -> str:
        return self._logs[index].read_text(errors="replace")

    def _wait_ready(self, index: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while " ready." not in self.output(index):
            if self.processes[index].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker {index} did not start:\n{self.output(index)[-3000:]}")
            time.sleep(0.1)

    def kill(self, index: int, sig: int = signal.SIGKILL) -> None:
        """Signal worker ``index``'s whole process group (a prefork parent and its children)."""
        process = self.processes[index]
        if process.poll() is None:
            os.killpg(process.pid, sig)
            process.wait(timeout=30)

    def kill_all(self) -> None:
        """SIGKILL every worker still running (its process group) and reap it. For teardown: a
        worker's own stop, SIGTERM and its warm shutdown, is what the shutdown tests assert; at
        teardown it waited 1.5-2 s a worker (5 s under load) and asserted nothing."""
        for index in range(len(self.processes)):
            self.kill(index)


@pytest.fixture
def celery_workers() -> Iterator[WorkerPool]:
    with tempfile.TemporaryDirectory(prefix="crm-audit-workers-") as directory:
        pool = WorkerPool(Path(directory))
        try:
            yield pool
        finally:
            pool.kill_all()
