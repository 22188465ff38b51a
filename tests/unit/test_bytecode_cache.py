"""``support.bytecode``: the processes a test starts write and read the session's one bytecode cache,
which the session's warm-up fills with what a run's processes import."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from support.bytecode import BYTECODE_DIR, PREFIX, remove_stale


def test_a_started_process_uses_the_sessions_cache() -> None:
    """The same directory in every test process (pytest-xdist's controller names it), bytecode written."""
    shown = subprocess.run(
        [sys.executable, "-c", "import sys; print(sys.pycache_prefix, sys.dont_write_bytecode)"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert shown.stdout.split() == [os.environ[BYTECODE_DIR], "False"]


def test_the_warm_up_compiles_what_a_run_imports() -> None:
    """The runner's fork server and its drivers are compiled there without any test asking for them
    (the warm-up starts with the session; 120 s bounds a loaded machine)."""
    cache = Path(os.environ[BYTECODE_DIR])
    wanted = ("crm_audit_adapters/fork_server.", "crm_audit_adapters/page_pool/worker.", "/pymongo/")
    deadline = time.monotonic() + 120
    while True:
        compiled = [path.as_posix() for path in cache.rglob("*.pyc")]
        missing = [part for part in wanted if not any(part in path for path in compiled)]
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert missing == []


def test_the_sessions_directory_is_named_after_the_process_that_made_it() -> None:
    """pytest-xdist's controller (the test processes' parent), or this process in a one-process run."""
    maker = os.getppid() if "PYTEST_XDIST_WORKER" in os.environ else os.getpid()
    assert Path(os.environ[BYTECODE_DIR]).name.startswith(f"{PREFIX}{maker}-")


def test_a_killed_sessions_directory_is_removed_and_a_running_ones_kept(tmp_path: Path) -> None:
    """Only a directory whose process is gone goes: not a running process's, not a name without a
    pid (made before the pid was in the name: its owner is unknown), not a file."""
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    dead = int(ended.stdout)
    stale = tmp_path / f"{PREFIX}{dead}-abc"
    (stale / "sub").mkdir(parents=True)
    (stale / "sub" / "x.pyc").write_bytes(b"")
    kept = [tmp_path / f"{PREFIX}{os.getpid()}-def", tmp_path / f"{PREFIX}ab12cd34", tmp_path / "other-1-x"]
    for path in kept:
        path.mkdir()
    a_file = tmp_path / f"{PREFIX}{dead}-file"
    a_file.write_bytes(b"")

    assert remove_stale(tmp_path) == [stale]
    assert sorted(tmp_path.iterdir()) == sorted([*kept, a_file])
