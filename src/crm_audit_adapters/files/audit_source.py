"""``ports.AuditSource`` over an audits export file, streamed in id order with flat memory.

The file is what ``read_audit_rows`` reads (the corpus's JSONL, or psql's CSV of an ``audits``
table) and must list one tenant's audits in ascending ``id``, each id once — what ``COPY (SELECT
* FROM audits ORDER BY id) TO … (FORMAT csv, HEADER)`` writes. The source answers the run loop's
keyset queries as the SQL would, but by reading forward:

* ``scope_bounds`` is one pass over the file (first and last in-scope id, oldest ``created_at``,
  count) that reads each line's id, type and time without building its row;
* ``scope_ends`` (``ports.AuditEnds``) gives only the first and last in-scope ids: the first read
  from the front, the last from the back of a JSONL file, so a dry run's job costs no pass;
* ``page(after_id=…)`` continues from where the previous page stopped when ``after_id`` is at or
  past the highest id it handed (a row, or a row set aside) — the run loop's case, so a whole run
  reads the file once more — and otherwise reopens the file and skips forward (a resume). A page
  ends early, after the row that brings its ``audited_changes`` and comments to ``page_bytes``
  (32 MiB), so a file of large rows is not held
  500 rows at a time, or after the line set aside that brings the outcomes held to
  ``HOLD_SET_ASIDE`` (with no row, perhaps: ``ports.RowsSetAside``); once the file was read to its
  end, a page after its last id is empty at once;
* ``audit_by_id`` reads forward until it reaches or passes the id.

An id smaller than the one before it stops the read with ``AuditOrderError`` naming the line
(``audit_order``: the order check every read of the file shares, the byte-range merge's too): the
keyset cursor (``id > last_audit_id``) would otherwise skip or repeat rows. Sorting is deliberately
not done here: an export ordered by the database costs nothing, while sorting an arbitrary file
within bounded memory would need an external merge sort on disk (``sort`` of GNU coreutils does
that for CSV keyed on its first column: ``sort -t, -k1,1n``, header aside).

Given a ``CheckedRows``, the file's own disqualified rows become outcomes instead of errors, each
reported once a read and only past the cursor the read started from (a page asked after the highest
id a read handed goes on with it; one asked from a cursor behind that, a resume, reads again from
the start: the run loop counts each once, ``usecases.run``): a repeated id (in an ordered file, the
row right after its first) is ``duplicate_audit_id`` and the first row is used; a line whose id can
be read but that cannot become a row is ``invalid_audit_row``. Such a line takes its place in the
id order as a row would: a smaller id stops the read, and the same id as the row or line before it
is a repeat, so an unreadable line is never one audit more than the file holds. The source hands
them to the run loop and to verify (``ports.RowsSetAside``: ``take_set_aside`` after each page),
which count them in id order with the page's rows, as failed rows of a database source. Without
one, both raise (``AuditOrderError``, ``FileFormatError``). A NULL ``created_at`` is in every
range, as the SQL's ``OR created_at IS NULL``.

At most one row and one open file are held at a time. Rows of other tenants (JSONL lines carry
their tenant) are skipped before the order check, so a multi-tenant JSONL file only needs each
tenant's ids ascending.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Generator, Sequence
from types import TracebackType
from typing import Any, Final, Self

from crm_audit_transform.domain import NO_TIME_KNOWN, AuditRow, Outcome, ScopeBounds

from .audit_order import AuditOrderError, IdOrder, Reader, Row, ascending, on_or_after
from .audits import (
    FileFormat,
    format_of,
    numbered_audit_rows,
    numbered_scope_keys,
    scope_keys_from_end,
)
from .checked_rows import CheckedRows
from .errors import FileChangedWhileRead, FileFormatError
from .file_marks import FileMark, GrowingMark, digest_mark
from .lines import LineWindow, PathLike, SetAside
from .psql_csv import DEFAULT_MAX_RECORD_BYTES
from .scope_keys import text_bytes

__all__ = ["AuditOrderError", "FileAuditSource"]


DEFAULT_PAGE_BYTES: Final = 32 * 1024 * 1024
"""A page ends after the row that brings its text to this many bytes (``FileAuditSource``)."""

HOLD_SET_ASIDE: Final = 1000
"""A page ends after the line set aside that brings the outcomes held (``CheckedRows``, not yet
taken) to this many, with the rows found so far, none perhaps (``FileAuditSource``): so a file of
lines that cannot become rows is read with flat memory, about 0.3 KB an outcome held."""


class FileAuditSource:
    """The audits of one tenant from an id-ordered JSONL or psql-CSV file (``ports.AuditSource``).

    ``tenant``: the schema the file was exported from (CSV) or whose lines are read (JSONL).
    ``file_format`` and ``jsonb_changes`` are as in ``read_audit_rows``. A malformed line raises
    ``FileFormatError``; an id out of order raises ``AuditOrderError``, and so does a repeated one
    unless ``checked`` collects it (see the module docstring). Use it as a context manager (or
    ``close()``) to release the open file early.
    """

    __slots__ = (
        "_checked",
        "_drained",
        "_end",
        "_file_format",
        "_growing",
        "_handed",
        "_jsonb_changes",
        "_mark",
        "_max_record_bytes",
        "_page_bytes",
        "_path",
        "_position",
        "_query",
        "_reader",
        "_reading",
        "_tenant",
        "_window",
    )

    def __init__(
        self,
        path: PathLike,
        tenant: str,
        *,
        file_format: FileFormat | None = None,
        jsonb_changes: bool = False,
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
        checked: CheckedRows | None = None,
        page_bytes: int = DEFAULT_PAGE_BYTES,
    ) -> None:
        if page_bytes <= 0:
            raise ValueError(f"page_bytes must be positive, got {page_bytes}")
        self._path = path
        self._page_bytes = page_bytes
        self._end: int | None = None  # the last id of the file, once a page read to its end
        self._checked = checked
        # The highest id the open reader handed over (a row found, an outcome set aside), and the
        # scope and cutoff it reads: a page after it goes on with that reader (see _page).
        self._handed = 0
        self._query: tuple[frozenset[str], dt.datetime] | None = None
        # The page that read the file to its end: the id the next one is asked after, its scope and
        # cutoff; that page has no row (it is asked after lines set aside at the file's end too).
        self._drained: tuple[int, frozenset[str], dt.datetime] | None = None
        self._tenant = tenant
        self._file_format: FileFormat | None = file_format
        self._jsonb_changes = jsonb_changes
        self._max_record_bytes = max_record_bytes
        # The open reader (rows, or a span source's keys: _reading says which) and its id of the
        # last row it yielded; a keys reader's window says where that row's line lies.
        self._reader: Generator[Any, None, None] | None = None
        self._reading: Reader[Any] | None = None
        self._window: LineWindow | None = None
        self._position: int | None = None
        # The file as this source last looked at it, checked at each open and at the end of a read
        # (file_marks): a file cut, rewritten or replaced between two reads of the run is refused.
        self._mark = FileMark(path)
        # The job's mark as this source checks it and grows it over rows appended (file_marks).
        self._growing = GrowingMark(path)
        # Fail now, not at the first page, on an unknown suffix; and take the run's first look.
        self._ordered_rows(report=False).close()

    def __repr__(self) -> str:
        return f"FileAuditSource({str(self._path)!r}, {self._tenant!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the open file, if any; a later call reopens it."""
        if self._reader is not None:
            reader, self._reader, self._reading = self._reader, None, None
            reader.close()  # closes the file the generator holds open

    def source_mark(self) -> str | None:
        """The file's size and digest now (``ports.SourceMarks``: a job keeps it; ``file_marks``)."""
        return digest_mark(self._path)

    def mark_changed(self, mark: str) -> str | None:
        """Why the file no longer holds the bytes ``mark`` was taken of (rows appended since are
        allowed), or None (``ports.SourceMarks``; ``file_marks.digest_changed``)."""
        return self._growing.changed(mark)

    def grown_mark(self, mark: str) -> str | None:
        """``mark`` grown over the file as it is now when it holds more bytes than ``mark`` covers
        (rows appended since), else None; ``FileChangedWhileRead`` when the bytes ``mark`` covers
        changed (``ports.SourceMarks``; ``file_marks.GrowingMark.grown``)."""
        return self._growing.grown(mark)

    def mark_covers(self, mark: str, grown: str) -> bool:
        """Whether another run's growth ``mark`` covers this source's last growth ``grown``, the
        same bytes (``ports.GrowingSourceMarks``; ``file_marks.GrowingMark.covers``)."""
        return self._growing.covers(mark, grown)

    def scope_bounds(
        self, tenant: str, scope: Sequence[str], cutoff: dt.datetime | None
    ) -> ScopeBounds | None:
        """One pass over the file: the in-scope rows at or after ``cutoff``; the first id is a line
        set aside's when one the run counts comes before them (the job's cursor starts below it).

        The pass reads each row's id, type and time only (``numbered_scope_keys``): the rows, the
        order checks and the errors are those of the pages, without building a row object.
        """
        if tenant != self._tenant:
            return None
        wanted = frozenset(scope)
        first = last = count = 0
        oldest: dt.datetime | None = None
        aside: list[int] = []
        rows = self._ordered(numbered_scope_keys, report=False, scope=wanted, counted=_first_of(aside))
        try:
            for row in rows:
                if row is SetAside.LINE or row.auditable_type not in wanted or not on_or_after(row, cutoff):
                    continue
                if not count:
                    first = row.id
                last = row.id
                count += 1
                if isinstance(row.created_at, dt.datetime) and (oldest is None or row.created_at < oldest):
                    oldest = row.created_at
            self._mark.check()  # the end this pass found is the file's the pages will read
        finally:
            rows.close()
        if not count:
            return None
        # A line set aside before the first row is one of the run's audits (its failed row): the
        # job's cursor starts below it, so a resume knows it from its cursor.
        first = min(first, aside[0]) if aside else first
        return ScopeBounds(first, last, NO_TIME_KNOWN if oldest is None else oldest, count)

    def scope_ends(self, tenant: str, scope: Sequence[str]) -> tuple[int, int] | None:
        """The first and last in-scope ids whatever their ``created_at``, read from the file's ends.

        The last is found reading a JSONL file back from its end, the first reading it from the
        front (the pages' own reader), each stopping at the first in-scope row of the tenant, so
        only the rows outside the scope at either end are read (the first is a line set aside's
        when one the run counts comes before that row, as in ``scope_bounds``). None when the ends
        cannot be told that way — a CSV file (a record may span lines), a line at the end that is
        not a plain row, no in-scope row at the end — and ``scope_bounds`` should be asked instead.
        """
        if tenant != self._tenant or format_of(self._path, self._file_format) != "jsonl":
            return None
        wanted = frozenset(scope)
        last: int | None = None
        self._mark.check()
        for keys in scope_keys_from_end(self._path, self._tenant):
            if keys is None:
                return None
            if keys.auditable_type in wanted:
                last = keys.id
                break
        if last is None:
            return None
        aside: list[int] = []
        rows = self._ordered(numbered_scope_keys, report=False, scope=wanted, counted=_first_of(aside))
        try:
            # The first row in scope, or a line set aside before it (a failed row of the run's).
            first = next(
                (
                    aside[0] if row is SetAside.LINE else row.id
                    for row in rows
                    if (row is SetAside.LINE and aside)
                    or (row is not SetAside.LINE and row.auditable_type in wanted)
                ),
                None,
            )
        finally:
            rows.close()
        return None if first is None or first > last else (first, last)

    def page(
        self, tenant: str, scope: Sequence[str], *, after_id: int, cutoff: dt.datetime, limit: int
    ) -> Sequence[AuditRow]:
        """``id > after_id AND auditable_type IN scope AND created_at >= cutoff ORDER BY id LIMIT limit``."""
        return tuple(self._page(numbered_audit_rows, tenant, scope, after_id, cutoff, limit, _row_bytes))

    def _page(
        self,
        read: Reader[Row],
        tenant: str,
        scope: Sequence[str],
        after_id: int,
        cutoff: dt.datetime,
        limit: int,
        size_of: Callable[[Row], int],
        on_found: Callable[[], None] | None = None,
    ) -> list[Row]:
        """``page``'s rows as ``read`` makes them (rows, or a span source's ``ScopeKeys``), each
        found row followed by ``on_found()`` while the reader is still at its line.

        The page ends early, after the rows found so far (none, perhaps), once the outcomes set
        aside and not yet taken reach ``HOLD_SET_ASIDE``: the caller takes them and asks again after
        the highest id handed (``ports.RowsSetAside``), and the reader goes on where it paused.

        Before a page is handed, the file is looked at again (``FileMark.check``, one a page): an
        open read goes on in the bytes it buffered before a cut, or in another file's written over
        it, so a page read while the file changed raises ``FileChangedWhileRead`` instead, and its
        rows and the lines it set aside are dropped, never handed (docs/files.md)."""
        if tenant != self._tenant or limit <= 0:
            return []
        if self._end is not None and after_id >= self._end:
            return []  # the file was read to its end, and no row is after this id: the run's last call
        wanted = frozenset(scope)
        if self._drained == (after_id, wanted, cutoff):
            return []
        if (
            self._reader is None
            or self._reading is not read
            or (on_found is not None and self._window is None)  # a reader opened without its window
            or self._query != (wanted, cutoff)
            # The reader handed rows or outcomes past this id (a resume from a cursor behind them):
            # read again from the start, handing again what lies past the cursor.
            or after_id < self._handed
        ):
            self.close()
            if self._checked is not None:
                # Outcomes the closed read set aside and nobody took: the new read hands again
                # those past its cursor (a run stopped with pages read ahead, resumed in-process).
                self._checked.take()
            self._window = LineWindow() if on_found is not None else None
            opened = self._ordered(read, report=True, window=self._window, scope=wanted, floor=after_id)
            self._reader, self._reading = opened, read
            self._position = None
            self._handed, self._query = after_id, (wanted, cutoff)
        reader: Generator[Row | SetAside, None, None] = self._reader
        found: list[Row] = []
        budget = self._page_bytes
        checked = self._checked
        try:
            for row in reader:
                if row is SetAside.LINE:
                    if checked is not None and checked.outcomes:
                        self._handed = max(self._handed, checked.outcomes[-1].audit_id)
                    if checked is not None and len(checked.outcomes) >= HOLD_SET_ASIDE:
                        # The same reader goes on from here when the next page is asked after the
                        # highest id handed (the run loop asks so).
                        break
                    continue
                self._position = row.id
                if row.id > after_id and row.auditable_type in wanted and on_or_after(row, cutoff):
                    found.append(row)
                    self._handed = max(self._handed, row.id)
                    if on_found is not None:
                        on_found()
                    budget -= size_of(row)
                    if len(found) == limit or budget <= 0:
                        break
            else:
                self.close()
                # The end this read found: the file it began, not one rewritten or replaced meanwhile.
                self._mark.check()
                self._end = max(after_id, self._handed, self._position or 0)
                self._position = None
                self._drained = (max(after_id, self._handed), wanted, cutoff)
                return found
            # Read, perhaps, from bytes the file no longer holds: handed only if it is still the file.
            self._mark.check()
        except FileChangedWhileRead:
            self._drop_page()
            raise
        return found

    def _drop_page(self) -> None:
        """Forget the page being read, its file found changed (``_page``): the reader is closed and
        the lines it set aside are dropped with its rows, never handed (``take_set_aside``)."""
        self.close()
        self._position = None
        if self._checked is not None:
            self._checked.take()

    def take_set_aside(self) -> Sequence[Outcome]:
        """The outcomes of the rows set aside since the last call (``ports.RowsSetAside``); none
        without a ``checked``."""
        return () if self._checked is None else self._checked.take()

    def audit_by_id(self, tenant: str, audit_id: int) -> AuditRow | None:
        """The row with this id (any type, any time), or None; reads until it reaches or passes it."""
        if tenant != self._tenant:
            return None
        rows = self._ordered_rows(report=False)
        try:
            for row in rows:
                if row is not SetAside.LINE and row.id >= audit_id:
                    return row if row.id == audit_id else None
        finally:
            rows.close()
        return None

    def _ordered_rows(self, *, report: bool) -> Generator[AuditRow | SetAside, None, None]:
        """The tenant's rows in file order; ``report``: hand new disqualified rows to ``checked``."""
        return self._ordered(numbered_audit_rows, report=report)

    def _ordered(
        self,
        read: Reader[Row],
        *,
        report: bool,
        window: LineWindow | None = None,
        scope: frozenset[str] | None = None,
        floor: int = 0,
        counted: Callable[[int], None] | None = None,
    ) -> Generator[Row | SetAside, None, None]:
        """What ``read`` makes of the tenant's rows, in file order, ids checked ascending, each line
        or row set aside followed by ``SetAside.LINE``.

        A line that fails with a readable id takes its place in that order as a row would: an id
        below the one before it stops the read (``AuditOrderError``), the same id again is a repeat
        (``duplicate_audit_id``), so an unreadable line is never one more audit than the file holds.
        With ``scope``, a line set aside whose ``auditable_type`` can be read and is outside it is
        not handed to ``checked``: a database run never reads such a row (its query keeps the scope),
        so it is none of the run's audits; one whose type cannot be read may be one, and counts.
        ``report``: hand those past ``floor`` (the cursor the read starts from) to ``checked``;
        ``counted`` is told the id of each (reported or not).
        """
        self._mark.check()  # the file the source read before, or that one grown
        checked = self._checked
        order = IdOrder(self._path)
        on_error: Callable[[FileFormatError], None] | None = None
        on_repeat: Callable[[int, int, Row], None] | None = None
        if checked is not None:

            def on_error(error: FileFormatError) -> None:
                if error.audit_id is None:
                    raise error
                new = order.admits(error.line, error.audit_id, repeats=True)
                kind = error.auditable_type
                if scope is not None and kind is not None and kind not in scope:
                    return  # none of the run's audits
                if counted is not None:
                    counted(error.audit_id)
                if report and error.audit_id > floor:
                    if new:
                        checked.on_error(error)
                    else:
                        checked.repeat_line(error)

            def on_repeat(line: int, ordinal: int, row: Row) -> None:
                if scope is not None and row.auditable_type not in scope:
                    return  # none of the run's audits
                if counted is not None:
                    counted(row.id)
                if report and row.id > floor:
                    checked.repeat(ordinal, row.id)  # CheckedRows names the row's ordinal, not its line

        numbered = read(
            self._path,
            self._tenant,
            file_format=self._file_format,
            jsonb_changes=self._jsonb_changes,
            on_error=on_error,
            max_record_bytes=self._max_record_bytes,
            window=window,
        )
        return self._told_if_changed(ascending(order, numbered, on_repeat))

    def _told_if_changed(
        self, rows: Generator[Row | SetAside, None, None]
    ) -> Generator[Row | SetAside, None, None]:
        """``rows``; an error that stops their read is told as the file having changed when it did
        (``_changed_instead``)."""
        try:
            yield from rows
        except FileFormatError as error:  # AuditOrderError too
            changed = self._changed_instead(error)
            if changed is None:
                raise
            raise changed from error

    def _changed_instead(self, error: FileFormatError) -> FileChangedWhileRead | None:
        """``FileChangedWhileRead`` (``BAD_INPUT``) to raise in place of ``error``, a read's error,
        when the file changed since this source last looked at it (``FileMark.check``); None when
        it did not (``error`` stands), or ``error`` already says so.

        A file cut short while a read has it open may hand that read a line of the bytes it held
        before the cut and none after: a line cut off ("not JSON") though the cut fell at a line
        end, in this process or in a worker reading a range of it. That read stopped because the
        file changed, and is told so, as a read that found the file's end early is
        (``lines.check_read_whole``): the logs written before it are the old file's (docs/files.md,
        "A file that changes"). One ``FileMark.check``, on an error only.
        """
        if isinstance(error, FileChangedWhileRead):
            return None
        try:
            self._mark.check()
        except FileChangedWhileRead as changed:
            return changed
        return None


def _first_of(ids: list[int]) -> Callable[[int], None]:
    """A ``counted`` hook keeping the first id it is told in ``ids``."""

    def keep(audit_id: int) -> None:
        if not ids:
            ids.append(audit_id)

    return keep


def _row_bytes(row: AuditRow) -> int:
    """What a row holds in text, for a page's byte budget (``scope_keys.text_bytes``)."""
    return text_bytes(row.audited_changes, row.comment)
