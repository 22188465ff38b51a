"""A throwaway ``redis-server`` on a free loopback port, with no persistence, for the Celery tests
(``RedisServer``: one a test kills and starts again).

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

__all__ = [
    "RedisServer",
    "die_with_parent",
    "free_port",
    "redis_url",
    "running_redis",
    "running_redis_server",
]

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


class RedisServer:
    """``redis-server`` on one loopback port, with no persistence, that a test may stop and start.

    ``kill()`` ends it as a crash does (SIGKILL: every message it held is gone); ``start()`` starts it
    again on the same port, empty, so the URL its clients hold stays right.
    """

    def __init__(self, workdir: str, *, password: str | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: `apt-get install redis-server` (.ci/run does)")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        args += ["--dir", workdir, "--daemonize", "no", "--loglevel", "warning"]
        self._args = args + (["--requirepass", password] if password else [])
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the server and return once it answers (``RuntimeError`` if it does not in 10 s)."""
        process = subprocess.Popen(
            self._args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=die_with_parent
        )
        self._process = process
        deadline = time.monotonic() + 10
        while not ping(self.port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL, and wait until the process is gone (its port is closed)."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not ended within 10 s."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


@contextlib.contextmanager
def running_redis_server(*, password: str | None = None) -> Iterator[RedisServer]:
    """A started ``RedisServer`` for as long as the block (``password``: ``--requirepass``)."""
    with tempfile.TemporaryDirectory(prefix="crm-audit-redis-") as workdir:
        server = RedisServer(workdir, password=password)
        server.start()
        try:
            yield server
        finally:
            server.stop()


@contextlib.contextmanager
def running_redis(*, password: str | None = None) -> Iterator[str]:
    """``redis://127.0.0.1:PORT/0`` of a server that lives as long as the block (``password``:
    ``--requirepass``; the URL given carries no password)."""
    with running_redis_server(password=password) as server:
        yield server.url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """``redis://127.0.0.1:PORT/0`` of a server that lives as long as the test session."""
    with running_redis() as url:
        yield url
