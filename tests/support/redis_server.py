"""A throwaway ``redis-server`` on a free loopback port, with no persistence, for the Celery tests.

Debian's ``redis-server`` (``.ci/run`` installs it when missing) is started in the foreground with
``--save ''`` and ``--appendonly no``, so nothing is written to disk, and it is terminated at the
end of the session. Nothing here is skipped: without the binary the session fails clearly.
"""

from __future__ import annotations

import contextlib
import ctypes
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import pytest

__all__ = ["die_with_parent", "free_port", "redis_url", "running_redis"]

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """``preexec_fn``: the child gets SIGTERM when the test process dies, even by ``kill -9``."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    """A port nothing listens on right now (the kernel's pick for an ephemeral bind)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def ping(port: int) -> bool:
    """The server answers (a server with a password answers NOAUTH before any login)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


@contextlib.contextmanager
def running_redis(*, password: str | None = None) -> Iterator[str]:
    """``redis://127.0.0.1:PORT/0`` of a server that lives as long as the block (``password``:
    ``--requirepass``; the URL given carries no password)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed: `apt-get install redis-server` (.ci/run does)")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="crm-audit-redis-") as workdir:
        args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        args += ["--dir", workdir, "--daemonize", "no", "--loglevel", "warning"]
        args += ["--requirepass", password] if password else []
        process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=die_with_parent
        )
        try:
            deadline = time.monotonic() + 10
            while not ping(port):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on port {port}")
                time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """``redis://127.0.0.1:PORT/0`` of a server that lives as long as the test session."""
    with running_redis() as url:
        yield url
