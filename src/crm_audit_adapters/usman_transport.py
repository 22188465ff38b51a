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

An answer's body is read raw (``iter_raw``) and inflated here, never by httpx: httpx inflates each
network read whole (a 64 KiB read of gzip is up to 64 MiB, of brotli or zstandard when importable
far more) before the client could count a byte. ``BoundedInflater`` gives at most the room left
under the answer's bound each read, and ``ACCEPT_ENCODING`` asks for the codings it knows only.

Imported by ``UsmanClient`` itself (it needs httpx): the settings read ``UsmanConfig`` without it.
"""

from __future__ import annotations

import contextlib
import time
import typing
import zlib
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from typing import Final

import httpcore
import httpx

__all__ = [
    "ACCEPT_ENCODING",
    "BoundedInflater",
    "UnaskedCoding",
    "answer_deadline",
    "bound_by_deadline",
    "content_coding",
]

ACCEPT_ENCODING: Final = "gzip, deflate"
"""What the client asks answers to be coded in: the codings ``BoundedInflater`` inflates within a
bound. Sent always, so httpx's default (brotli and zstandard too, when those are importable) is not."""
_INFLATED: Final = {"gzip": zlib.MAX_WBITS | 16, "x-gzip": zlib.MAX_WBITS | 16, "deflate": zlib.MAX_WBITS}
"""zlib's ``wbits`` for each coding asked for (``x-gzip``: gzip's old name, RFC 9110 8.4.1.3)."""
_NAMED: Final = frozenset(
    {"br", "zstd", "compress", "x-compress", "aes128gcm", "exi", "pack200-gzip", "dcb", "dcz"}
)
"""Codings of IANA's registry, named in a refusal; any other value is the server's text, not quoted."""


class UnaskedCoding(Exception):
    """An answer in a ``Content-Encoding`` not asked for (``ACCEPT_ENCODING``), or in more than one;
    ``coding`` names it when it is a registered coding, else is ``"another"``."""

    def __init__(self, coding: str) -> None:
        super().__init__(coding)
        self.coding = coding


def content_coding(headers: httpx.Headers) -> str | None:
    """The coding an answer's body is in: None for none (or ``identity``), ``"gzip"`` or ``"deflate"``;
    ``UnaskedCoding`` for any other, or for codings applied one over another."""
    codings = [
        coding.strip().lower()
        for value in headers.get_list("content-encoding")
        for coding in value.split(",")
        if coding.strip() and coding.strip().lower() != "identity"
    ]
    if not codings:
        return None
    if len(codings) == 1 and codings[0] in _INFLATED:
        return codings[0]
    raise UnaskedCoding(", ".join(c if c in _NAMED or c in _INFLATED else "another" for c in codings))


class BoundedInflater:
    """A body in ``coding`` (``content_coding``), inflated a read at a time, never more at once than the
    room the caller has left: what httpx's decoders do (a ``deflate`` body with or without its zlib
    header, RFC 9110 8.4.1.2), with zlib's ``max_length``. ``httpx.DecodingError`` for a body its
    coding cannot decode, or that ends before its coded stream does."""

    __slots__ = ("_first", "_inflate", "_raw_deflate")

    def __init__(self, coding: str) -> None:
        self._inflate = zlib.decompressobj(_INFLATED[coding])
        self._raw_deflate = coding == "deflate"
        self._first = True

    def feed(self, data: bytes, room: int) -> bytes:
        """``data`` inflated, at most ``room + 1`` bytes of it: more than ``room`` is all the caller
        needs to know the body is past its bound (the rest of ``data`` is then left uninflated)."""
        first, self._first = self._first, False
        try:
            return self._inflate.decompress(data, room + 1)
        except zlib.error as exc:
            if first and self._raw_deflate:
                # Servers send "deflate" as raw deflate as often as zlib-wrapped (httpx reads both).
                self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
                return self.feed(data, room)
            raise httpx.DecodingError(f"{type(exc).__name__}: the body does not decode") from exc

    def end(self) -> None:
        """The body ended: ``httpx.DecodingError`` unless its coded stream did."""
        if not self._inflate.eof:
            raise httpx.DecodingError("the body ended before its coded stream did")


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
