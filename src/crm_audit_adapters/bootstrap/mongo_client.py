"""The MongoDB client for the runner's URI, and the one ping that says why a server is unreachable."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from crm_audit_transform.errors import ConfigError, DependencyMissing, StoreUnavailable

from ..redaction import scrub
from ..settings.unset import setting_not_set

if TYPE_CHECKING:
    from pymongo import MongoClient

    from ..mongo.documents_types import Document

MONGOMOCK_URI = "mongomock://"


DEFAULT_SERVER_SELECTION_TIMEOUT_MS = 10_000
"""Used only when the URI does not set ``serverSelectionTimeoutMS`` itself (pymongo's own is 30 s)."""
_NOTICE_AFTER_S = 1.0  # a reachable server answers well within this; say what we wait for after it


def mongo_client_for(uri: str | None) -> MongoClient[Document]:
    """A client for ``uri``; the URI's own options win over the runner's defaults.

    ``ConfigError`` for a URI pymongo refuses or one asking for unacknowledged writes (``w=0``:
    ``UNACKNOWLEDGED``), ``DependencyMissing`` for ``mongomock://`` without mongomock installed.
    Nothing connects here (pymongo connects in the background).
    """
    from pymongo import MongoClient
    from pymongo.errors import PyMongoError

    if not uri:
        raise setting_not_set("mongo_uri", "CRM_AUDIT_MONGO_URI")
    if uri.startswith(MONGOMOCK_URI):
        try:
            import mongomock  # a test dependency: only imported when asked for
        except ImportError:
            raise DependencyMissing(
                [
                    (
                        "mongo_uri",
                        "mongomock:// needs mongomock: pip install mongomock (the [dev] extra has it)",
                    )
                ]
            ) from None
        # mongomock ships no types: its client stands in for pymongo's, which it mimics.
        return mongomock.MongoClient(tz_aware=True)
    options: dict[str, Any] = {}
    if not _SELECTION_TIMEOUT_OPTION.search(uri):
        options["serverSelectionTimeoutMS"] = DEFAULT_SERVER_SELECTION_TIMEOUT_MS
    try:
        client: MongoClient[Document] = MongoClient(uri, tz_aware=True, **options)
    except PyMongoError as exc:
        # pymongo's message may quote the URI: scrubbed, never raw.
        raise ConfigError([("mongo_uri", f"pymongo refused the URI: {scrub(str(exc), [uri])}")]) from None
    if not client.write_concern.acknowledged:
        # With w=0 an insert_many reports nothing: every log would count as inserted, a duplicate or a
        # refused one too, and the job store's find_one_and_update answers None (a lease "held").
        client.close()
        raise ConfigError([("mongo_uri", UNACKNOWLEDGED)])
    return client


UNACKNOWLEDGED = (
    "the URI asks for unacknowledged writes (w=0): each log's outcome and every job write are read from "
    "the server's answer, so the runner needs one; remove w=0 (w=1 or w=majority)"
)
"""Why a URI with ``w=0`` is refused (``ConfigError``): it would count logs it never saw written."""

_SELECTION_TIMEOUT_OPTION = re.compile(r"[?&;]serverSelectionTimeoutMS=", re.IGNORECASE)


def wait_for_mongo(client: MongoClient[Document], uri: str, notice: Callable[[str], None] | None) -> None:
    """Ping the server once, saying "connecting to MongoDB at …" if that takes over a second.

    The wait is bounded by the client's ``serverSelectionTimeoutMS``; then ``StoreUnavailable``
    (exit 6). A refused login is ``ConnectionRejected`` (exit 3).
    """
    from pymongo.errors import PyMongoError

    from ..mongo.retry import driver_cause, rejected_login

    seeds = client.topology_description.server_descriptions()  # the URI's hosts until discovery
    hosts = ", ".join(f"{host}:{port}" for host, port in seeds) or "?"
    timeout_s = client.options.server_selection_timeout
    timer = None
    if notice is not None:
        timer = threading.Timer(
            _NOTICE_AFTER_S, notice, [f"connecting to MongoDB at {hosts} (giving up after {timeout_s:g} s)…"]
        )
        timer.daemon = True
        timer.start()
    try:
        client.admin.command("ping")
    except PyMongoError as exc:
        rejected = rejected_login(exc)
        if rejected is not None:
            raise rejected from None
        raise StoreUnavailable(
            f"MongoDB at {hosts} unreachable after {timeout_s:g} s (serverSelectionTimeoutMS): "
            f"{driver_cause(exc, [uri])}"
        ) from None
    finally:
        if timer is not None:
            timer.cancel()


def is_mongomock(db: object) -> bool:
    return type(db).__module__.startswith("mongomock")
