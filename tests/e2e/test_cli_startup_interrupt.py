"""A Ctrl-C while ``crm-audit-migrate`` is still loading is ``error: INTERRUPTED``, exit 130.

The console script is run as pip's wrapper runs it (``from MODULE import FUNC; sys.exit(FUNC())``,
MODULE:FUNC read from ``[project.scripts]``), in a fresh interpreter whose import of the CLI package
raises ``KeyboardInterrupt``: what a Ctrl-C during those imports (a second or more on a loaded
machine) does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest

from crm_audit_adapters import SCRIPT
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


CTRL_C_AT_IMPORT = """
import os, sys, _signal  # not ``signal``: the runner's own import of it is one of the points

class CtrlCAtImport:
    def find_spec(self, name, path=None, target=None):
        if name == os.environ["CTRL_C_AT_IMPORT_OF"]:
            sys.meta_path.remove(self)
            _signal.raise_signal(_signal.SIGINT)  # handled here, by whatever handler is installed
        return None

sys.meta_path.insert(0, CtrlCAtImport())
"""


def run_script_with_ctrl_c_at(tmp_path: Path, module: str, **popen: Any) -> subprocess.CompletedProcess[str]:
    """The installed console script's ``--version``, a ``sitecustomize`` hook (``CTRL_C_AT_IMPORT``)
    raising SIGINT as ``module`` is first imported; ``popen`` goes to ``subprocess.run`` as is."""
    (tmp_path / "sitecustomize.py").write_text(CTRL_C_AT_IMPORT, encoding="utf-8")
    script = Path(sys.executable).parent / SCRIPT
    assert script.is_file(), f"{script}: the package is installed with its console script"
    environment = {**os.environ, "PYTHONPATH": str(tmp_path), "CTRL_C_AT_IMPORT_OF": module}
    return subprocess.run(
        [str(script), "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=environment,
        **popen,
    )


class TestCtrlCInTheFirstMilliseconds:
    """The installed script itself, with a Ctrl-C as it imports one module or another (a
    ``sitecustomize`` hook): before ``console.main`` installed its handler, Python's raised
    ``KeyboardInterrupt`` through the script's import, which printed a traceback and died by the
    signal. From the package's first line on it is held (``crm_audit_adapters.EARLY_SIGINTS``)."""

    @pytest.mark.parametrize(
        "module",
        [
            "crm_audit_adapters.console",  # the script's import, once the package's first line ran
            "signal",  # the console module's own imports, before ``main``
            "crm_audit_adapters.cli",  # the CLI's load, after ``main`` installed its handler
        ],
    )
    def test_the_script_ends_130_with_one_line(self, tmp_path: Path, module: str) -> None:
        done = run_script_with_ctrl_c_at(tmp_path, module)
        assert (done.returncode, done.stderr.splitlines()) == (
            130,
            ["error: INTERRUPTED: Ctrl-C while the command was starting; nothing was done"],
        )
        assert done.stdout == ""

    def test_without_a_ctrl_c_the_script_runs(self, tmp_path: Path) -> None:
        """The hook itself changes nothing: a module never imported is never interrupted."""
        done = run_script_with_ctrl_c_at(tmp_path, "no.such.module")
        assert (done.returncode, done.stderr) == (0, "")
        assert done.stdout.startswith("crm-audit-migrate, version ")

    def test_the_script_name_held_for_is_the_console_scripts(self) -> None:
        scripts: dict[str, str] = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["scripts"]
        assert list(scripts) == [SCRIPT]

    def test_imported_otherwise_the_package_leaves_sigint_alone(self) -> None:
        """A test, a worker or a library user importing the package keeps Python's handler."""
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                "import crm_audit_adapters, signal; print(signal.getsignal(signal.SIGINT))",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.stdout.strip() == str(signal.default_int_handler), done.stderr


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


class TestStartedIgnoringSigint:
    """A command started with SIGINT ignored (a script's ``cmd &``: the shell gives the job SIG_IGN)
    keeps ignoring it, as a C program does: ``console.main`` installed its handler over SIG_IGN, so
    a SIGINT meant for the shell's foreground ended the command 130."""

    def test_a_sigint_after_main_installed_its_handlers_is_still_ignored(self, tmp_path: Path) -> None:
        done = run_script_with_ctrl_c_at(
            tmp_path,
            "crm_audit_adapters.cli",  # after ``main`` took SIGINT over
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),  # as a shell gives `cmd &`
        )
        assert (done.returncode, done.stderr) == (0, "")
        assert "crm-audit-migrate" in done.stdout
