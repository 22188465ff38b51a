"""What every read of an audits file shares (``audit_source``, ``audit_ranges``): the id order it
must keep (``IdOrder``, ``AuditOrderError``, ``ascending``), what a page reads of a row (``Identified``,
``Reader``: an ``AuditRow`` or its ``ScopeKeys``), and the cutoff test (``on_or_after``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Generator
from typing import Protocol, TypeVar

from crm_audit_transform.domain import UnreadableTime

from .audits import FileFormat
from .errors import FileFormatError
from .lines import LineWindow, PathLike, SetAside

__all__ = ["AuditOrderError", "IdOrder", "Identified", "Reader", "Row", "ascending", "on_or_after"]


class AuditOrderError(FileFormatError):
    """An audit id not greater than the one before it: the export is not ordered by id, or repeats one."""


class IdOrder:
    """The last audit id one read of the file has met, in a row or in a line that failed with its id."""

    __slots__ = ("_path", "previous")

    def __init__(self, path: PathLike) -> None:
        self._path = path
        self.previous: int | None = None

    def admits(self, line: int, audit_id: int, *, repeats: bool) -> bool:
        """True for an id past the last one (now the last), False for a repeat when ``repeats``.

        Raises ``AuditOrderError`` naming ``line`` for an id below the last one, or a repeat
        without ``repeats``: the keyset cursor would skip or repeat rows.
        """
        previous = self.previous
        if previous is not None and audit_id <= previous:
            if audit_id == previous and repeats:
                return False
            what = "repeats" if audit_id == previous else "comes after"
            raise AuditOrderError(
                self._path,
                line,
                f"audit id {audit_id} {what} id {previous}: the export must list each id once, in "
                "ascending order (ORDER BY id)",
                audit_id=audit_id,
            )
        self.previous = audit_id
        return True


class Identified(Protocol):
    """What a page reads of a row: an ``AuditRow`` or its ``ScopeKeys``."""

    @property
    def id(self) -> int: ...

    @property
    def auditable_type(self) -> str: ...

    @property
    def created_at(self) -> dt.datetime | UnreadableTime | None: ...


Row = TypeVar("Row", bound=Identified)
Read = TypeVar("Read", bound=Identified, covariant=True)


class Reader(Protocol[Read]):
    """``numbered_audit_rows`` or ``numbered_scope_keys``."""

    def __call__(
        self,
        path: PathLike,
        tenant: str | None = None,
        *,
        file_format: FileFormat | None = None,
        jsonb_changes: bool = False,
        on_error: Callable[[FileFormatError], None] | None = None,
        max_record_bytes: int = ...,
        window: LineWindow | None = None,
    ) -> Generator[tuple[int, Read | SetAside], None, None]: ...


def on_or_after(row: Identified, cutoff: dt.datetime | None) -> bool:
    # A NULL or unreadable created_at is in every range, as the PostgreSQL adapter's query keeps it.
    return cutoff is None or not isinstance(row.created_at, dt.datetime) or row.created_at >= cutoff


def ascending(
    order: IdOrder,
    numbered: Generator[tuple[int, Row | SetAside], None, None],
    on_repeat: Callable[[int, int, Row], None] | None,
) -> Generator[Row | SetAside, None, None]:
    count = 0
    repeats = on_repeat is not None
    try:
        for number, row in numbered:
            if row is SetAside.LINE:
                yield row
                continue
            count += 1
            if not order.admits(number, row.id, repeats=repeats):
                assert on_repeat is not None  # admits returns False only when repeats are allowed
                on_repeat(number, count, row)
                yield SetAside.LINE
                continue
            yield row
    finally:
        numbered.close()
