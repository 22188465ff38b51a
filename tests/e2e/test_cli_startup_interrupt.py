"""A Ctrl-C while ``crm-audit-migrate`` is still loading is ``error: INTERRUPTED``, exit 130.

The console script is run as pip's wrapper runs it (``from MODULE import FUNC; sys.exit(FUNC())``,
MODULE:FUNC read from ``[project.scripts]``), in a fresh interpreter whose import of the CLI package
raises ``KeyboardInterrupt``: what a Ctrl-C during those imports (a second or more on a loaded
machine) does.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from crm_audit_adapters.cli import exit_codes
from crm_audit_adapters.console import INTERRUPTED_EXIT

PYPROJECT = Path(__file__).parents[2] / "pyproject.toml"

WRAPPER = """
import importlib, importlib.abc, sys

class CtrlCDuringTheLoad(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "crm_audit_adapters.cli":
            raise KeyboardInterrupt
        return None

module, _, function = sys.argv.pop(1).partition(":")  # the rest: the command line
sys.meta_path.insert(0, CtrlCDuringTheLoad())
entry = getattr(importlib.import_module(module), function)
sys.exit(entry())
"""


def console_script() -> str:
    scripts: dict[str, str] = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["scripts"]
    return scripts["crm-audit-migrate"]


class TestCtrlCWhileStarting:
    @pytest.mark.parametrize(
        "command",
        [[], ["run", "--company-sso-id", "c", "--workers", "2"]],  # the latter starts the fork server first
        ids=["any", "run-workers"],
    )
    def test_ctrl_c_during_the_cli_import_is_one_line_and_exit_130(self, command: list[str]) -> None:
        """No traceback and no death by SIGINT: the documented line, exit 130, as during a command."""
        done = subprocess.run(
            [sys.executable, "-c", WRAPPER, console_script(), *command],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert (done.returncode, done.stderr.splitlines()) == (
            130,
            ["error: INTERRUPTED: Ctrl-C while the command was starting; nothing was done"],
        )
        assert done.stdout == ""

    def test_the_entry_point_exit_code_is_the_documented_one(self) -> None:
        """``console`` repeats ``INTERRUPTED``'s code instead of importing it: the two stay equal."""
        assert INTERRUPTED_EXIT == exit_codes.INTERRUPTED == 130


LEAKING_RUNNER = """
import importlib, multiprocessing, os, signal, sys, threading
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import resource_tracker


def end_with_the_parent():
    parent = multiprocessing.parent_process()
    threading.Thread(target=lambda: (parent.join(), os._exit(1)), daemon=True).start()


def nothing():
    return None


if __name__ == "__main__":
    module, _, function = sys.argv[1].partition(":")
    sys.argv[1:] = ["--version"]
    try:
        getattr(importlib.import_module(module), function)()
    except SystemExit:
        pass
    # What ``run --workers 2`` starts: a forkserver pool (its queues' semaphores are tracked).
    context = multiprocessing.get_context("forkserver")
    pool = ProcessPoolExecutor(1, mp_context=context, initializer=end_with_the_parent)
    pool.submit(nothing).result()
    print(resource_tracker._resource_tracker._pid, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
"""


def _ended(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


class TestKilledRunnerStderr:
    def test_the_resource_tracker_does_not_warn_of_leaked_semaphores_after_kill_9(
        self, tmp_path: Path
    ) -> None:
        """Killed with workers, the runner leaves multiprocessing's tracker to free its semaphores:
        it does, and writes no ``UserWarning`` about them on the run's stderr."""
        (tmp_path / "leaking_runner.py").write_text(LEAKING_RUNNER, encoding="utf-8")
        stderr = tmp_path / "stderr.txt"
        with stderr.open("w") as errors:
            done = subprocess.run(
                [sys.executable, "leaking_runner.py", console_script()],
                cwd=tmp_path,
                stdout=subprocess.PIPE,
                stderr=errors,
                text=True,
                timeout=120,
                check=False,
            )
        assert done.returncode == -signal.SIGKILL
        tracker = int(done.stdout.splitlines()[-1])
        # The tracker ends once the worker has followed its parent; its warning would be written then.
        for _ in range(1200):
            if _ended(tracker):
                break
            time.sleep(0.1)
        assert _ended(tracker), "the resource tracker outlived the killed runner's worker"
        assert "leaked" not in stderr.read_text()
