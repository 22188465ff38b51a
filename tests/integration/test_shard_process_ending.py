"""``ProcessShardLauncher``: a shard process that said its last word but is slow to end (closing
its clients over the network) does not hold the runner, and ``close`` ends it.

The processes are real (forkserver); each shard's run is a module-level stand-in (it must pickle)
that returns at once and leaves a thread that keeps its process alive, as a client's close would.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from crm_audit_adapters.shard_processes import ProcessShardLauncher
from crm_audit_transform.jobs import MigrationJob
from crm_audit_transform.usecases import RunResult

LINGER_S = 120.0
"""Longer than any wait in the launcher: a process still alive after its event lingers by design."""


def linger_after(
    company_sso_id: str,
    shard: int,
    *,
    owner: str,
    should_stop: Callable[[], bool],
    on_progress: Callable[[MigrationJob], None],
) -> RunResult:
    """Returns at once; a non-daemon thread keeps the process from ending (its exit joins it)."""
    threading.Thread(target=time.sleep, args=(LINGER_S,)).start()
    raise LookupError(f"shard {shard} of {company_sso_id} is a stand-in")


class TestAProcessSlowToEnd:
    def test_its_event_comes_while_it_ends_and_close_ends_it(self) -> None:
        launcher = ProcessShardLauncher(2, linger_after)
        try:
            launcher.start("co", 0)
            started = time.monotonic()
            event = None
            while event is None and time.monotonic() - started < 60:
                event = launcher.next_event(1.0)
            assert event is not None
            assert event.kind == "failed"
            assert isinstance(event.error, LookupError)
            # Handed over without waiting for the process (it lingers for LINGER_S).
            lingering = list(launcher._ending)
            assert [process.is_alive() for process in lingering] == [True]
        finally:
            launcher.close()
        assert not lingering[0].is_alive()
        assert time.monotonic() - started < LINGER_S  # ended by close, not by the thread's end
