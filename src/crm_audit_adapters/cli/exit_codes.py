"""Exit codes of ``crm-audit-migrate`` and the error → ``CODE`` → exit code map.

Every failure ends as one line on stderr, ``error: CODE: message``, never a traceback (``--debug``
shows one). ``CODES`` is the documented table (docs/runner.md prints it row for row; a test keeps
the two equal): each error ``CODE`` and the exit code it ends with. An error class added later gets
the exit code of its family (a ``GuardError`` refuses, an ``Unavailable`` is retryable, a
``ConfigError`` is configuration) even before its row is written.
"""

from __future__ import annotations

from typing import Final

import click

from crm_audit_transform.errors import (
    ConfigError,
    CrmAuditError,
    DirectoryRefused,
    GuardError,
    IndexConflict,
    IndexesMissing,
    JobUnreadable,
    LeaseHeld,
    Unavailable,
    UnknownTenant,
)
from crm_audit_transform.raised import raised_at

from .standard_streams import STDERR, STDOUT

OK: Final = 0
"""Done: the command did what it was asked (a run completed, a status was shown...)."""
INTERNAL: Final = 1
"""An unexpected error: a bug, named by its type and where it was raised, never its message (which
may quote a row's value); rerun with ``--debug`` for the traceback."""
USAGE: Final = 2
"""Bad command line: an unknown option, a missing or empty value, or one out of its range (verify's
``--sample`` and ``--seed``: the library's ``INVALID_SAMPLE`` / ``INVALID_SEED``)."""
CONFIG: Final = 3
"""Configuration missing or invalid (settings file, environment, mapping file), or refused by a
server (wrong password, unknown database, malformed DSN or URI, USMAN refusing our credentials:
``DIRECTORY_REFUSED``), an optional package missing, or migration 035's indexes not in place
(``INDEXES_MISSING``), or a stored job document that cannot be read (``JOB_UNREADABLE``). Never
retried: it stays wrong until the configuration (or that document) changes; nothing was written."""
REFUSED: Final = 4
"""A guard refused (flag off, coverage too low, job running or completed, no job, lease held,
another process writing the dry run's ``--out``, unknown tenant, tenant not the account's bound one
or unbound, resume-or-fresh needed, index conflict) or the thing asked about does not exist."""
HALTED: Final = 5
"""The run halted: at a check point of the halt rule the failure rate, or the share of actors degraded
by a USMAN outage, went over its threshold (cursor kept)."""
UNAVAILABLE: Final = 6
"""A dependency is down (CRM database, CDP database, USMAN, the task broker), or a ``--workers``
process died: retrying later is safe."""
BAD_INPUT: Final = 7
"""A file could not be read or written: the message names the file (and the line); or the CRM database
refused a query in a way no retry changes (``SourceQueryFailed``: a data exception, a column gone);
or MongoDB refused to set a drifted log back (``RestoreRefused``: the document past its limit)."""
CANCELLED: Final = 8
"""The job was cancelled while this run worked on it; the run stopped at its next batch."""
DECLINED: Final = 9
"""The operator declined a confirmation (or stdin gave no answer): nothing was changed."""
NOT_VERIFIED: Final = 10
"""verify found the account not proven complete: something missing, unexpected, stray, duplicate,
drifted, past a watermark or overlapping, the job's counts disagree, or rows are still ``pending``
past the cursor of a job not completed (not lost: its run has not reached them; the report says what)."""
INTERRUPTED: Final = 130
"""Stopped by Ctrl-C. Once: after the batch in flight, progress saved. Twice: at once, still safe
(the next run replays at most one batch). ``run`` resumes either way."""

CODES: Final[dict[str, int]] = {
    "INTERNAL": INTERNAL,
    "USAGE": USAGE,
    "INVALID_SAMPLE": USAGE,
    "INVALID_SEED": USAGE,
    "CONFIG_INVALID": CONFIG,
    "CONNECTION_REJECTED": CONFIG,
    "DEPENDENCY_MISSING": CONFIG,
    "INDEXES_MISSING": CONFIG,
    "DIRECTORY_REFUSED": CONFIG,
    "JOB_UNREADABLE": CONFIG,
    "GUARD": REFUSED,
    "FLAG_DISABLED": REFUSED,
    "contacts_not_migrated": REFUSED,
    "JOB_ALREADY_RUNNING": REFUSED,
    "ALREADY_COMPLETED": REFUSED,
    "JOB_NOT_FOUND": REFUSED,
    "RESUME_OR_FRESH": REFUSED,
    "TENANT_MISMATCH": REFUSED,
    "TENANT_UNBOUND": REFUSED,
    "JOB_NOT_RUNNABLE": REFUSED,
    "LEASE_HELD": REFUSED,
    "OUTPUT_LOCKED": REFUSED,
    "UNKNOWN_TENANT": REFUSED,
    "INDEX_CONFLICT": REFUSED,
    "AUDIT_NOT_FOUND": REFUSED,
    "BATCH_TOO_LARGE": REFUSED,
    "HALTED": HALTED,
    "UNAVAILABLE": UNAVAILABLE,
    "SOURCE_UNAVAILABLE": UNAVAILABLE,
    "STORE_UNAVAILABLE": UNAVAILABLE,
    "DIRECTORY_UNAVAILABLE": UNAVAILABLE,
    "BROKER_UNAVAILABLE": UNAVAILABLE,
    "WORKER_LOST": UNAVAILABLE,
    "BAD_INPUT": BAD_INPUT,
    "FILE_ERROR": BAD_INPUT,
    "RESTORE_REFUSED": BAD_INPUT,
    "CANCELLED": CANCELLED,
    "DECLINED": DECLINED,
    "NOT_VERIFIED": NOT_VERIFIED,
    "INTERRUPTED": INTERRUPTED,
}
"""Every error ``CODE`` the runner prints, with its exit code: the code of every error class (the
adapters' too; a test walks them), also those no command line raises (``BROKER_UNAVAILABLE``, a
Celery task's re-send the broker did not take: the worker logs it), so none prints a code without a
row."""


_STREAMS: Final = {STDOUT: "stdout", STDERR: "stderr"}
"""The ``filename`` an ``OSError`` from writing a standard stream carries, and the stream's name."""


class CliError(Exception):
    """An error the CLI itself raises: ``code`` is one of ``CODES``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def error_code(error: BaseException) -> str:
    """The ``CODE`` printed for ``error``: its own ``code``, else its family's."""
    code = getattr(error, "code", None)
    if isinstance(code, str) and isinstance(error, CrmAuditError | CliError):
        return code
    from ..files.errors import FileFormatError  # the files adapter, loaded only for an error

    if isinstance(error, FileFormatError):
        return "BAD_INPUT"
    if isinstance(error, click.FileError | OSError):
        return "FILE_ERROR"  # an --out that cannot be written, a pipe that cannot be appended to...
    if isinstance(error, click.UsageError):
        return "USAGE"
    if isinstance(error, CrmAuditError):
        return "REFUSED"
    return "INTERNAL"


def exit_code_for(error: BaseException) -> int:
    if isinstance(error, ConfigError | IndexesMissing | DirectoryRefused | JobUnreadable):
        return CONFIG
    if isinstance(error, GuardError | LeaseHeld | UnknownTenant | IndexConflict):
        return REFUSED
    if isinstance(error, Unavailable):
        return UNAVAILABLE
    code = error_code(error)
    if code in CODES:
        return CODES[code]
    return REFUSED if isinstance(error, CrmAuditError) else INTERNAL


def one_line(error: BaseException) -> str:
    """``CODE: message`` on one line (multi-line messages, like a ConfigError's, are joined with "; ").

    The message is the error's own for the errors written to be read: this library's
    (``CrmAuditError``), the runner's (``CliError``) and click's. An ``OSError`` that carries the
    operating system's errno and words for it (a full disk, a closed pipe, a refused connection)
    is an environment fault ops act on: those words, and the path it names. Anything else is a bug
    whose message may quote what it met, a value of a row, that no scrubbing of secrets removes:
    it is named by its type and where it was raised
    (``INTERNAL: unexpected KeyError in lookup (rules.py:42); rerun with --debug for the
    traceback``, ``crm_audit_transform.raised.raised_at``), and ``--debug`` prints the traceback.

    Notes added on the way out (``add_note``: what a dry run wrote before the error) follow, each
    after "; ".
    """
    if isinstance(error, OSError) and error.filename in _STREAMS and error.strerror:
        # A write to stdout or stderr that failed (``standard_streams``): ">/dev/full", ">&-".
        text = f"cannot write to {_STREAMS[error.filename]}: {error.strerror}"
    elif isinstance(error, OSError) and error.filename is not None and error.strerror:
        text = f"cannot use {error.filename}: {error.strerror}"
    elif isinstance(error, OSError) and error.strerror:
        text = error.strerror if error.errno is None else f"[Errno {error.errno}] {error.strerror}"
    elif not isinstance(error, CrmAuditError | CliError | click.ClickException):
        text = f"unexpected {raised_at(error)}; rerun with --debug for the traceback"
    else:
        parts = [part.strip() for part in str(error).splitlines() if part.strip()]
        if isinstance(error, ConfigError) and len(parts) > 1:
            text = f"{parts[0]} " + "; ".join(parts[1:])
        else:
            text = " ".join(parts) or type(error).__name__
    notes = [" ".join(note.split()) for note in getattr(error, "__notes__", ()) if note.strip()]
    return f"{error_code(error)}: " + "; ".join([text, *notes])
