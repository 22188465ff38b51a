"""Exit codes of ``crm-audit-migrate`` (docs/runner.md lists them for ops) and the error → code map.

Every error ends as one line on stderr, ``error: <what happened>``, never a traceback (``--debug``
shows one).
"""

from __future__ import annotations

from typing import Final

from crm_audit_transform.errors import (
    ConfigError,
    CrmAuditError,
    DirectoryRefused,
    GuardError,
    IndexConflict,
    IndexesMissing,
    LeaseHeld,
    Unavailable,
    UnknownTenant,
)

from ..files import FileFormatError

OK: Final = 0
"""Done: the command did what it was asked (a run completed, a status was shown...)."""
INTERNAL: Final = 1
"""An unexpected error: a bug; rerun with ``--debug`` for the traceback."""
USAGE: Final = 2
"""Bad command line (click's own code)."""
CONFIG: Final = 3
"""Configuration missing or invalid: settings file, environment, mapping configuration; migration
035's indexes not in place (``INDEXES_MISSING``); USMAN refusing our credentials (``DIRECTORY_REFUSED``).
Nothing was written."""
REFUSED: Final = 4
"""A guard refused (flag off, coverage too low, job running or completed, no job, lease held,
unknown tenant, tenant not the account's bound one or unbound, resume-or-fresh needed, index
conflict) or the thing asked about does not exist."""
HALTED: Final = 5
"""The run halted: at a check point of the halt rule the failure rate, or the share of actors degraded
by a USMAN outage, went over its threshold (cursor kept)."""
UNAVAILABLE: Final = 6
"""A dependency is down (CRM database, CDP database, USMAN): retrying later is safe."""
BAD_INPUT: Final = 7
"""An input file could not be read (dry-run): the message names the file and line."""
CANCELLED: Final = 8
"""The job was cancelled while this run worked on it; the run stopped at its next batch."""
INTERRUPTED: Final = 130
"""Stopped by Ctrl-C after finishing the batch in flight; progress is saved — ``run`` resumes."""


def exit_code_for(error: BaseException) -> int:
    if isinstance(error, ConfigError | IndexesMissing | DirectoryRefused):
        return CONFIG
    if isinstance(error, GuardError | LeaseHeld | UnknownTenant | IndexConflict):
        return REFUSED
    if isinstance(error, Unavailable):
        return UNAVAILABLE
    if isinstance(error, FileFormatError):
        return BAD_INPUT
    if isinstance(error, CrmAuditError):
        return REFUSED
    return INTERNAL


def one_line(error: BaseException) -> str:
    """``CODE: message`` on one line (multi-line messages, like a ConfigError's, are joined)."""
    text = " ".join(part.strip() for part in str(error).splitlines() if part.strip()) or type(error).__name__
    code = getattr(error, "code", None)
    return f"{code}: {text}" if isinstance(code, str) else text
