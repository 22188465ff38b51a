"""A real HTTP server on 127.0.0.1 that answers like USMAN, and misbehaves on request.

It serves the contract of docs/usman.md from a directory ``{company_sso_id: {email: sso_id}}``
(emails matched case-insensitively), checks the auth header, and records every request. Tests
queue behaviours for the next requests (``server.queue(slow(1.0), status(500))``); once the
queue is empty every request gets ``server.default`` (normally ``answer``).
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from attrs import define, field, frozen

__all__ = [
    "NO_CONTENT",
    "PATH",
    "TOKEN",
    "Reply",
    "SeenRequest",
    "UsmanServer",
    "answer",
    "body",
    "drip",
    "drip_headers",
    "drop",
    "email_twice",
    "hang",
    "held",
    "slow",
    "status",
]

PATH = "/api/v1/users/sso-ids"
TOKEN = "s3cr3t-usman-token-value"


@frozen
class SeenRequest:
    method: str
    path: str
    headers: Mapping[str, str]
    payload: Any
    peer: tuple[str, int]  # the client's address: one per pooled connection


@frozen
class Reply:
    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(factory=dict)
    delay: float = 0.0
    hang: bool = False
    drop: bool = False
    drip: float = 0.0
    """Seconds between the body's bytes, each sent alone (a server that answers slowly but steadily)."""
    drip_headers: float = 0.0
    """Seconds between the status line's and headers' bytes, each sent alone; the body then at once."""


Behaviour = Callable[["UsmanServer", SeenRequest], Reply]


def email_key(email: str) -> str:
    return "".join(c.lower() if "A" <= c <= "Z" else c for c in email)


def answer(server: UsmanServer, request: SeenRequest) -> Reply:
    """What USMAN does: look the emails up within the company, ignoring the case of ASCII letters only."""
    payload = request.payload
    if not isinstance(payload, dict) or not isinstance(payload.get("emails"), list):
        return Reply(400, b'{"error": "bad request"}')
    users = {
        email_key(email): sso for email, sso in server.directory.get(payload["company_sso_id"], {}).items()
    }
    data = [
        {"email": email, "sso_id": users[email_key(email)]}
        for email in payload["emails"]
        if email_key(email) in users
    ]
    return Reply(200, json.dumps({"data": data}).encode())


NO_CONTENT: frozenset[int] = frozenset({204, 205, 304})
"""Answers HTTP gives no content (RFC 9110 §15.3.5, §15.3.6, §15.4.5), 1xx aside: a body after one
would be read as the start of the connection's next answer."""


def email_twice(server: UsmanServer, request: SeenRequest) -> Reply:
    """Answer as USMAN does, but each entry names ``email`` twice, the second time the next email asked:
    JSON no dict holds (Python's reader keeps the last member, so each id lands on another user)."""
    data = json.loads(answer(server, request).body)["data"]
    asked = request.payload["emails"]
    entries = [
        f'{{"email": {json.dumps(entry["email"])}, "sso_id": {json.dumps(entry["sso_id"])}, '
        f'"email": {json.dumps(asked[(i + 1) % len(asked)])}}}'
        for i, entry in enumerate(data)
    ]
    return Reply(200, ('{"data": [' + ", ".join(entries) + "]}").encode())


def status(code: int, headers: Mapping[str, str] | None = None) -> Behaviour:
    """Answer ``code``: with a small JSON error body, or none where HTTP forbids one (``NO_CONTENT``)."""
    content = b"" if code in NO_CONTENT else b'{"error": "nope"}'
    return lambda server, request: Reply(code, content, headers=dict(headers or {}))


def body(raw: bytes) -> Behaviour:
    """Answer 200 with this exact body (garbage, or JSON of the wrong shape)."""
    return lambda server, request: Reply(200, raw)


def slow(seconds: float) -> Behaviour:
    """Answer correctly, but only after ``seconds``."""

    def behaviour(server: UsmanServer, request: SeenRequest) -> Reply:
        reply = answer(server, request)
        return Reply(reply.status, reply.body, reply.headers, delay=seconds)

    return behaviour


def held(until: threading.Event, timeout: float = 120.0) -> Behaviour:
    """Answer correctly once ``until`` is set (at most ``timeout`` s): its caller waits mid-request,
    so a test acts on a runner at a known point however busy the machine is."""

    def behaviour(server: UsmanServer, request: SeenRequest) -> Reply:
        until.wait(timeout)
        return answer(server, request)

    return behaviour


def drip(seconds: float) -> Behaviour:
    """Answer correctly, the body one byte every ``seconds``: each read is quick, the answer is not."""

    def behaviour(server: UsmanServer, request: SeenRequest) -> Reply:
        reply = answer(server, request)
        return Reply(reply.status, reply.body, reply.headers, drip=seconds)

    return behaviour


def drip_headers(seconds: float, pad: int) -> Behaviour:
    """Answer correctly, the status line and headers (``pad`` bytes of them in an ``X-Pad`` header)
    one byte every ``seconds``: each read is quick, the headers are not."""

    def behaviour(server: UsmanServer, request: SeenRequest) -> Reply:
        reply = answer(server, request)
        return Reply(reply.status, reply.body, {**reply.headers, "X-Pad": "p" * pad}, drip_headers=seconds)

    return behaviour


def hang(server: UsmanServer, request: SeenRequest) -> Reply:
    """Never answer (until the server stops)."""
    return Reply(0, hang=True)


def drop(server: UsmanServer, request: SeenRequest) -> Reply:
    """Close the connection without a response."""
    return Reply(0, drop=True)


@define
class UsmanServer:
    directory: dict[str, dict[str, str]] = field(factory=dict)
    token: str = TOKEN
    auth_header: str = "Authorization"
    auth_scheme: str = "Bearer"
    default: Behaviour = answer
    requests: list[SeenRequest] = field(factory=list)
    headers_cut_off: int = 0
    """Answers whose dripping headers (``drip_headers``) the client hung up on before their end."""
    headers_dripped: threading.Event = field(factory=threading.Event)
    """Set when an answer with dripping headers has ended, cut off or sent whole."""
    _script: deque[Behaviour] = field(factory=deque)
    _lock: threading.Lock = field(factory=threading.Lock)
    _stopping: threading.Event = field(factory=threading.Event)
    _httpd: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def queue(self, *behaviours: Behaviour) -> None:
        with self._lock:
            self._script.extend(behaviours)

    def posted_emails(self) -> list[list[str]]:
        """The ``emails`` list of every request, in arrival order."""
        return [list(r.payload["emails"]) for r in self.requests if isinstance(r.payload, dict)]

    def start(self) -> UsmanServer:
        self._httpd = _QuietServer(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> UsmanServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _respond(self, request: SeenRequest) -> Reply:
        with self._lock:
            self.requests.append(request)
            behaviour = self._script.popleft() if self._script else None
        if request.headers.get(self.auth_header.lower()) != self._expected_auth():
            return Reply(401, b'{"error": "unauthorized"}')
        # A request through a proxy names its target in absolute form (http://host/path); a query
        # (``?api_key=…``) is no part of the path.
        path = urlsplit(request.path).path
        if request.method != "POST" or path != PATH:
            return Reply(404, b'{"error": "not found"}')
        return (behaviour or self.default)(self, request)

    def _expected_auth(self) -> str | None:
        # token="" is a directory that needs none: it expects no auth header at all.
        if not self.token:
            return None
        return f"{self.auth_scheme} {self.token}" if self.auth_scheme else self.token


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up (timeout) leaves a broken pipe behind: expected here


def _handler_for(server: UsmanServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, so connection pooling is exercised
        # Headers and body go out in two writes: with Nagle's algorithm the second waits for the
        # client's delayed ACK (~40 ms a request on loopback), which no real USMAN costs.
        disable_nagle_algorithm = True

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            try:
                payload = json.loads(raw)
            except ValueError:
                payload = None
            seen = SeenRequest(
                self.command,
                self.path,
                {k.lower(): v for k, v in self.headers.items()},
                payload,
                (str(self.client_address[0]), int(self.client_address[1])),
            )
            reply = server._respond(seen)
            if reply.hang:
                server._stopping.wait()
                self.close_connection = True
                return
            if reply.drop:
                self.close_connection = True
                return
            if reply.delay and server._stopping.wait(reply.delay):
                self.close_connection = True
                return
            if reply.drip_headers:
                try:
                    self._drip_headers(reply)
                finally:
                    server.headers_dripped.set()
                return
            self.send_response(reply.status)
            if not any(name.lower() == "content-type" for name in reply.headers):
                self.send_header("Content-Type", "application/json")
            if reply.status not in (204, 304):  # no Content-Length either (RFC 9110 §8.6)
                self.send_header("Content-Length", str(len(reply.body)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if not reply.drip:
                self.wfile.write(reply.body)
                return
            for byte in reply.body:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                if server._stopping.wait(reply.drip):
                    self.close_connection = True
                    return

        def _drip_headers(self, reply: Reply) -> None:
            lines = [
                f"HTTP/1.1 {reply.status} OK",
                "Content-Type: application/json",
                f"Content-Length: {len(reply.body)}",
                *(f"{name}: {value}" for name, value in reply.headers.items()),
            ]
            for byte in ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"):
                try:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                except OSError:  # the client gave up: the answer is not taken
                    with server._lock:
                        server.headers_cut_off += 1
                    self.close_connection = True
                    return
                if server._stopping.wait(reply.drip_headers):
                    self.close_connection = True
                    return
            self.wfile.write(reply.body)

        do_GET = do_POST

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output clean

    return Handler
