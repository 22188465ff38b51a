"""A real uvicorn server on loopback, for tests of the HTTP surface."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveServer:
    """Runs an ASGI app under uvicorn in a thread until the test session closes it."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


class MountedApp:
    """An ASGI app that hands each HTTP request to the app a test mounted (``mount``); 503 while none is.

    One ``LiveServer`` over it serves a whole module, each test mounting its own app over its own
    runtime and database: the socket, uvicorn and the HTTP path are those every app had, without a
    server start and stop per test (about 0.3 s each, most of a route test's time; the stop waits
    for uvicorn's 0.1 s tick). The server runs with ``lifespan="off"``, so only HTTP scopes come here.
    """

    def __init__(self) -> None:
        self._app: Any = None

    @contextlib.contextmanager
    def mount(self, app: Any) -> Iterator[None]:
        """Serve ``app`` until the block ends; one app at a time (``RuntimeError`` for a second)."""
        if self._app is not None:
            raise RuntimeError("an app is already mounted")
        self._app = app
        try:
            yield
        finally:
            self._app = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        app = self._app
        if app is None:
            await send(
                {"type": "http.response.start", "status": 503, "headers": [(b"content-type", b"text/plain")]}
            )
            await send({"type": "http.response.body", "body": b"no app mounted"})
            return
        await app(scope, receive, send)
