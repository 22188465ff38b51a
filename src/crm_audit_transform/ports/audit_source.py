"""The CRM's audits as the run reads them: keyset pages, their ends, ids and rows set aside."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Protocol, TypeAlias, runtime_checkable

from ..domain import AuditRow, Outcome, ScopeBounds

if TYPE_CHECKING:  # the page types import the lookup ports: annotations only
    from ..usecases.pages import PageSpan, TransformedPage


class AuditSource(Protocol):
    """The CRM's ``audits`` table of one tenant schema, read by keyset pages (read-only)."""

    def scope_bounds(
        self, tenant: str, scope: Sequence[str], cutoff: dt.datetime | None
    ) -> ScopeBounds | None:
        """Id range and oldest ``created_at`` of in-scope audits at or after ``cutoff``; None if none."""
        ...

    def page(
        self, tenant: str, scope: Sequence[str], *, after_id: int, cutoff: dt.datetime, limit: int
    ) -> Sequence[AuditRow]:
        """``id > after_id AND auditable_type IN scope AND created_at >= cutoff ORDER BY id LIMIT limit``.

        A source may return fewer than ``limit`` rows before its end, to keep a page within a byte
        budget (at least one row, whatever its size); an empty page is the end.
        """
        ...

    def audit_by_id(self, tenant: str, audit_id: int) -> AuditRow | None: ...


@runtime_checkable
class AuditEnds(Protocol):
    """An ``AuditSource`` that can tell its first and last in-scope ids without a pass over the rows."""

    def scope_ends(self, tenant: str, scope: Sequence[str]) -> tuple[int, int] | None:
        """The first and last in-scope ids, whatever their ``created_at``; None when they cannot be
        told cheaply (ask ``scope_bounds``)."""
        ...


# Not in __all__ (the public surface has a budget): ``AuditPageIds`` names it.
SpanReader: TypeAlias = Callable[["PageSpan"], Sequence[AuditRow]]
"""Reads a ``PageSpan``'s rows (``AuditPageIds.span_rows``) in another process, over its own
connection; sent to worker processes, so it must pickle."""


@runtime_checkable
class AuditPageIds(Protocol):
    """An ``AuditSource`` that can tell a page by its ids without reading its rows' text, and read
    those rows later, here or in another process (``usecases.pages.PageSpan``).

    With a ``SpanPipeline`` the run loop reads only each page's ids and the pipeline reads the rows
    where it transforms them, so the loop's process never fetches nor ships the rows' text.
    """

    def page_ids(
        self, tenant: str, scope: Sequence[str], *, after_id: int, cutoff: dt.datetime, limit: int
    ) -> Sequence[int]:
        """The ids of the rows ``page`` returns for the same arguments, in order — the same rows,
        byte budget included — without reading the rows themselves."""
        ...

    def span_rows(self, span: PageSpan) -> Sequence[AuditRow]:
        """The span's rows, in id order: those of its ids still in its scope (``PageSpan``)."""
        ...

    def span_reader(self) -> SpanReader | None:
        """``span_rows`` for another process (it must pickle: no open connection, no secret shown in
        its ``repr``), or None when this source cannot be read from another process."""
        ...


@runtime_checkable
class PageExtents(Protocol):
    """An ``AuditPageIds`` whose pages lie in ranges of what it reads (an export file's bytes): it
    tells where the page ``page_ids`` last told lies, for its ``span_reader`` to read only that
    (``usecases.pages.PageSpan.extent``). Not in ``__all__``, as ``SpanReader``."""

    def page_extent(self) -> tuple[int, ...]:
        """Where the rows of the page ``page_ids`` last gave lie (empty when it gave none)."""
        ...


@runtime_checkable
class PagesByRange(AuditPageIds, Protocol):
    """An ``AuditPageIds`` whose rows its span readers can read by whole ranges (an export file's
    byte ranges, cut at line ends), deciding each line there: so the run loop's process reads none.
    Not in ``__all__``, as ``SpanReader``.

    The loop gives it a ``transform`` (its pipeline's ``transform_spans``) and takes the pages it
    yields instead of reading pages itself: the source cuts its ranges (``PageSpan`` with no ids
    and the range as its ``extent``), each transformed where its rows are read, every row of the
    range in scope (the span's ``scope`` and ``cutoff``) given its outcome and the rest told (ids,
    fates) with the ids (``usecases.pages.ReadIds``). It merges those in range order and yields the
    pages ``page`` would give for the same arguments (the same rows, ``limit`` and byte budget) with
    their outcomes, each after handing the rows set aside with it to ``on_set_aside`` (one call a
    page, and a last one for the rows set aside after the last page, if any): what the loop takes
    from ``RowsSetAside.take_set_aside`` after each ``page``. An error of the source's own read
    (an id out of order, a line with no id) is raised where ``page`` raises it, after the pages
    before it.
    """

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
        """The run's pages from ``after_id`` on, transformed (see the class docstring)."""
        ...


@runtime_checkable
class RowsSetAside(Protocol):
    """An ``AuditSource`` that sets some rows aside as their ``Failed`` outcome instead of handing
    them over: an export's repeated id, a line with an id that cannot become a row.

    The run loop takes them after each ``page`` call and counts them in id order with that page's
    rows (the halt rule, the job's counts, ``on_outcomes``), and verify counts them as failed
    audits, so a file source is counted as a database source whose bad rows fail one by one.

    A page may end early in a run of rows set aside, with fewer rows than asked, or none: a page
    of no rows after which ``take_set_aside`` gives some is not the end (so a source holds a
    bounded number of them, whatever the run). The run loop asks each page after the highest id
    the one before handed, its rows' or those set aside; a page asked from an ``after_id`` behind
    that (a resume) may hand again rows set aside that were handed before: the loop drops those at
    or below its cursor. A source may hand a repeat of a page's last id after that page (with the
    next one): the loop lets the page's last rows of one id wait for it.
    """

    def take_set_aside(self) -> Sequence[Outcome]:
        """The outcomes of the rows set aside since the last call (each once), ascending by id."""
        ...


@runtime_checkable
class AuditSplitter(Protocol):
    """An ``AuditSource`` that can cut the in-scope ids into parts of equal row counts cheaply."""

    def id_quantiles(
        self, tenant: str, scope: Sequence[str], cutoff: dt.datetime | None, parts: int
    ) -> Sequence[int]:
        """The ids at the 1/parts … (parts-1)/parts quantiles of the in-scope ids, ascending."""
        ...


@runtime_checkable
class SourceMarks(Protocol):
    """An ``AuditSource`` that can mark what it holds, and tell a later run (another process) whether
    it still holds it: an export file, which may only grow by rows appended after its end.

    A job made over such a source keeps its mark (``MigrationJob.source_mark``, set by ``new_job``)
    and each run checks it before it reads a row (``SourceChanged`` when the source is another now):
    the cursor and counts of a job describe the rows behind its cursor in the source it was made
    over, and a source rewritten since would be read on from that cursor as if it were the same.
    A source that can also grow a mark (``GrowingSourceMarks``) has it grown over rows added after
    it, before a run hands one over, so the mark covers every row behind the cursor.
    """

    def source_mark(self) -> str | None:
        """What the source holds now, as short text a job store keeps (no secret, at most 200
        characters); None when it cannot be marked (a pipe: it cannot be read twice)."""
        ...

    def mark_changed(self, mark: str) -> str | None:
        """None while the source still holds what ``mark`` (a ``source_mark`` of this kind of
        source) marked, rows added after it allowed; else why not, in a few words with no secret
        (``SourceChanged`` carries them)."""
        ...


@runtime_checkable
class GrowingSourceMarks(SourceMarks, Protocol):
    """``SourceMarks`` whose mark a run grows over rows added after it (an export file's appended
    rows), before it hands one over: a later run or verify then refuses a source whose rows behind
    the cursor changed, added ones included. Kept apart from ``SourceMarks`` so a source written
    before this method existed is still checked (its mark then covers the rows at the job's start).
    """

    def grown_mark(self, mark: str) -> str | None:
        """``mark`` grown over what the source holds now, covering every row a read of it has
        handed so far, when it holds more than ``mark`` covers (rows added since); None while it
        holds no more (cheap: one ``stat`` of a file). The source's own error (``BAD_INPUT``) when
        what ``mark`` covers changed meanwhile: the source changed while the run read it."""
        ...

    def mark_covers(self, mark: str, grown: str) -> bool:
        """Whether ``mark`` (the job's mark as another run, a shard's, grew it meanwhile) covers
        every row ``grown`` (this source's last ``grown_mark``) covers, those rows the same: this
        run's rows then lie within it, and the run need not grow it again. False when it covers
        fewer (or cannot be told); the source's own error (``BAD_INPUT``) when the two differ
        where both cover the source: it changed while the runs read it."""
        ...
