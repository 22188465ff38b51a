"""Retrying MongoDB calls that failed on the network, and translating what is left.

The attempts and backoff are the adapters' one ``retrying.RetryPolicy`` (tenacity); this module
says what MongoDB error is worth another attempt and what the rest become.

Every operation retried here is idempotent by construction (an insert with a client-chosen
``_id`` behind a unique index, a delete, a read, a conditional update), so a retry after an
acknowledgement was lost cannot write twice. After the last attempt, and for any other driver error,
the caller sees ``StoreUnavailable``.

What the caller reads of the driver's error is one short clause (``driver_cause``): pymongo appends
its topology description (every server's address and state), its configured timeouts and the
server's whole reply to its messages, which say nothing an operator acts on and may quote a
document. The full error stays the ``StoreUnavailable``'s ``__cause__``, for a traceback that the
runner scrubs of the settings' secrets.

Three errors are not retried here. A ``ServerSelectionTimeoutError`` already waited the client's whole
``serverSelectionTimeoutMS`` (the URI's own value; the runner's default is 10 s) while pymongo kept
looking for a server, so retrying would multiply the wait the operator chose. A refused login
(``AuthenticationFailed``, code 18) is configuration: ``ConnectionRejected``, never retried. So is a
``ConfigurationError`` pymongo raises as it opens a connection (``refused_configuration``): an
authentication mechanism whose optional package is missing (``authMechanism=MONGODB-AWS`` without
pymongo-auth-aws, ``GSSAPI`` without kerberos) is ``DependencyMissing``, any other (a server too old
for this pymongo) ``ConfigError``; each was ``StoreUnavailable``, "unreachable", exit 6 and retried.
A ``MONGODB-OIDC`` token its ``ENVIRONMENT`` does not give (``oidc_token_refused``: off Azure with
``ENVIRONMENT:azure``) is ``ConfigError`` too, where pymongo's ``ValueError`` ended ``INTERNAL``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Final, TypeVar

from pymongo.errors import (
    ConfigurationError,
    ConnectionFailure,
    OperationFailure,
    PyMongoError,
    ServerSelectionTimeoutError,
    WriteConcernError,
)

from crm_audit_transform.errors import ConfigError, ConnectionRejected, DependencyMissing, StoreUnavailable

from ..redaction import scrub
from ..retrying import RetryPolicy, attempts_made

__all__ = [
    "AUTHENTICATION_FAILED",
    "DEFAULT_RETRY",
    "RetryPolicy",
    "call_with_retry",
    "dns_outage",
    "driver_cause",
    "is_retryable",
    "oidc_token_refused",
    "refused_configuration",
    "rejected_login",
]

AUTHENTICATION_FAILED = 18  # MongoDB's error code for a refused login
_UNAUTHORIZED = 13  # the login worked but the user may not do this

T = TypeVar("T")


DEFAULT_RETRY: Final = RetryPolicy(attempts=4, base_delay_s=0.2, max_delay_s=3.0)
"""Four attempts, 0.2 s doubling up to 3 s, with jitter."""


def is_retryable(exc: PyMongoError) -> bool:
    # AutoReconnect, NetworkTimeout and NotPrimaryError are ConnectionFailure; a server may also label
    # an error as safe to retry. Server selection already waited its whole timeout (see above).
    if isinstance(exc, ServerSelectionTimeoutError):
        return False
    # A write concern not confirmed in time: the write stands on the primary; another attempt of
    # an idempotent write waits for the confirmation again (``activity_logs.unconfirmed_write``).
    return isinstance(exc, ConnectionFailure | WriteConcernError) or exc.has_error_label(
        "RetryableWriteError"
    )


_AUTH_FAILED: Final = "Authentication failed"


def rejected_login(exc: PyMongoError) -> ConnectionRejected | None:
    """``ConnectionRejected`` when ``exc`` is a refused login or a missing privilege, else None."""
    # A login refused while pymongo opens its pool surfaces as server selection timing out, with
    # the server's "Authentication failed" as the reason (seen with wire-protocol servers).
    # A wire-protocol emulator (mongoeco) refuses a login with an OperationFailure without a code.
    refused_in_selection = isinstance(exc, ServerSelectionTimeoutError | OperationFailure) and (
        getattr(exc, "code", None) is None and _AUTH_FAILED in str(exc)
    )
    if refused_in_selection or (
        isinstance(exc, OperationFailure) and exc.code in (AUTHENTICATION_FAILED, _UNAUTHORIZED)
    ):
        failed = refused_in_selection or getattr(exc, "code", None) == AUTHENTICATION_FAILED
        reason = "authentication failed" if failed else "not authorized"
        return ConnectionRejected(
            [
                (
                    "mongo_uri",
                    f"MongoDB refused the login: {reason} (check the URI's user, password and authSource)",
                )
            ]
        )
    return None


# pymongo's words for an optional package it needs: "MONGODB-AWS authentication requires
# pymongo-auth-aws: install with: python -m pip install 'pymongo[aws]'", 'The "kerberos" module
# must be installed to use GSSAPI authentication.'
_INSTALL: Final = re.compile(r"\binstall", re.IGNORECASE)


def refused_configuration(exc: PyMongoError, secrets: Iterable[str | None] = ()) -> ConfigError | None:
    """``DependencyMissing`` or ``ConfigError`` when ``exc`` is pymongo's ``ConfigurationError``, else None.

    pymongo raises it as it opens a connection for what no retry changes: a mechanism of
    ``authMechanism`` whose package is not installed (``DependencyMissing``: its message says
    what to install), a server older than this pymongo supports (``ConfigError``). The message
    is pymongo's first clause (``driver_cause``), scrubbed of ``secrets``. None for one over a DNS
    lookup no server answered (``dns_outage``: a ``mongodb+srv://`` URI looked up as it connects):
    that is an outage, ``StoreUnavailable``.
    """
    if not isinstance(exc, ConfigurationError) or dns_outage(exc):
        return None
    problem = [("mongo_uri", f"pymongo cannot use this URI: {driver_cause(exc, secrets)}")]
    if _INSTALL.search(str(exc)) or isinstance(exc.__cause__, ImportError):
        return DependencyMissing(problem)
    return ConfigError(problem)


_OIDC_MODULES: Final = frozenset(
    {"pymongo._azure_helpers", "pymongo._gcp_helpers", "pymongo.auth_oidc_shared"}
)
"""Where pymongo fetches a ``MONGODB-OIDC`` token from its ``ENVIRONMENT`` (``azure``, ``gcp``, ``k8s``)."""


def oidc_token_refused(exc: BaseException, secrets: Iterable[str | None] = ()) -> ConfigError | None:
    """``ConfigError`` when ``exc`` is raised by pymongo's fetch of a ``MONGODB-OIDC`` token from the
    URI's ``authMechanismProperties=ENVIRONMENT:…``, else None.

    pymongo raises it untranslated as it opens a connection: a ``ValueError`` when the Azure or GCP
    metadata endpoint cannot be reached or answers no token, a ``RuntimeError`` or ``OSError`` when
    the token file it reads is not there. It ended ``INTERNAL``. Configuration, not an outage: the
    endpoint (``169.254.169.254``, ``metadata``) is the host's own, answering within milliseconds
    wherever that environment is; where it does not answer the host is not in it, or has no
    identity, and no retry changes that. The message is pymongo's first clause, never the
    endpoint's answer (which may hold a token), scrubbed of ``secrets``.
    """
    if not isinstance(exc, ValueError | RuntimeError | OSError) or isinstance(exc, PyMongoError):
        return None
    frame = exc.__traceback__
    while frame is not None and frame.tb_frame.f_globals.get("__name__") not in _OIDC_MODULES:
        frame = frame.tb_next
    if frame is None:
        return None
    if isinstance(exc, OSError) and exc.strerror:
        what = f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    else:
        what = re.split(r": |, but was ", str(exc), maxsplit=1)[0]
    return ConfigError(
        [
            (
                "mongo_uri",
                f"authMechanism=MONGODB-OIDC could not get a token from its ENVIRONMENT "
                f"({scrub(what, secrets)[:_CAUSE_CHARS]}): run where that environment gives this host an "
                "identity (ENVIRONMENT:azure on Azure with a managed identity, gcp on Google Cloud, "
                "k8s in a pod with a service account token), or change authMechanismProperties",
            )
        ]
    )


def dns_outage(exc: BaseException) -> bool:
    """Whether ``exc`` is pymongo's ``ConfigurationError`` over a DNS lookup of a ``mongodb+srv://``
    URI that got no answer: dnspython's ``Timeout`` (no server answered in time) or ``NoNameservers``
    (each one failed, SERVFAIL). pymongo raises every failed lookup of the URI's SRV and TXT records
    as ``ConfigurationError`` (``srv_resolver``), but these fail only while the DNS servers do: an
    outage, as a ``mongodb://`` host whose name cannot be resolved is (exit 6), where a name the DNS
    says does not exist (NXDOMAIN) stays configuration (exit 3)."""
    if not isinstance(exc, ConfigurationError):
        return False
    from dns.exception import Timeout
    from dns.resolver import NoNameservers

    return isinstance(exc.__cause__, Timeout | NoNameservers)


# Where pymongo's own additions to a message begin: a network error's timeouts, server selection's
# wait and topology description, an operation failure's full reply.
_APPENDED: Final = re.compile(r" \(configured timeouts|, Timeout: |, Topology Description: |, full error: ")
_CAUSE_CHARS: Final = 300  # an operator's one line; a server's errmsg may quote a whole document


def driver_cause(exc: PyMongoError, secrets: Iterable[str | None] = ()) -> str:
    """``exc`` as one short clause: pymongo's first clause, without what pymongo appends (topology
    description, timeouts, the server's full reply), at most 300 characters; a server's refusal
    (``OperationFailure``) is named by its ``codeName`` and code, e.g. ``BadValue (2): …``.
    ``secrets`` (a URI, a password) are scrubbed from the whole text before it is cut: a cut
    first could keep a secret's first part, which no scrub then recognises."""
    text = " ".join(_APPENDED.split(scrub(str(exc), secrets), maxsplit=1)[0].split()) or type(exc).__name__
    code = getattr(exc, "code", None)
    if isinstance(exc, OperationFailure) and code is not None and f"code {code}" not in text:
        name = (exc.details or {}).get("codeName")
        text = f"{name} ({code}): {text}" if isinstance(name, str) else f"code {code}: {text}"
    return text if len(text) <= _CAUSE_CHARS else text[: _CAUSE_CHARS - 1] + "…"


def call_with_retry(operation: Callable[[int], T], policy: RetryPolicy, what: str) -> T:
    """Run ``operation(attempt)`` (1-based) until it succeeds; network errors are retried (counted
    as ``mongo`` retries), others translated: ``ConnectionRejected`` or ``StoreUnavailable``."""
    try:
        for attempt in policy.attempts_of("mongo", retry_if=_retryable):
            with attempt:
                return operation(attempt.retry_state.attempt_number)
    except (ValueError, RuntimeError, OSError) as exc:  # a MONGODB-OIDC token fetch, as it reconnects
        refused = oidc_token_refused(exc)
        if refused is not None:
            raise refused from None
        raise
    except PyMongoError as exc:
        rejected = rejected_login(exc) or refused_configuration(exc)
        if rejected is not None:
            raise rejected from exc
        cause = driver_cause(exc)
        if not is_retryable(exc):
            raise StoreUnavailable(f"{what} failed: {cause}") from exc
        if isinstance(exc, WriteConcernError):
            raise StoreUnavailable(
                f"{what}: MongoDB did not confirm the write after {attempts_made(policy.attempts)}: {cause}"
            ) from exc
        raise StoreUnavailable(
            f"{what}: MongoDB unreachable after {attempts_made(policy.attempts)}: {cause}"
        ) from exc
    raise AssertionError("unreachable: the attempts return or raise")  # pragma: no cover


def _retryable(exc: BaseException) -> bool:
    return (
        isinstance(exc, PyMongoError)
        and rejected_login(exc) is None
        and not isinstance(exc, ConfigurationError)
        and is_retryable(exc)
    )
