"""``console.end_children``: after an interrupt, the command's ``multiprocessing`` children still
alive are ended, SIGTERM first, SIGKILL after ``CHILD_END_S`` (a stopped page worker continued to
die of its SIGTERM: tests/e2e/test_cli_double_ctrl_c.py, ``TestStoppedWorker``). The test hands it
one child of its own (``active_children`` patched), so no other test's process is touched."""

from __future__ import annotations

import multiprocessing
import signal
import time
from collections.abc import Iterator
from multiprocessing.process import BaseProcess

import pytest

from crm_audit_adapters import console

SPAWN = multiprocessing.get_context("spawn")
BOUND_S = 60.0


@pytest.fixture
def sleeper() -> Iterator[BaseProcess]:
    """A child that sleeps a minute (``time.sleep``: nothing of the suite to import); killed at the end."""
    child = SPAWN.Process(target=time.sleep, args=(BOUND_S,))
    yield child
    if child.is_alive():
        child.kill()
    child.join(BOUND_S)


def only(child: BaseProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(multiprocessing, "active_children", lambda: [child])


class TestEndChildren:
    def test_a_child_ignoring_sigterm_is_killed_after_the_grace(
        self, sleeper: BaseProcess, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A child that ignores SIGTERM (inherited across its exec) is killed once ``CHILD_END_S``
        has passed."""
        monkeypatch.setattr(console, "CHILD_END_S", 0.5)
        previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            sleeper.start()
        finally:
            signal.signal(signal.SIGTERM, previous)
        only(sleeper, monkeypatch)
        console.end_children()
        assert sleeper.exitcode == -signal.SIGKILL
