"""A JSONL export's pages as byte ranges: the dry run's runner cuts them, its workers read them.

``FileSpanSource`` is a ``FileAuditSource`` that also tells each page by its ids and where its
rows lie in the file (``ports.AuditPageIds``, ``ports.PageExtents``), so that with ``--workers`` the
run loop's process ships no row: it reads the file forward as ``page`` does, and each worker reads
and builds its pages' rows itself, from the byte range of their lines (``FileSpanReader``). The
runner keeps the rows of the last page it read, for the pages it takes itself (the pool's runner
shares the work): those it reads once. A forward read of keys alone (``numbered_scope_keys``) was
measured no cheaper than building the rows (9.3 against 9.8 µs a row: the JSON decode and the
checks that decide whether a line is a row are the cost), and would read the runner's own pages
twice (benchmarks/RESULTS.md, issue 15 goal 2, seventh round).

Everything the file itself decides is still decided by that one forward read, in the runner, as
in one process: the id order (``AuditOrderError``), repeated ids and lines that cannot become a
row (set aside, ``ports.RowsSetAside``), the lines too long to hold, other tenants' lines, the
scope and the page's byte budget. So a page's ids, and the outcomes set aside beside it, are the
ones ``page`` gives. A worker reads the lines from the page's first row to its last, keeps the rows
with the page's ids (in order, each id's first row), and passes over the rest, whose fate the
runner already decided; when what it reads is not those ids (the file changed since the runner
read it), it raises ``FileChangedWhileRead`` rather than hand over other rows.

JSONL only: a CSV record may span lines and its columns are named by the header, so a CSV export
keeps ``FileAuditSource`` (its rows read by the runner and sent).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from typing import Final

from crm_audit_transform.domain import AuditRow
from crm_audit_transform.ports import SpanReader
from crm_audit_transform.usecases.pages import PageSpan

from .audit_rows import numbered_audit_rows
from .audit_source import DEFAULT_PAGE_BYTES, FileAuditSource
from .audits import FileFormat, format_of
from .checked_rows import CheckedRows
from .errors import FileChangedWhileRead, FileFormatError
from .lines import LineWindow, PathLike, SetAside
from .psql_csv import DEFAULT_MAX_RECORD_BYTES
from .scope_keys import text_bytes

__all__ = ["FileSpanReader", "FileSpanSource"]

_EXTENT: Final = 3
"""A span's extent: (offset of its first row's line, that line's number, offset past its last row's line)."""


class FileSpanSource(FileAuditSource):
    """``FileAuditSource`` over a JSONL file whose pages are also told by their ids and byte range
    (``ports.AuditPageIds``, ``ports.PageExtents``), for a page pool's workers to read them.

    ``ValueError`` for a file that is not JSONL (a CSV record may span lines).
    """

    __slots__ = ("_extent", "_last")

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
        if format_of(path, file_format) != "jsonl":
            raise ValueError(f"pages by byte range are read from a JSONL file only, not {os.fspath(path)!r}")
        super().__init__(
            path,
            tenant,
            file_format="jsonl",
            jsonb_changes=jsonb_changes,
            max_record_bytes=max_record_bytes,
            checked=checked,
            page_bytes=page_bytes,
        )
        self._extent: list[int] = []
        self._last: tuple[tuple[int, ...], Sequence[AuditRow]] | None = None  # page_ids' last page

    def __repr__(self) -> str:
        return f"FileSpanSource({str(self._path)!r}, {self._tenant!r})"

    def page_ids(
        self, tenant: str, scope: Sequence[str], *, after_id: int, cutoff: dt.datetime, limit: int
    ) -> Sequence[int]:
        """The ids of the rows ``page`` gives for the same arguments — the same rows, byte budget
        and rows set aside, read by ``page``'s own reader — and ``page_extent`` then tells where
        they lie. The rows of this last page are kept until the next call: the pool's runner takes
        a page for itself as soon as it was told (``span_rows``), and then reads none of it again."""
        extent = self._extent = []
        self._last = None

        def on_found() -> None:
            window = self._window
            assert window is not None  # _page opens its reader with a window when told on_found
            if not extent:
                extent.extend((window.line_start, window.number, window.line_end))
            extent[2] = window.line_end

        rows = self._page(numbered_audit_rows, tenant, scope, after_id, cutoff, limit, _row_bytes, on_found)
        ids = tuple(row.id for row in rows)
        self._last = (ids, rows)
        return ids

    def page_extent(self) -> tuple[int, ...]:
        """Where the rows of the page ``page_ids`` last gave lie (``ports.PageExtents``): the offset
        of its first row's line, that line's number, the offset just past its last row's line."""
        return tuple(self._extent)

    def span_rows(self, span: PageSpan) -> Sequence[AuditRow]:
        """The span's rows (``ports.AuditPageIds``): those ``page_ids`` last read when it is that
        page, else read from its extent (``FileSpanReader``)."""
        last, self._last = self._last, None
        if last is not None and last[0] == span.ids:
            return last[1]
        return self.span_reader()(span)

    def span_reader(self) -> SpanReader:
        """A ``FileSpanReader`` of this file: it pickles (a path, a tenant, a cap), and each worker
        opens the file itself."""
        return FileSpanReader(os.fspath(self._path), self._tenant, self._max_record_bytes)


class FileSpanReader:
    """A span's rows read from its byte range of a JSONL file, in a worker process (``ports.SpanReader``).

    The lines of the span's extent are read as the source's reader reads them (the same line
    numbers, so a BOM or an error is met as there); the rows with the span's ids are kept, each id's
    first, in order; every other line is passed over (the runner's read decided its fate).
    ``FileChangedWhileRead`` (a ``FileFormatError``, ``BAD_INPUT``) when those are not the span's
    ids: the file changed since the runner read it.
    """

    __slots__ = ("_max_record_bytes", "_path", "_tenant")

    def __init__(self, path: str, tenant: str, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> None:
        self._path = path
        self._tenant = tenant
        self._max_record_bytes = max_record_bytes

    def __repr__(self) -> str:
        return f"FileSpanReader({self._path!r}, {self._tenant!r})"

    def __call__(self, span: PageSpan) -> Sequence[AuditRow]:
        ids = span.ids
        if not ids:
            return ()
        if len(span.extent) != _EXTENT:
            raise ValueError(f"a file's span needs its extent (offset, line, end), got {span.extent!r}")
        start, first, stop = span.extent
        rows: list[AuditRow] = []
        count = len(ids)
        numbered = numbered_audit_rows(
            self._path,
            self._tenant,
            file_format="jsonl",
            on_error=_passed_over,
            max_record_bytes=self._max_record_bytes,
            window=LineWindow(start, first, stop),
        )
        try:
            for _, row in numbered:
                if row is not SetAside.LINE and len(rows) < count and row.id == ids[len(rows)]:
                    rows.append(row)
        finally:
            numbered.close()
        if len(rows) != count:
            missing = ids[len(rows)]
            # The runner read these ids in this range: a worker that does not find them there reads
            # another file (cut short, rewritten), whatever the line it stopped at held.
            raise FileChangedWhileRead(
                self._path,
                first,
                f"audit id {missing} is no longer in lines {first} on (bytes {start}-{stop}): the file "
                "changed while the run read it",
            )
        return rows


def _passed_over(error: FileFormatError) -> None:
    """A line of a span that is no row: the runner's read already set it aside, or stopped there."""


def _row_bytes(row: AuditRow) -> int:
    return text_bytes(row.audited_changes, row.comment)
