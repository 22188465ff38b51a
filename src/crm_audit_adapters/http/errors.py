"""One error envelope for every failure: ``{"error": {"code", "message"}}``, never a stack trace.

A 503 answers a dependency that is down: the client is told to retry later, and the server log
says why, at WARNING, through the ``crm_audit_adapters.http`` logger. The service's own configuration
being wrong (a ``ConfigError``: a setting, a wrong database password, a package missing) is a 500
with the error's code, logged at ERROR: no retry mends it until the deployment changes. Messages are
secret-free at their source (``redaction.scrub``), and the app factory adds a ``ScrubbingFilter``
to that logger as well. An unexpected error (500) is logged with its frames and types, not its message.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Final

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crm_audit_transform.errors import (
    BatchTooLarge,
    ConfigError,
    CrmAuditError,
    DirectoryRefused,
    GuardError,
    IndexesMissing,
    JobUnreadable,
    LeaseHeld,
    MappingChanged,
    RestoreRefused,
    RollbackHoldLost,
    SourceChanged,
    Unavailable,
    UnknownTenant,
    VerifyOptionInvalid,
)
from crm_audit_transform.raised import raised_chain

from .answers import error_answer
from .auth import BASIC_CHALLENGE

log = logging.getLogger("crm_audit_adapters.http")

STATUSES: Final[Mapping[str, int]] = {
    # The caller's request: mended by another request.
    "USAGE": 400,
    "BATCH_TOO_LARGE": 400,
    "INVALID_SAMPLE": 400,
    "INVALID_SEED": 400,
    "FLAG_DISABLED": 403,
    "JOB_NOT_FOUND": 404,
    "AUDIT_NOT_FOUND": 404,
    # The account's job or the service's state: mended once that changes (or by a choice).
    "GUARD": 409,
    "JOB_ALREADY_RUNNING": 409,
    "ALREADY_COMPLETED": 409,
    "RESUME_OR_FRESH": 409,
    "TENANT_MISMATCH": 409,
    "JOB_NOT_RUNNABLE": 409,
    "LEASE_HELD": 409,
    "MAPPING_CHANGED": 409,
    "OUTPUT_LOCKED": 409,
    "HALTED": 409,
    "CANCELLED": 409,
    "DECLINED": 409,
    # Understood, but what it names cannot be processed as it is; no retry mends it.
    "contacts_not_migrated": 422,
    "TENANT_UNBOUND": 422,
    "UNKNOWN_TENANT": 422,
    "BAD_INPUT": 422,
    "RESTORE_REFUSED": 422,
    # Not an error over HTTP: verify's report is the answer, ``clean`` false.
    "NOT_VERIFIED": 200,
    # The service's own fault: mended when the deployment (or its data) changes.
    "INTERNAL": 500,
    "CONFIG_INVALID": 500,
    "CONNECTION_REJECTED": 500,
    "DEPENDENCY_MISSING": 500,
    "DIRECTORY_REFUSED": 500,
    "JOB_UNREADABLE": 500,
    "INDEX_CONFLICT": 500,
    "FILE_ERROR": 500,
    # Down or stopping: retry later.
    "INDEXES_MISSING": 503,
    "UNAVAILABLE": 503,
    "DEPENDENCY_UNAVAILABLE": 503,
    "SOURCE_UNAVAILABLE": 503,
    "STORE_UNAVAILABLE": 503,
    "DIRECTORY_UNAVAILABLE": 503,
    "BROKER_UNAVAILABLE": 503,
    "WORKER_LOST": 503,
    "INTERRUPTED": 503,
}
"""The HTTP status of each error ``code``: every code of ``crm_audit_transform.errors``, of the
adapters' errors and of the runner's table (``cli.exit_codes.CODES``), by the runner's families
(refused: 4xx; configuration: 500; unavailable: 503; ``BAD_INPUT``: 422). The codes only the runner
gives (``HALTED``, ``DECLINED``, ``USAGE``…) are here too, so the map stays total: an error whose code it
lacked was a 500 (``RESTORE_REFUSED`` was). A test checks that every code is here and that every
library error is answered with its code's status."""


class ApiError(Exception):
    """An answer refused by the HTTP layer itself; ``challenge``, the ``WWW-Authenticate`` value a
    401 carries (RFC 7235 §3.1: every 401 sends one; ``auth.BASIC_CHALLENGE`` when not given), and
    another status when given (RFC 6750 §3: a 400 ``invalid_request`` on the Bearer route)."""

    def __init__(self, status: int, code: str, message: str, *, challenge: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.challenge = challenge


def envelope(status: int, code: str, message: str, *, challenge: str | None = None) -> JSONResponse:
    if status == 401:
        challenge = challenge or BASIC_CHALLENGE
    headers = None if challenge is None else {"WWW-Authenticate": challenge}
    return JSONResponse(error_answer(code, message), status_code=status, headers=headers)


def _cause(exc: Exception) -> str:
    return f"{getattr(exc, 'code', type(exc).__name__)}: {' '.join(str(exc).split())}"


async def on_api_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return envelope(exc.status, exc.code, exc.message, challenge=exc.challenge)


def _status(code: str) -> int:
    """``code``'s status in ``STATUSES``, the one table of them; 500 for a code it lacks."""
    return STATUSES.get(code, 500)


async def on_domain_error(request: Request, exc: Exception) -> JSONResponse:
    """The answer to a library error: each status is its answered code's in ``STATUSES`` (a guard's
    ``http_status`` for a code of the service's own the table lacks)."""
    if isinstance(exc, GuardError | BatchTooLarge | VerifyOptionInvalid):
        return envelope(STATUSES.get(exc.code, exc.http_status), exc.code, str(exc))
    if isinstance(exc, IndexesMissing):
        status = _status(exc.code)
        log.error("%d for %s %s: %s", status, request.method, request.url.path, _cause(exc))
        return envelope(status, exc.code, str(exc))
    if isinstance(exc, RollbackHoldLost):
        # This rollback's hold was taken over: its count is in; who ends the job, no holder's token.
        then = "another rollback holds it now and ends it" if exc.taken else "roll back again to end it"
        return envelope(
            _status("LEASE_HELD"),
            "LEASE_HELD",
            f"this rollback lost its hold on the account's job (its deleted logs are counted): {then}",
        )
    if isinstance(exc, LeaseHeld):
        # The holder's name stays out of the answer; whether it is a rollback or a runner does not.
        holder = "a rollback" if exc.by_rollback else "a runner"
        return envelope(
            _status("LEASE_HELD"), "LEASE_HELD", f"{holder} holds the account's job; retry once it is done"
        )
    if isinstance(exc, UnknownTenant):
        # The account's binding names no CRM tenant schema: retrying cannot help (no 503), and the
        # message names the schema only, which holds no secret.
        return envelope(_status(exc.code), exc.code, str(exc))
    if isinstance(exc, JobUnreadable):
        # A stored job document no reader can use: the service's own data, never the caller's fault,
        # and retrying cannot help until it is fixed. The message names the job and what is wrong.
        status = _status(exc.code)
        log.error("%d for %s %s: %s", status, request.method, request.url.path, _cause(exc))
        return envelope(status, exc.code, str(exc))
    if isinstance(exc, DirectoryRefused):
        status = _status(exc.code)
        log.error("%d for %s %s: misconfigured: %s", status, request.method, request.url.path, _cause(exc))
        # Our credentials are wrong: a server-side configuration error, never the caller's.
        return envelope(status, exc.code, "the user directory refused the service's credentials")
    if isinstance(exc, Unavailable):
        status = _status("DEPENDENCY_UNAVAILABLE")
        log.warning("%d for %s %s: %s", status, request.method, request.url.path, _cause(exc))
        return envelope(status, "DEPENDENCY_UNAVAILABLE", "a dependency is unavailable; retry later")
    if isinstance(exc, MappingChanged):
        # The job was triggered under another mapping: retrying cannot help, and the service is not
        # down. The message names the two marks (digests) only.
        status = _status("MAPPING_CHANGED")
        log.error("%d for %s %s: %s", status, request.method, request.url.path, _cause(exc))
        return envelope(status, "MAPPING_CHANGED", str(exc))
    if isinstance(exc, ConfigError):
        # The service's own configuration (ConfigError, CONFIG_INVALID), a server refusing it
        # (ConnectionRejected) or an optional package it needs (DependencyMissing): each stays wrong
        # until the deployment changes, so no "retry later" 503 and no caller's 4xx. The message
        # may name the server's files, hosts or settings: the log says it, the answer its code.
        status = _status(exc.code)
        log.error("%d for %s %s: misconfigured: %s", status, request.method, request.url.path, _cause(exc))
        return envelope(status, exc.code, "the service is misconfigured; the server log says what")
    if isinstance(exc, RestoreRefused):
        # One log past the store's limit (verify's repair counts it and never raises it): the
        # store's words may quote the document, so the log says them, the answer names the log.
        status = _status(exc.code)
        log.warning("%d for %s %s: %s", status, request.method, request.url.path, _cause(exc))
        return envelope(
            status,
            exc.code,
            f"the CDP refused to set the log {exc.external_id} back; the server log says why",
        )
    if _bad_input(exc):
        return _bad_input_answer(request, exc)
    return _unhandled(request, exc)


def _unhandled(request: Request, exc: Exception) -> JSONResponse:
    """The status of the error's own ``code`` (``STATUSES``; ``INTERNAL``, 500, without one) for a
    library error no branch above answers (``IndexConflict``, ``OutputLocked``, an
    ``AuditedChangesError``, one added later): its message is not known to be fit for a caller, so
    the answer gives its code alone. A 500 is logged (ERROR) as a bug is, by its type and frames;
    another status at WARNING, the same way. A code missing from ``STATUSES`` is a 500."""
    code = getattr(exc, "code", None)
    code = code if isinstance(code, str) else "INTERNAL"
    status = _status(code)
    if status < 400:  # no error status (``NOT_VERIFIED``): an error raised with it is still a bug
        status = 500
    level = logging.ERROR if status >= 500 else logging.WARNING
    log.log(
        level,
        "%d for %s %s: %s",
        status,
        request.method,
        request.url.path,
        raised_chain(exc, source_lines=True),
    )
    message = "internal error" if status >= 500 else f"refused ({code}); the server log says why"
    return envelope(status, code, message)


def _bad_input(exc: Exception) -> bool:
    """An error of the runner's ``BAD_INPUT`` (exit 7, ``cli.exit_codes``): one whose code it is
    (``SourceChanged``), or the files adapter's ``FileFormatError`` (a source file's bad line)."""
    if getattr(exc, "code", None) == "BAD_INPUT":
        return True
    from ..files.errors import FileFormatError  # the files adapter, loaded only for an error

    return isinstance(exc, FileFormatError)


def _bad_input_answer(request: Request, exc: Exception) -> JSONResponse:
    """422 ``BAD_INPUT``: the audits source the service reads cannot be read as it is (a malformed
    line, or a source changed under its job), which no retry and no other request body mends.

    ``SourceChanged`` says what to do (a fresh job) in a message of ids and counts alone. Any other
    names a file of the server, the line (the audit id when it could be read) and the fault, never a
    value of the row (``files.errors.shown``: the logger's filter scrubs configured secrets only, not
    a password inside an audit): the server log says it (WARNING), the answer only that the source
    is unreadable. Not 400 ``BAD_REQUEST`` with the error's text: the caller's request is not at
    fault, and that text would hand it the server's file path and the row's values."""
    status = _status("BAD_INPUT")
    log.warning("%d for %s %s: %s", status, request.method, request.url.path, _cause(exc))
    if isinstance(exc, SourceChanged):
        return envelope(status, "BAD_INPUT", str(exc))
    return envelope(
        status, "BAD_INPUT", "the audits source cannot be read as it is; the server log says where"
    )


async def on_http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 413: "PAYLOAD_TOO_LARGE"}.get(
        exc.status_code, "HTTP_ERROR"
    )
    return envelope(exc.status_code, code, str(exc.detail))


async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    """500 ``INTERNAL``, logged (ERROR) with the error's frames and types, and those of the errors it
    came from, never their messages (``crm_audit_transform.raised.raised_chain``): a bug's message
    may quote what it met, a value of a row, which the logger's filter does not know to scrub."""
    log.error("500 for %s %s: %s", request.method, request.url.path, raised_chain(exc, source_lines=True))
    return envelope(500, "INTERNAL", "internal error")


class AnswerUnexpected:
    """ASGI middleware inside Starlette's ``ServerErrorMiddleware``: an error no handler answered is
    answered here (``on_unexpected``) and ends here. ``ServerErrorMiddleware`` answers it too but
    then raises it again for the server to log, and uvicorn logs it whole ("Exception in ASGI
    application", the message included), which the app's own log line leaves out: a bug's message
    may quote a row's value. An error after the answer began is logged the same way, the answer
    left unfinished (the server closes the connection)."""

    __slots__ = ("app",)

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as exc:
            response = await on_unexpected(Request(scope), exc)
            if not started:
                await response(scope, receive, send)


HANDLERS = {
    ApiError: on_api_error,
    CrmAuditError: on_domain_error,
    HTTPException: on_http_error,
    Exception: on_unexpected,
}
"""Starlette's handlers by error; ``Exception``'s is ``ServerErrorMiddleware``'s, which
``AnswerUnexpected`` leaves only errors of the middleware outside it to."""
