"""Checks of the settings' URLs at load time, by the parsers of the drivers that will use them.

A URL that passes load must not fail later as ``INTERNAL`` (kombu's ``No such transport``, Python's
``Port out of range``) or, worse, as an outage retried for ever (libpq reads a DSN's port only when
it connects). Each check returns the problem, or None; a problem never quotes the URL (it may hold
a password), only a scheme, which cannot.

* **Broker** (``broker_url``): each URL of a ``;``-separated failover list (kombu splits on every
  ``;``) names a transport kombu has — looked up by kombu itself (``resolve_transport``, which also
  imports the transport, so a missing driver package is found here) — with a port in 1-65535 and,
  for Redis (``redis``, ``rediss``, ``sentinel``; not ``redis+socket``, whose path is the socket's),
  a database number as its path. Then each URL is read as Celery reads it, by
  ``kombu.Connection`` (nothing connects): its query parameters become the connection's keyword
  arguments, so one that repeats a part of the URL (``?password=``) or that kombu does not know is
  refused here, not as an ``INTERNAL`` ``TypeError`` when ``worker`` or ``enqueue`` connects.
* **Result backend** (``result_backend``): a scheme in Celery's own table of backends
  (``celery.app.backends.BACKEND_ALIASES`` and installed extensions), imported the same way; ports
  and Redis databases as above.
* **CRM DSN**: every port libpq would read (one per host of a multi-host DSN) in 1-65535.
* **USMAN** (``usman.base_url``): a URL httpx parses, with a host and a port in 1-65535.

Without Celery installed the broker and backend schemes are not looked up (those settings are then
unused: ``worker`` and ``enqueue`` refuse with ``DEPENDENCY_MISSING``); the rest is still checked.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final
from urllib.parse import urlsplit

__all__ = ["broker_url_problem", "dsn_port_problem", "http_url_problem", "result_backend_problem"]

_PORTS: Final = "the port must be a number from 1 to 65535"
_SCHEME: Final = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_REDIS_SCHEMES: Final = frozenset({"redis", "rediss", "sentinel"})
_MAX_PORT: Final = 65_535


def broker_url_problem(value: str) -> str | None:
    """What kombu would refuse in ``value`` (one URL, or several separated by ``;``), or None."""
    for url in value.split(";"):
        scheme = _scheme(url)
        if scheme is None:
            return (
                "each URL (kombu reads every ';' as the start of another failover URL: write a ';' "
                "in a password as %3B) must be a URL such as redis://host:6379/0"
            )
        # kombu's "sqla+postgresql://" form names the transport before the "+".
        transport = scheme.split("+", 1)[0]
        problem = _transport_problem(transport) or _parts_problem(url, scheme) or _connection_problem(url)
        if problem:
            return problem
    return None


def result_backend_problem(value: str) -> str | None:
    """What Celery would refuse in the result backend URL ``value``, or None."""
    scheme = _scheme(value)
    if scheme is None:
        return "must be a URL such as redis://host:6379/1"
    backend = scheme.split("+", 1)[0]  # "db+postgresql://…" is Celery's database backend
    problem = _backend_problem(backend)
    if problem:
        return problem
    for url in value.split(";") if backend == "sentinel" else (value,):
        problem = _parts_problem(url, backend)
        if problem:
            return problem
    return None


def dsn_port_problem(conninfo: Mapping[str, str]) -> str | None:
    """``_PORTS`` when a port of the parsed DSN (``psycopg.conninfo.conninfo_to_dict``) is unusable."""
    ports = conninfo.get("port")
    if ports is None:
        return None
    # A multi-host DSN lists one port per host; an empty one is the default port.
    if all(port == "" or _port_number(port) is not None for port in str(ports).split(",")):
        return None
    return _PORTS


def http_url_problem(value: str) -> str | None:
    """What makes ``value`` a URL no HTTP request can reach (httpx's parser), or None."""
    import httpx

    try:
        url = httpx.URL(value)
    except httpx.InvalidURL:
        return "not a URL httpx can parse (check the host, the brackets of an IPv6 address, the port)"
    if not url.host:
        return "has no host"
    if url.port is not None and not 1 <= url.port <= _MAX_PORT:
        return _PORTS
    return None


def _scheme(url: str) -> str | None:
    match = _SCHEME.match(url)
    return match.group(1).lower() if match else None


def _port_number(text: str) -> int | None:
    number = int(text) if text.isascii() and text.isdigit() else None
    return number if number is not None and 1 <= number <= _MAX_PORT else None


def _parts_problem(url: str, scheme: str) -> str | None:
    """A port out of range or not a number, a Redis database that is not a number: by Python's
    URL parser, the one kombu's ``url_to_parts`` and Celery's Redis backend use."""
    try:
        parts = urlsplit("http://" + url.split("://", 1)[1])
        port = parts.port
    except ValueError as exc:  # "Port out of range", "Port could not be cast", "Invalid IPv6 URL"
        return _PORTS if "Port" in str(exc) else "not a URL (check the brackets of an IPv6 address)"
    if port is not None and port == 0:
        return _PORTS
    database = parts.path.strip("/")
    if scheme in _REDIS_SCHEMES and database and not (database.isascii() and database.isdigit()):
        return "the Redis database (the path) must be a number, such as /0"
    return None


def _transport_problem(transport: str) -> str | None:
    try:
        from kombu.transport import TRANSPORT_ALIASES, resolve_transport
    except ImportError:  # no Celery: the broker is unused
        return None
    # A name with "." or ":" is an import path to kombu; taken from a URL it is never a transport.
    if transport not in TRANSPORT_ALIASES:
        known = ", ".join(
            sorted({"amqp", "memory", "redis", "rediss", "sentinel", "sqs"} & set(TRANSPORT_ALIASES))
        )
        return f"kombu has no transport {transport!r} (the scheme names it: {known}, …)"
    try:
        resolve_transport(transport)
    except ImportError as exc:
        return f"kombu's {transport!r} transport needs a package that is not installed ({exc.name})"
    return None


_URL_PARTS: Final = frozenset({"transport", "hostname", "port", "userid", "password", "virtual_host"})
"""The keyword arguments kombu's ``parse_url`` fills from the URL itself."""


def _connection_problem(url: str) -> str | None:
    """What ``kombu.Connection(url)`` — Celery's broker connection, before it connects — refuses."""
    try:
        from kombu.connection import Connection
    except ImportError:  # no Celery: the broker is unused
        return None
    try:
        Connection(url)  # type: ignore[no-untyped-call]  # kombu ships no annotations for it
    except TypeError as exc:
        # "got multiple values for keyword argument 'password'" / "unexpected keyword argument 'x'":
        # name the parameter only when it is one of kombu's own (a user's key is not quoted).
        match = re.search(r"argument '(\w+)'", str(exc))
        name = match.group(1) if match and match.group(1) in _URL_PARTS else None
        if name is not None and "multiple values" in str(exc):
            return (
                f"the query parameter {name!r} repeats a part kombu reads from the URL itself: "
                "write it there (a password as redis://:PASSWORD@host:6379/0)"
            )
        return "a query parameter kombu does not take (it passes each one to its Connection)"
    except ValueError:
        return "not a URL kombu can read"
    return None


def _backend_problem(backend: str) -> str | None:
    try:
        from celery.app.backends import BACKEND_ALIASES
        from celery.utils.imports import load_extension_class_names, symbol_by_name
    except ImportError:  # no Celery: the result backend is unused
        return None
    aliases = dict(BACKEND_ALIASES)
    aliases.update(dict(load_extension_class_names("celery.result_backends")))
    if backend not in aliases:
        return f"Celery has no result backend {backend!r} (the scheme names it: redis, rediss, rpc, db, …)"
    try:
        symbol_by_name(backend, aliases)
    except ImportError as exc:
        return f"Celery's {backend!r} result backend needs a package that is not installed ({exc.name})"
    return None
