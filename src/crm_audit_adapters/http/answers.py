"""The answer bodies of the HTTP routes: one type per answer, and the one function that builds each.

The document (``http/openapi.py``) is generated from these types (``http/schemas.py``), and mypy
checks each builder against its type: a route cannot answer a field its document does not list.
The full status and the verify report are the core's own documents (``StatusDocument``,
``VerifyReportDocument``): the CLI's ``--json`` and the Celery results answer the same shapes.

    route                                         answer (200, trigger 202)
    POST /private/activity_logs/migrate           BatchAnswer
    POST …/crm_migration/trigger|cancel           StatusDocument
    GET  …/crm_migration/status                   StatusDocument
    POST …/crm_migration/rollback                 RollbackAnswer
    POST …/crm_migration/verify                   VerifyReportDocument
    GET  /iag/v1/crm_migration/status             PublicStatusAnswer
    every error                                   ErrorAnswer
"""

from __future__ import annotations

from typing import NotRequired, TypedDict

from crm_audit_transform.domain import BatchResult, WriteStatus
from crm_audit_transform.jobs import NOT_STARTED, JobStatusName, status_name
from crm_audit_transform.usecases import MigrationStatus, RollbackResult
from crm_audit_transform.usecases.status import IsoTime, iso_time

__all__ = [
    "BatchAnswer",
    "ErrorAnswer",
    "ErrorBody",
    "PublicStatusAnswer",
    "RollbackAnswer",
    "WriteResultAnswer",
    "batch_answer",
    "error_answer",
    "public_status_answer",
    "rollback_answer",
]


class WriteResultAnswer(TypedDict):
    """What became of one record, in the order posted; ``reason`` names a skip or a failure."""

    external_id: str
    status: WriteStatus
    reason: str | None


class BatchAnswer(TypedDict):
    """What MigrateBatch did: counts, and one result per record."""

    inserted: int
    skipped: int
    failed: int
    results: list[WriteResultAnswer]


class RollbackAnswer(TypedDict):
    """How many of the account's migrated logs were deleted."""

    deleted: int


class PublicStatusAnswer(TypedDict):
    """The web indicator's view: no accuracy, no counts, nothing internal (docs/http.md)."""

    status: JobStatusName
    progress_pct: NotRequired[float]
    updated_at: NotRequired[IsoTime | None]
    finished_at: NotRequired[IsoTime | None]


class ErrorBody(TypedDict):
    """A stable ``code`` (docs/http.md) and a message for people."""

    code: str
    message: str


class ErrorAnswer(TypedDict):
    """Every failure: one envelope, never a stack trace."""

    error: ErrorBody


def batch_answer(result: BatchResult) -> BatchAnswer:
    """The migrate route's answer."""
    return {
        "inserted": result.inserted,
        "skipped": result.skipped,
        "failed": result.failed,
        "results": [
            {"external_id": r.external_id, "status": r.status, "reason": r.reason or None}
            for r in result.results
        ],
    }


def rollback_answer(result: RollbackResult) -> RollbackAnswer:
    """The rollback route's answer."""
    return {"deleted": result.deleted}


def public_status_answer(status: MigrationStatus) -> PublicStatusAnswer:
    """The tenant route's answer: ``status`` alone while not started, else its progress and times.

    No start time: a job records when it was triggered (``created_at``), not when a runner started it.
    """
    if status.status == NOT_STARTED:
        return {"status": NOT_STARTED}
    return {
        "status": status_name(status.status),
        "progress_pct": status.progress_pct,
        "updated_at": iso_time(status.updated_at),
        "finished_at": iso_time(status.finished_at),
    }


def error_answer(code: str, message: str) -> ErrorAnswer:
    """The envelope of every error answer."""
    return {"error": {"code": code, "message": message}}
