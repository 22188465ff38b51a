"""A Ctrl-C while the fork server preloads, or while a process it forked is starting, kills neither.

A terminal's Ctrl-C reaches the whole process group, and the runner alone decides what it means. The
cases run in a fresh interpreter (its own fork server): a preload module that sends the server a
SIGINT as it is imported, and a shard run whose unpickling in the shard process sends that process a
SIGINT, before the process could set SIGINT aside itself.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PRELOAD = """
import os, signal
os.kill(os.getpid(), signal.SIGINT)  # a Ctrl-C while the fork server imports its preload modules
"""

SHARD_RUN = """
import os, signal


def _arrive():
    os.kill(os.getpid(), signal.SIGINT)  # a Ctrl-C between the fork and the shard's own handling
    return CtrlCWhileStarting.__new__(CtrlCWhileStarting)


class CtrlCWhileStarting:
    def __reduce__(self):
        return (_arrive, ())

    def __call__(self, company_sso_id, shard, *, owner, should_stop, on_progress):
        raise RuntimeError("the shard ran")
"""

MAIN = """
from crm_audit_adapters import shard_processes
from ctrl_c_shard_run import CtrlCWhileStarting

if __name__ == "__main__":
    shard_processes.PRELOAD = (*shard_processes.PRELOAD, "ctrl_c_preload")
    launcher = shard_processes.ProcessShardLauncher(2, CtrlCWhileStarting())
    try:
        launcher.start("company-x", 0)
        event = launcher.next_event(120)
        while event is not None and event.kind == "progress":
            event = launcher.next_event(120)
        print(event.kind if event else "none", event.error if event else "")
    finally:
        launcher.close()
"""


class TestCtrlCWhileProcessesStart:
    def test_the_fork_server_and_a_starting_shard_process_outlive_a_ctrl_c(self, tmp_path: Path) -> None:
        """The shard process runs its shard (here: a run that fails on purpose), not ``lost``."""
        (tmp_path / "ctrl_c_preload.py").write_text(PRELOAD, encoding="utf-8")
        (tmp_path / "ctrl_c_shard_run.py").write_text(SHARD_RUN, encoding="utf-8")
        (tmp_path / "main.py").write_text(MAIN, encoding="utf-8")
        done = subprocess.run(
            [sys.executable, "main.py"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert (done.returncode, done.stdout.strip()) == (0, "failed the shard ran"), done.stderr
        assert "KeyboardInterrupt" not in done.stderr
