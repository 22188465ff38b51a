"""A JSONL export read by byte ranges cut at line ends: the dry run's runner decodes no line.

With ``dry-run --workers N`` over a JSONL audits file, ``FileRangeSource`` (``ports.PagesByRange``)
cuts the file into ranges of about ``range_bytes`` (``line_ranges``: it finds newlines, nothing
more), and each range is read where it is transformed (a worker, or the runner for the pages it
takes itself) by ``read_range``: every line decoded there, the tenant's rows in the span's scope
built, transformed and given their outcome, and every line that counts told back in a compact
report (``RangeTold``: each row's id, line, whether it is in scope, the bytes of text it holds;
each line that failed with an id, as its error; a line that stops the read). The runner merges the
reports in file order and takes the decisions one forward read takes (``FileAuditSource``): the
id order (``AuditOrderError``), repeats and lines set aside (``CheckedRows``, with the same
ordinals and words), the cursor, the page size, the 32 MiB byte budget and the early end once
``HOLD_SET_ASIDE`` outcomes set aside are held. From the ranges' outcomes it makes the pages
``page`` gives, each with the rows set aside beside it, so the run loop writes the same steps in
the same order, and the outputs are one process's byte for byte
(benchmarks/RESULTS.md, issue 15 goal 2, eighth round).

What a range's reader cannot know is decided in the merge: its first row may repeat the id of the
range before (a repeat across the cut: its outcome is dropped and it is set aside, as one process
sets it aside) or come below it (the order error, raised with its line). Every later line of the
range meets the same id before it in both reads, so the reader's own order check agrees with the
runner's there. A read that stops (a line with no id, an id out of order) ends the range's report
at that line; the runner raises its error when the merge reaches it, after the pages before it,
and the page it was filling is dropped, as in one process.
"""

from __future__ import annotations

import datetime as dt
import os
import stat
from array import array
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from typing import Final

from crm_audit_transform.domain import AuditRow, Outcome
from crm_audit_transform.packed import join
from crm_audit_transform.transformer import PageResult
from crm_audit_transform.usecases.pages import PageSpan, RangeRows, ReadIds, TransformedPage

from .audit_order import IdOrder, on_or_after
from .audit_rows import numbered_audit_rows
from .audit_source import DEFAULT_PAGE_BYTES, HOLD_SET_ASIDE
from .audit_spans import FileSpanReader, FileSpanSource
from .audits import FileFormat
from .checked_rows import CheckedRows
from .errors import FileChangedWhileRead, FileFormatError
from .lines import LineWindow, PathLike, SetAside, check_read_whole, size_if_regular
from .psql_csv import DEFAULT_MAX_RECORD_BYTES
from .scope_keys import text_bytes

__all__ = ["DEFAULT_RANGE_BYTES", "FileRangeReader", "FileRangeSource", "line_ranges", "read_range"]

DEFAULT_RANGE_BYTES: Final = 512 * 1024
"""A range's bytes before the line end that closes it: about one 500-row page of a usual export."""

_BLOCK: Final = 1 << 20

IN_SCOPE: Final = 0
"""A row of the tenant in the span's scope: the reader built and transformed it (a candidate)."""
OUT_OF_SCOPE: Final = 1
"""A row of the tenant out of scope, or repeating the id before it in the range: not transformed."""
FAILED: Final = 2
"""A line that failed with its id: its ``FileFormatError`` is in ``RangeTold.errors``."""
OTHER_TYPE: Final = 3
"""A row of the tenant whose ``auditable_type`` is out of the scope (a repeat of it is not counted)."""


class RangeTold:
    """What a range's reader tells of its lines, in file order (``ReadIds.told``): for each row of
    the tenant and each line that failed with an id, its kind (``IN_SCOPE``, ``OUT_OF_SCOPE``,
    ``FAILED``, ``OTHER_TYPE``), line and id; the text bytes of each in-scope row
    (``scope_keys.text_bytes``); the errors of the failed lines, in order; and ``stop``, the error
    that ended the read early (a line with no id), or None. Other tenants' lines and blank lines
    are not told: one process passes them over before any check."""

    __slots__ = ("errors", "ids", "kinds", "lines", "sizes", "stop")

    def __init__(self) -> None:
        self.kinds = bytearray()
        self.lines = array("q")
        self.ids = array("q")
        self.sizes = array("q")
        self.errors: list[FileFormatError] = []
        self.stop: FileFormatError | None = None

    def __getstate__(self) -> tuple[object, ...]:
        return (self.kinds, self.lines, self.ids, self.sizes, self.errors, self.stop)

    def __setstate__(self, state: tuple[object, ...]) -> None:
        (self.kinds, self.lines, self.ids, self.sizes, self.errors, self.stop) = state  # type: ignore[assignment]


class _Stop(Exception):
    """An id below the one before it: the read of the range ends there (the runner raises it)."""


def read_range(path: PathLike, tenant: str, max_record_bytes: int, span: PageSpan) -> RangeRows:
    """The in-scope rows of a range span (``PageSpan`` with an extent and no ids), each id's first
    in the range, with what the read told of every line (``RangeTold``) as their ``ReadIds``.

    The lines are read as one forward read reads them (``numbered_audit_rows`` in a
    ``lines.LineWindow``: the same line numbers, a BOM, a long line, a value that is not UTF-8 met
    as there). A line with no id ends the read (``RangeTold.stop``), as does an id below the one
    before it in the range (told as its line, for the runner's order check to raise).
    """
    start, first, stop = span.extent
    told = RangeTold()
    kinds, lines, ids, sizes, errors = told.kinds, told.lines, told.ids, told.sizes, told.errors
    wanted = frozenset(span.scope)
    cutoff = span.cutoff
    rows: list[AuditRow] = []
    previous: int | None = None

    def on_error(error: FileFormatError) -> None:
        nonlocal previous
        audit_id = error.audit_id
        if audit_id is None:
            raise error
        kinds.append(FAILED)
        lines.append(error.line)
        ids.append(audit_id)
        # Kept without its traceback: that holds the reader's frame, and so this function and the
        # list, a cycle that kept a range's errors (and their lines' records) until a full pass of
        # the collector, which the run loop's settings make rare (collector): 150 MiB at 200,000.
        errors.append(error.with_traceback(None))
        if previous is not None and audit_id < previous:
            raise _Stop
        previous = audit_id

    numbered = numbered_audit_rows(
        path,
        tenant,
        file_format="jsonl",
        on_error=on_error,
        max_record_bytes=max_record_bytes,
        window=LineWindow(start, first, stop),
    )
    try:
        for number, row in numbered:
            if row is SetAside.LINE:
                continue  # told by on_error, or another tenant's long line
            audit_id = row.id
            lines.append(number)
            ids.append(audit_id)
            if row.auditable_type not in wanted:
                kinds.append(OTHER_TYPE)
                if previous is not None and audit_id < previous:
                    break
                previous = audit_id if previous is None else max(previous, audit_id)
                continue
            if previous is not None and audit_id <= previous:
                kinds.append(OUT_OF_SCOPE)
                if audit_id < previous:
                    break
                continue
            previous = audit_id
            if on_or_after(row, cutoff):
                kinds.append(IN_SCOPE)
                sizes.append(text_bytes(row.audited_changes, row.comment))
                rows.append(row)
            else:
                kinds.append(OUT_OF_SCOPE)
    except _Stop:
        pass
    except FileFormatError as error:
        told.stop = error
    finally:
        numbered.close()
    return RangeRows(rows, told)


class FileRangeReader(FileSpanReader):
    """``FileSpanReader`` that also reads whole ranges (``read_range``): a span with no ids."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"FileRangeReader({self._path!r}, {self._tenant!r})"

    def __call__(self, span: PageSpan) -> Sequence[AuditRow]:
        if not span.ids and span.extent:
            return read_range(self._path, self._tenant, self._max_record_bytes, span)
        return super().__call__(span)


def line_ranges(
    path: PathLike, size: int, *, block: int = _BLOCK, least: int | None = None
) -> Iterator[tuple[int, int, int]]:
    """The file cut into ranges ``(start, first line, stop)``: each from a line's start to just
    past the first line end at or after ``size`` bytes in (the last to the file's end), with the
    number of its first line. Read in blocks of ``block`` bytes, counting newlines only; a line of
    any length lies whole in one range.

    The ranges are cut as they are asked, so the file may be cut short meanwhile: when its end is
    found short of the bytes it held when it was opened here, or of ``least`` (the bytes it held
    when the run opened it), ``FileFormatError`` (``lines.check_read_whole``) instead of a last
    range that ends the read with the rest unread."""
    if size <= 0:
        raise ValueError(f"a range holds at least one byte, got {size}")
    with open(path, "rb") as stream:
        opened = size_if_regular(stream)
        if least is not None:
            opened = max(opened or 0, least)
        start, line, offset = 0, 1, 0  # the range's start and first line; the block's offset
        newlines = 0  # line ends from the range's start to the block's
        while chunk := stream.read(block):
            at = 0
            while True:
                end = chunk.find(b"\n", max(at, start + size - 1 - offset))
                if end < 0:
                    newlines += chunk.count(b"\n", at)
                    break
                newlines += chunk.count(b"\n", at, end + 1)
                stop = offset + end + 1
                yield start, line, stop
                start, line, newlines, at = stop, line + newlines, 0, end + 1
            offset += len(chunk)
        check_read_whole(path, line + newlines, offset, opened)
        if start < offset:
            yield start, line, offset


class FileRangeSource(FileSpanSource):
    """``FileSpanSource`` whose run pages are cut by byte ranges and decided from their readers'
    reports (``ports.PagesByRange``; see the module docstring); ``range_bytes`` sizes the ranges.

    Every other question (``page``, ``page_ids``, the scope's ends) is ``FileSpanSource``'s. A file
    that is not a regular file (a pipe cannot be read twice, nor by several processes) is refused
    with ``ValueError`` when the run's pages are asked (the CLI refuses one before it opens it).
    """

    __slots__ = ("_range_bytes",)

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
        range_bytes: int = DEFAULT_RANGE_BYTES,
    ) -> None:
        if range_bytes <= 0:
            raise ValueError(f"range_bytes must be positive, got {range_bytes}")
        super().__init__(
            path,
            tenant,
            file_format=file_format,
            jsonb_changes=jsonb_changes,
            max_record_bytes=max_record_bytes,
            checked=checked,
            page_bytes=page_bytes,
        )
        self._range_bytes = range_bytes

    def __repr__(self) -> str:
        return f"FileRangeSource({str(self._path)!r}, {self._tenant!r})"

    def span_rows(self, span: PageSpan) -> Sequence[AuditRow]:
        """A range's rows read here (``read_range``), else ``FileSpanSource.span_rows``."""
        if not span.ids and span.extent:
            return read_range(self._path, self._tenant, self._max_record_bytes, span)
        return super().span_rows(span)

    def span_reader(self) -> FileRangeReader:
        return FileRangeReader(os.fspath(self._path), self._tenant, self._max_record_bytes)

    def pages_by_range(
        self,
        tenant: str,
        scope: Sequence[str],
        *,
        after_id: int,
        cutoff: dt.datetime,
        limit: int,
        transform: Callable[[Iterable[PageSpan]], Iterator[TransformedPage]],
        on_set_aside: Callable[[Sequence[Outcome]], None],
    ) -> Generator[TransformedPage, None, None]:
        """The pages ``page`` gives from ``after_id`` on, transformed, each after the rows set aside
        with it (``ports.PagesByRange``)."""
        if tenant != self._tenant or limit <= 0:
            return
        if not stat.S_ISREG(os.stat(self._path).st_mode):
            raise ValueError(f"a file read by byte ranges must be a regular file: {os.fspath(self._path)!r}")
        self.close()  # this read is the run's; a reader left open by an earlier question is not used
        if self._checked is not None:
            # Outcomes an earlier read set aside and no run took (its pages read ahead and dropped):
            # this read reports them again, from the file's start.
            self._checked.take()
        scope = tuple(scope)
        self._mark.check()  # the file the run looked at before (its scope), or that one grown
        # The ranges, cut later, must reach the bytes it held then (line_ranges).
        spans = (
            PageSpan(tenant, scope, cutoff, (), extent)
            for extent in line_ranges(self._path, self._range_bytes, least=self._mark.size)
        )
        ranges = transform(spans)
        try:
            merge = _Merge(
                self._checked,
                IdOrder(self._path),
                page_bytes=self._page_bytes,
                after_id=after_id,
                limit=limit,
                on_set_aside=on_set_aside,
                scope=frozenset(scope),
                check=self._mark.check,
            )
            try:
                yield from merge.pages(ranges)
                # The end the ranges found: the file they began, not one rewritten or replaced meanwhile.
                self._mark.check()
            except FileChangedWhileRead:
                self._drop_page()
                raise
            except FileFormatError as error:  # a range's read stopped: by the file changing?
                changed = self._changed_instead(error)
                if changed is None:
                    raise
                self._drop_page()
                raise changed from error
        finally:
            close = getattr(ranges, "close", None)
            if callable(close):
                close()  # the pipeline stops its work: the loop halted, stopped or was cancelled


class _Merge:
    """The runner's side of a read by ranges: the ranges' reports merged in file order into the
    pages one forward read gives (``FileAuditSource._page`` over ``_ordered``), with their outcomes.

    It is handed what it shares with the source's own read: its ``CheckedRows`` (the rows set
    aside, each once), a fresh ``IdOrder`` of the file, and its page byte budget. A resume's merge
    (``after_id`` past the file's start) reads the ranges from the start, as the order check needs,
    but sets aside only the lines past the cursor, as one forward read reports only those past the
    cursor it started from (``FileAuditSource._ordered``'s ``floor``): the run loop counted the
    others, and building their outcomes (every one from the file's start, on each resume) only
    for the loop to drop them cost time.

    ``check`` looks at the file before each page and the rows set aside with it are handed
    (``FileMark.check``): a range read while the file changed (a worker's read goes on in the
    bytes it buffered before a cut) raises ``FileChangedWhileRead`` there, and nothing of it is
    handed, as in one process (``FileAuditSource._page``)."""

    __slots__ = (
        "_after_id",
        "_budget",
        "_check",
        "_checked",
        "_degraded",
        "_fell",
        "_ids",
        "_limit",
        "_on_set_aside",
        "_order",
        "_ordinal",
        "_outcomes",
        "_page_bytes",
        "_parts",
        "_scope",
    )

    def __init__(
        self,
        checked: CheckedRows | None,
        order: IdOrder,
        *,
        page_bytes: int,
        after_id: int,
        limit: int,
        on_set_aside: Callable[[Sequence[Outcome]], None],
        scope: frozenset[str],
        check: Callable[[], None],
    ) -> None:
        self._checked = checked
        self._check = check
        self._scope = scope  # a line set aside of a type outside it is not counted (FileAuditSource)
        self._order = order
        self._page_bytes = page_bytes
        self._after_id = after_id
        self._limit = limit
        self._on_set_aside = on_set_aside
        self._ordinal = 0  # the tenant's rows read so far (CheckedRows names a repeat by it)
        self._ids: list[int] = []
        self._outcomes: list[Outcome] = []
        self._parts: list[Sequence[Outcome]] = []  # slices of ranges before _outcomes (join)
        self._fell: list[bool] = []
        self._degraded: list[bool] = []
        self._budget = self._page_bytes

    def pages(self, ranges: Iterable[TransformedPage]) -> Generator[TransformedPage, None, None]:
        for done in ranges:
            told = done.ids.told if isinstance(done.ids, ReadIds) else None
            if not isinstance(told, RangeTold):
                raise TypeError(f"a range's page came back without its reader's report: {done.ids!r}")
            yield from self._range(told, done.ids, done.result)
        if self._ids:
            yield self._page()
        checked = self._checked
        if checked is not None and checked.outcomes:
            self._check()
        rest = checked.take() if checked is not None else ()
        if rest:
            self._on_set_aside(rest)

    def _range(
        self, told: RangeTold, candidates: Sequence[int], result: PageResult
    ) -> Generator[TransformedPage, None, None]:
        if self._plain(told):
            yield from self._plain_range(told, candidates, result)
            return
        checked = self._checked
        repeats = checked is not None
        admits = self._order.admits
        outcomes = result.outcomes
        count = len(outcomes)
        fell = result.fell_through or (False,) * count
        degraded = result.degraded or (False,) * count
        sizes, errors = told.sizes, told.errors
        after_id, limit = self._after_id, self._limit
        page_ids, page_outcomes = self._ids, self._outcomes
        candidate = failed = 0
        for kind, line, audit_id in zip(told.kinds, told.lines, told.ids, strict=True):
            if kind == FAILED:
                error = errors[failed]
                failed += 1
                if checked is None:
                    raise error
                new = admits(line, audit_id, repeats=True)
                if error.auditable_type is not None and error.auditable_type not in self._scope:
                    continue  # none of the run's audits (FileAuditSource._ordered)
                if audit_id <= after_id:
                    continue  # counted before the cursor: built for nobody (_Merge)
                if new:
                    checked.on_error(error)
                else:
                    checked.repeat_line(error)
                if len(checked.outcomes) >= HOLD_SET_ASIDE:  # where one process's page pauses
                    yield self._page()
                    page_ids, page_outcomes = self._ids, self._outcomes
                continue
            self._ordinal += 1
            if not admits(line, audit_id, repeats=repeats):
                assert checked is not None  # admits refuses a repeat only when repeats are allowed
                if kind != OTHER_TYPE and audit_id > after_id:
                    checked.repeat(self._ordinal, audit_id)
                candidate += kind == IN_SCOPE  # a repeat across the cut: its outcome is dropped
                if len(checked.outcomes) >= HOLD_SET_ASIDE:
                    yield self._page()
                    page_ids, page_outcomes = self._ids, self._outcomes
                continue
            if kind != IN_SCOPE:
                continue
            index = candidate
            candidate += 1
            if candidates[index] != audit_id:  # pragma: no cover - the reader gives them in this order
                raise RuntimeError(f"range read out of step: id {candidates[index]}, told {audit_id}")
            if audit_id <= after_id:
                continue
            page_ids.append(audit_id)
            page_outcomes.append(outcomes[index])
            self._fell.append(fell[index])
            self._degraded.append(degraded[index])
            self._budget -= sizes[index]
            if len(page_ids) == limit or self._budget <= 0:
                yield self._page()
                page_ids, page_outcomes = self._ids, self._outcomes
        if told.stop is not None:
            raise told.stop

    def _plain(self, told: RangeTold) -> bool:
        """Whether every line the range told is a new row in scope past the cursor, and they all fit
        the page's byte budget: an export's usual range, whose pages are cut by count alone."""
        ids = told.ids
        if not ids or told.errors or told.stop is not None or told.kinds.count(IN_SCOPE) != len(ids):
            return False
        previous = self._order.previous
        # In scope, the reader's rows after the first are each above the one before (else it told
        # them OUT_OF_SCOPE): only the first meets an id the runner knows and the reader did not.
        return (
            (previous is None or ids[0] > previous)
            and ids[0] > self._after_id
            and sum(told.sizes) < self._budget
        )

    def _plain_range(
        self, told: RangeTold, candidates: Sequence[int], result: PageResult
    ) -> Generator[TransformedPage, None, None]:
        """``_range`` of a plain range (``_plain``): its rows are the next ones of the pages, in
        slices; the same pages, ordinals and cursor, without a step per row."""
        count = len(candidates)
        outcomes = result.outcomes
        fell = result.fell_through or (False,) * count
        degraded = result.degraded or (False,) * count
        self._ordinal += count
        self._order.previous = candidates[-1]
        sizes = told.sizes
        index = 0
        while index < count:
            end = min(count, index + self._limit - len(self._ids))
            self._ids.extend(candidates[index:end])
            # A slice as it is (a worker's packed range stays packed: packed.join), after the rows
            # taken one by one before it.
            if self._outcomes:
                self._parts.append(tuple(self._outcomes))
                self._outcomes.clear()
            self._parts.append(outcomes[index:end])
            self._fell.extend(fell[index:end])
            self._degraded.extend(degraded[index:end])
            # Within the budget: the whole range is below what is left of it, and a new page's is whole.
            self._budget -= sum(sizes[index:end])
            index = end
            if len(self._ids) == self._limit:
                yield self._page()

    def _page(self) -> TransformedPage:
        """The page filled so far, after handing over the rows set aside with it; a new one begun.
        ``FileChangedWhileRead`` instead when the file changed (``check``)."""
        self._check()
        checked = self._checked
        self._on_set_aside(checked.take() if checked is not None else ())
        if self._outcomes:
            self._parts.append(tuple(self._outcomes))
        page = TransformedPage(
            self._ids,
            PageResult(join(self._parts), None, tuple(self._fell), tuple(self._degraded)),
        )
        self._ids, self._outcomes, self._fell, self._degraded, self._parts = [], [], [], [], []
        self._budget = self._page_bytes
        return page
