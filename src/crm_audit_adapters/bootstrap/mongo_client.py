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
MIN_SOCKET_TIMEOUT_MS = 2_000
"""The least ``socket_timeout_ms`` gives: a lease under 50 s is for tests, whose servers need a
moment under load."""


def socket_timeout_ms(lease_seconds: float) -> int:
    """The runner's ``socketTimeoutMS`` for a lease of ``lease_seconds``, when the URI sets none.

    A batch goes out with at least half the lease left; its insert may take the store's
    ``DEFAULT_RETRY.attempts`` attempts (4) with their backoff (at most 1.4 s in all). So that the
    last attempt is answered, or given up, while the lease still holds, half the lease is shared in
    five: one share per attempt, the fifth for the backoff and the rest of the batch. 12 s for the
    default 120 s lease; never less than ``MIN_SOCKET_TIMEOUT_MS``. docs/runner.md, "Not fenced".
    """
    from ..mongo.retry import DEFAULT_RETRY

    share = lease_seconds * 1000 / 2 / (DEFAULT_RETRY.attempts + 1)
    return max(MIN_SOCKET_TIMEOUT_MS, int(share))


_NOTICE_AFTER_S = 1.0  # a reachable server answers well within this; say what we wait for after it


def mongo_client_for(uri: str | None, *, lease_seconds: float | None = None) -> MongoClient[Document]:
    """A client for ``uri``; the URI's own options win over the runner's defaults.

    ``lease_seconds``: the runner's lease, which sets ``socketTimeoutMS`` (``socket_timeout_ms``)
    unless the URI sets it (``socketTimeoutMS=0`` there: no limit); None sets none (pymongo's own:
    no limit).

    ``ConfigError`` for a URI pymongo refuses or one asking for unacknowledged writes (``w=0``:
    ``UNACKNOWLEDGED``), ``DependencyMissing`` for ``mongomock://`` without mongomock installed.
    Nothing connects here (pymongo connects in the background), but a ``mongodb+srv://`` URI's DNS
    records are looked up: ``StoreUnavailable`` (exit 6) when no DNS server answers
    (``retry.dns_outage``), ``ConfigError`` when the name does not exist.
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
    if lease_seconds is not None and not _SOCKET_TIMEOUT_OPTION.search(uri):
        options["socketTimeoutMS"] = socket_timeout_ms(lease_seconds)
    try:
        client: MongoClient[Document] = MongoClient(uri, tz_aware=True, **options)
    except PyMongoError as exc:
        from ..mongo.retry import dns_outage

        # pymongo's message may quote the URI: scrubbed, never raw.
        if dns_outage(exc):  # a mongodb+srv:// URI's lookup no DNS server answered: an outage
            raise StoreUnavailable(
                f"MongoDB's DNS records (mongodb+srv://) could not be looked up: {scrub(str(exc), [uri])}"
            ) from None
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
_SOCKET_TIMEOUT_OPTION = re.compile(r"[?&;]socketTimeoutMS=", re.IGNORECASE)


def wait_for_mongo(client: MongoClient[Document], uri: str, notice: Callable[[str], None] | None) -> None:
    """Ping the server once, saying "connecting to MongoDB at …" if that takes over a second.

    The wait is bounded by the client's ``serverSelectionTimeoutMS``; then ``StoreUnavailable``
    (exit 6). A refused login is ``ConnectionRejected`` (exit 3); a URI pymongo cannot connect with
    (an ``authMechanism`` whose package is missing) ``DependencyMissing`` or ``ConfigError`` (exit 3,
    ``retry.refused_configuration``), never an outage; so is a ``MONGODB-OIDC`` token the URI's
    ``ENVIRONMENT`` does not give (``ConfigError``, ``retry.oidc_token_refused``).
    """
    from pymongo.errors import PyMongoError

    from ..mongo.retry import driver_cause, oidc_token_refused, refused_configuration, rejected_login

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
    except (ValueError, RuntimeError, OSError) as exc:  # raised untranslated by a MONGODB-OIDC token fetch
        refused = oidc_token_refused(exc, [uri])
        if refused is not None:
            raise refused from None
        raise
    except PyMongoError as exc:
        rejected = rejected_login(exc) or refused_configuration(exc, [uri])
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
