"""The USMAN client's connections, with every socket read and write ended by the attempt's deadline
(``usman.ANSWER_READS``), headers included.

httpx bounds each read by ``read_timeout``, never a whole answer: a server that sends a byte now and
then — of its body, or of its status line and headers — holds the caller for as long as it likes. The
body was bounded by a check between chunks; the headers are read inside httpx, before the client
sees a response. So the connections' streams read the deadline of the attempt under way
(``answer_deadline``) and give each read only the time left, ``httpcore.ReadTimeout`` once none is:
the client's usual timeout, retried. Outside an attempt they are httpcore's streams as they are.

``bound_by_deadline`` wraps the network backend of every transport the client built — its own and
those httpx mounts for proxies from the environment (``HTTPS_PROXY``), which a transport of our own
would lose. httpx offers no setting for the backend, so it is set on the pools it built
(``HTTPTransport._pool``, httpcore's ``ConnectionPool._network_backend``, which its proxies share); a
pool not of that shape is left as it is (the test of dripping headers then fails).

Imported by ``UsmanClient`` itself (it needs httpx): the settings read ``UsmanConfig`` without it.
"""

from __future__ import annotations

import contextlib
import time
import typing
from collections.abc import Iterable, Iterator
from contextvars import ContextVar

import httpcore
import httpx

__all__ = ["answer_deadline", "bound_by_deadline"]

_DEADLINE: ContextVar[float | None] = ContextVar("usman_answer_deadline", default=None)
"""The ``time.monotonic()`` by which the attempt under way in this thread must have its answer."""


@contextlib.contextmanager
def answer_deadline(deadline: float) -> Iterator[None]:
    """Every read and write of this thread's USMAN connections ends by ``deadline`` (monotonic s)."""
    token = _DEADLINE.set(deadline)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def _time_left(timeout: float | None, late: type[httpcore.TimeoutException]) -> float | None:
    """``timeout`` cut to the time left before the deadline; ``late`` when none is left."""
    deadline = _DEADLINE.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise late("the answer was not whole by the attempt's deadline")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    __slots__ = ("_stream",)

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _time_left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _time_left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: typing.Any,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        left = _time_left(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, left))

    def get_extra_info(self, info: str) -> typing.Any:
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    __slots__ = ("_backend",)

    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        self._backend = backend

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[typing.Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._backend.connect_tcp(host, port, timeout, local_address, socket_options)
        return _DeadlineStream(stream)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[typing.Any] | None = None
    ) -> httpcore.NetworkStream:
        return _DeadlineStream(self._backend.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


def bound_by_deadline(client: httpx.Client) -> int:
    """Make every connection ``client`` opens honour ``answer_deadline``; how many pools it wrapped
    (0 when this httpx keeps its pools where they are not looked for: its private layout)."""
    transports = [getattr(client, "_transport", None), *getattr(client, "_mounts", {}).values()]
    wrapped = 0
    for transport in transports:
        pool = getattr(transport, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if isinstance(backend, httpcore.NetworkBackend) and not isinstance(backend, _DeadlineBackend):
            pool._network_backend = _DeadlineBackend(backend)  # type: ignore[union-attr]
            wrapped += 1
    return wrapped
