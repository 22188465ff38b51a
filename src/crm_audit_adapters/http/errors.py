"""One error envelope for every failure: ``{"error": {"code", "message"}}``, never a stack trace."""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from crm_audit_transform.errors import (
    BatchTooLarge,
    CrmAuditError,
    DirectoryRefused,
    GuardError,
    IndexesMissing,
    Unavailable,
)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def envelope(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"error": {"code": code, "message": message, **extra}}
    headers = {"WWW-Authenticate": 'Basic realm="crm-audit"'} if status == 401 else None
    return JSONResponse(body, status_code=status, headers=headers)


async def on_api_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return envelope(exc.status, exc.code, exc.message)


async def on_domain_error(_request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, GuardError | BatchTooLarge):
        return envelope(exc.http_status, exc.code, str(exc))
    if isinstance(exc, IndexesMissing):
        return envelope(503, exc.code, str(exc))
    if isinstance(exc, DirectoryRefused):
        # Our credentials are wrong: a server-side configuration error, never the caller's.
        return envelope(500, exc.code, "the user directory refused the service's credentials")
    if isinstance(exc, Unavailable):
        return envelope(503, "DEPENDENCY_UNAVAILABLE", "a dependency is unavailable; retry later")
    return envelope(400, "BAD_REQUEST", str(exc).splitlines()[0])


async def on_http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 413: "PAYLOAD_TOO_LARGE"}.get(
        exc.status_code, "HTTP_ERROR"
    )
    return envelope(exc.status_code, code, str(exc.detail))


async def on_unexpected(_request: Request, _exc: Exception) -> JSONResponse:
    return envelope(500, "INTERNAL", "internal error")


HANDLERS = {
    ApiError: on_api_error,
    CrmAuditError: on_domain_error,
    HTTPException: on_http_error,
    Exception: on_unexpected,
}
