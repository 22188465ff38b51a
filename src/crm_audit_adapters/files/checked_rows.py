"""Audit rows of a file, with the rows the file itself disqualifies turned into outcomes.

* a repeated audit id: the first row is used, every repeat is ``Failed(duplicate_audit_id)``, so no
  repeat is dropped unseen;
* a line whose audit id could be read but that cannot become a row (a missing ``action``, an
  ``auditable_id`` spelled ``1_0``, …) is ``Failed(invalid_audit_row)`` with the file's message.

A line with no readable id cannot be tied to a row: its ``FileFormatError`` is raised.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from crm_audit_transform import reasons
from crm_audit_transform.domain import AuditRow, Failed, Outcome

from .errors import FileFormatError

__all__ = ["CheckedRows"]


class CheckedRows:
    """The audit rows of a file with repeats and unreadable-but-identified lines turned into outcomes."""

    __slots__ = ("_path", "outcomes")

    def __init__(self, path: Path) -> None:
        self._path = path
        self.outcomes: list[Outcome] = []
        """The outcomes not yet taken, in the order the file was read."""

    def take(self) -> list[Outcome]:
        """The outcomes added since the last ``take`` (``ports.RowsSetAside``), handed over and
        no longer held: a file of a million lines set aside holds one page's at a time."""
        new, self.outcomes = self.outcomes, []
        return new

    def on_error(self, error: FileFormatError) -> None:
        """A line that cannot become a row: its row's failure when its id is known, else the error."""
        if error.audit_id is None:
            raise error
        self.outcomes.append(Failed(error.audit_id, reasons.INVALID_AUDIT_ROW, str(error)))

    def repeat(self, number: int, audit_id: int) -> None:
        """Row ``number`` repeats the audit id of the row before it: its own failure, not processed.

        The detail says the id's first line is the one read, not that it is used: a first line of a
        type outside the run's scope is read and counts nothing, while this repeat still counts."""
        detail = (
            f"{self._path.name}: row {number} repeats audit id {audit_id}; an id's first line is the one read"
        )
        self.outcomes.append(Failed(audit_id, reasons.DUPLICATE_AUDIT_ID, detail))

    def repeat_line(self, error: FileFormatError) -> None:
        """A line that cannot become a row and repeats the audit id of the row or line before it: a
        repeat (the id's first line is the one read) whose own fault is named too. Raises ``error``
        without an id."""
        if error.audit_id is None:
            raise error
        detail = f"{error}; it repeats audit id {error.audit_id}, and an id's first line is the one read"
        self.outcomes.append(Failed(error.audit_id, reasons.DUPLICATE_AUDIT_ID, detail))

    def unique(self, rows: Iterable[AuditRow]) -> Iterator[AuditRow]:
        seen: set[int] = set()
        for number, row in enumerate(rows, 1):
            if row.id in seen:
                self.repeat(number, row.id)
                continue
            seen.add(row.id)
            yield row
