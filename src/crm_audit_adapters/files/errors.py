"""The one error of the files adapters: a line or record that cannot become a value."""

from __future__ import annotations

import os

from crm_audit_transform.errors import CrmAuditError

__all__ = ["FileFormatError"]


class FileFormatError(CrmAuditError):
    """A line of an input file is malformed; ``line`` is 1-based (a CSV record's first line).

    ``audit_id`` is set when the line is an audit row whose id could still be read, so a caller
    can report that record as failed (``invalid_audit_row``) instead of losing track of it.
    """

    def __init__(
        self, path: str | os.PathLike[str], line: int, message: str, *, audit_id: int | None = None
    ) -> None:
        super().__init__(f"{os.fspath(path)}, line {line}: {message}")
        self.path = os.fspath(path)
        self.line = line
        self.message = message
        self.audit_id = audit_id
