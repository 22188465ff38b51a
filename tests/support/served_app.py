"""The HTTP app over a test's service, served on loopback with a client for it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import httpx

from crm_audit_adapters.http import BasicAuthCredentials, SignedSessionResolver, create_app
from support.live_server import LiveServer


@contextlib.contextmanager
def served_client(service: Any, secret: bytes) -> Iterator[httpx.Client]:
    """An ``httpx.Client`` on a ``LiveServer`` running ``create_app(service)``, Basic auth ``ops``/``pw``
    and sessions signed with ``secret``; the server stops when the block ends."""
    app = create_app(
        service,
        basic_auth=BasicAuthCredentials("ops", "pw"),
        sessions=SignedSessionResolver(secret=secret),
    )
    with LiveServer(app) as live, httpx.Client(base_url=live.url, timeout=30) as http:
        yield http
