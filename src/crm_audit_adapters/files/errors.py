"""The files adapters' errors: a line or record that cannot become a value; a write that failed."""

from __future__ import annotations

import os

from crm_audit_transform.errors import CrmAuditError

__all__ = ["FileFormatError", "FileWriteError", "OutputLocked"]


class FileFormatError(CrmAuditError):
    """A line of an input file is malformed; ``line`` is 1-based (a CSV record's first line).

    ``audit_id`` is set when the line is an audit row whose id could still be read, so a caller
    can report that record as failed (``invalid_audit_row``) instead of losing track of it;
    ``auditable_type`` when its type could be read too (a file source does not count a line of a
    type outside the run's scope, as a database's query never reads such a row).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        line: int,
        message: str,
        *,
        audit_id: int | None = None,
        auditable_type: str | None = None,
    ) -> None:
        super().__init__(f"{os.fspath(path)}, line {line}: {message}")
        self.path = os.fspath(path)
        self.line = line
        self.message = message
        self.audit_id = audit_id
        self.auditable_type = auditable_type


class FileWriteError(CrmAuditError):
    """Writing to a local file or to stdout failed (disk full, a closed descriptor): ``FILE_ERROR``.

    Not ``StoreUnavailable``: that says a dependency is down and a retry may succeed, while a full
    disk or a bad ``--out`` needs the operator (docs/runner.md, exit codes). The message names the
    target (the path, or ``<stdout>``); the ``OSError`` is the ``__cause__``.
    """

    code = "FILE_ERROR"


class OutputLocked(CrmAuditError):
    """Another process is writing this log file (it holds the file's ``flock``): ``OUTPUT_LOCKED``.

    Two writers of one file would each read its keys once, then both append every log: the file
    would hold each log twice. The second is refused before it reads or writes anything; run the
    parts of an export one after the other with the same ``--out``, or give each its own file.
    """

    code = "OUTPUT_LOCKED"

    def __init__(self, path: str) -> None:
        super().__init__(
            f"{path} is being written by another process (another dry run with the same --out?):"
            " wait for it to finish, or name another file"
        )
        self.path = path


SHOWN_CHARS = 80
"""The longest text an error message quotes whole; longer is cut to its first 60 characters."""


def cut(text: str) -> str:
    """``text`` for an error message, cut short: one line of a file may hold megabytes in one field."""
    return text if len(text) <= SHOWN_CHARS else f"{text[:60]}… ({len(text)} characters)"


def shown(value: object) -> str:
    """``repr(value)`` for an error message, cut short (``cut``)."""
    return cut(repr(value))
