"""One bytecode cache (``PYTHONPYCACHEPREFIX``) for every process a test session starts, compiled
once while the test processes start.

The suite starts about a hundred Python processes (each ``crm-audit-migrate`` command, Celery worker,
``--workers`` pool and its fork server). Where bytecode is not written (``PYTHONDONTWRITEBYTECODE``,
as on CI), each one compiled the package's and its drivers' sources again: about 1.8 s of CPU for a
run's imports, against 0.45 s from a cache (measured on the 2-core machine). A cache per test process
still left each of pytest-xdist's processes to compile them all once, in its first process-driving
test: that test's first run waited about 8 s for its first batch, the next ones about 3 s.

So the session's first process (pytest-xdist's controller, or the only one) makes the directory, names
it to the test processes it starts (``BYTECODE_DIR``), and starts one process that imports what a
runner's processes import (``WARM``), writing the cache while pytest-xdist starts its test processes and
collects. Each test process then hands the cache to the processes its tests start (``bytecode_cache``).
The test processes themselves are not affected: the variables are read when an interpreter starts. A
module the warm-up does not import is compiled by the first process that needs it, into the same cache.
The directory is removed when the session ends (never in the work tree). A session killed before its
end (``kill -9``, a landing check stopped) leaves its directory behind: each is named after the process
that made it (``crm-audit-test-bytecode-<pid>-…``), and a session's first process removes, as it starts,
every such directory whose process is gone (``remove_stale``). One named for a process still running,
another session's or an unrelated one that reused a dead session's pid, is left: a leftover costs disk
space; a directory removed under a running session would fail its tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = [
    "BYTECODE_DIR",
    "PREFIX",
    "WARM",
    "bytecode_cache",
    "pytest_configure",
    "pytest_unconfigure",
    "remove_stale",
]

BYTECODE_DIR = "CRM_AUDIT_TEST_BYTECODE_DIR"
"""The variable that names the session's cache directory to its test processes."""
WARM = (
    "crm_audit_adapters.console",
    "crm_audit_adapters.cli",
    "crm_audit_adapters.cli.commands",
    "crm_audit_adapters.settings",
    "crm_audit_adapters.celery",
    "celery.apps.worker",
    "kombu.transport.redis",
    "psycopg",
)
"""What the warm-up imports besides ``fork_server.RUN_PRELOAD`` (a run's processes): the command line,
its settings, and a Celery worker's modules. One that fails to import is passed over."""
_WARM_UP = (
    "import importlib\n"
    "from crm_audit_adapters.fork_server import RUN_PRELOAD\n"
    "for name in (*RUN_PRELOAD, *{warm!r}):\n"
    "    try:\n"
    "        importlib.import_module(name)\n"
    "    except Exception:\n"
    "        pass\n"
)
_NAMES = ("PYTHONPYCACHEPREFIX", "PYTHONDONTWRITEBYTECODE")
PREFIX = "crm-audit-test-bytecode-"
"""The start of a cache directory's name in the temporary directory; the pid of its session follows."""


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: running
    return True


def remove_stale(parent: Path) -> list[Path]:
    """Removes each ``PREFIX<pid>-…`` directory in ``parent`` whose process ``pid`` is gone; returns
    them. A name without a pid (another tool's, or made before the pid was in the name) is left."""
    removed = []
    for path in sorted(parent.glob(f"{PREFIX}*-*")):
        pid = path.name[len(PREFIX) :].split("-", 1)[0]
        if not pid.isdigit() or not path.is_dir() or path.is_symlink() or _running(int(pid)):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def _with_cache(directory: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "PYTHONPYCACHEPREFIX": directory}


def pytest_configure(config: pytest.Config) -> None:
    """In the session's first process: the cache directory, and its warm-up started (not waited for)."""
    if hasattr(config, "workerinput") or BYTECODE_DIR in os.environ:
        return  # a pytest-xdist test process, or a session started inside one: the cache is given
    remove_stale(Path(tempfile.gettempdir()))
    directory = tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-")
    os.environ[BYTECODE_DIR] = directory
    warm_up = subprocess.Popen(
        [sys.executable, "-c", _WARM_UP.format(warm=WARM)],
        env=_with_cache(directory),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    config.stash[_STATE] = (directory, warm_up)


def pytest_unconfigure(config: pytest.Config) -> None:
    """The warm-up ended (long since, in any session that starts a process) and the cache removed."""
    state = config.stash.get(_STATE, None)
    if state is None:
        return
    directory, warm_up = state
    if warm_up.poll() is None:
        warm_up.kill()
    warm_up.wait()
    os.environ.pop(BYTECODE_DIR, None)
    shutil.rmtree(directory, ignore_errors=True)


_STATE = pytest.StashKey[tuple[str, "subprocess.Popen[bytes]"]]()


@pytest.fixture(scope="session", autouse=True)
def bytecode_cache() -> Iterator[None]:
    """In each test process, for the session: the processes its tests start use the session's cache.

    A fixture, not a hook: it runs in each process that runs tests and ends with the session there."""
    before = {name: os.environ.get(name) for name in _NAMES}
    os.environ["PYTHONPYCACHEPREFIX"] = os.environ[BYTECODE_DIR]
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
