"""Transformed pages: the CPU part of the run loop, done here or spread over worker processes.

The run loop reads its pages (keyset, in id order) lazily and hands them to a
:class:`~crm_audit_transform.ports.PagePipeline` together with a :data:`PageLookup` — the batched
lookups of one page, which the loop's own thread performs. The pipeline gives each page back as a
:class:`TransformedPage`, in the order the pages came, and calls ``lookup`` once per page, in that
same order; it decides only *where* a page is prepared and transformed — and, when the loop's
lookups can be copied to another process (``lookup.RunLookups.for_worker``), where it is looked up.
So whatever the pipeline, the loop writes the same steps in the same order and saves the same
cursor after each.

:class:`InProcessPages` is the default: each page prepared, looked up and transformed in turn, in
this process (what ``run_job`` always did). ``crm_audit_adapters.page_pool.ProcessPagePipeline``
spreads the loading and the rules over worker processes while the loop keeps reading, looking up
and writing, one page after another.

A source that can tell a page by its ids alone (``ports.AuditPageIds``: PostgreSQL) and a pipeline
that reads pages itself (``ports.SpanPipeline``) go one step further: the loop reads only each
page's ids, as a :class:`PageSpan`, and the rows' text is read where the page is transformed (a
worker process, over its own connection), so the loop never fetches nor ships it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Generator, Iterable, Sequence
from typing import TYPE_CHECKING

from attrs import frozen

from ..domain import ActivityLog, AuditRow, EncodedLog
from ..lookup import LookupContext, LookupRequest
from ..transformer import PageResult, Transformer
from ._entity_names import NAME_KEY, may_be_named

if TYPE_CHECKING:  # the ports module names this one's types in annotations only
    from ..ports import LogEncoder

__all__ = ["InProcessPages", "PageLookup", "PageSpan", "TransformedPage", "encode_ahead", "encoded_log"]
# Not in __all__ (the public surface has a budget): RangeRows, ReadIds, read_ids.

PageLookup = Callable[[LookupRequest], LookupContext]
"""The batched lookups of one page: its request in, the context its rules read out (may raise
what the lookup ports raise, e.g. ``DirectoryRefused``)."""


@frozen
class TransformedPage:
    """One page's row ids as read (ascending) and its result: one outcome per row, in that order."""

    ids: Sequence[int]
    result: PageResult


@frozen
class PageSpan:
    """A page told by its row ids alone (``ports.AuditPageIds.page_ids``); its rows are read later,
    where the page is transformed.

    Its rows are the rows of ``tenant`` with these ``ids`` that are still in ``scope`` at or after
    ``cutoff`` when they are read (``ports.AuditPageIds.span_rows``): a row inserted meanwhile with
    an id between two of them is not one of them (a keyset page read in one go never holds it
    either: the cursor passes it), and a row deleted or moved out of scope meanwhile is simply not
    read, so the page has fewer rows than ids.

    ``extent`` is where the source holds those rows, when it tells (``ports.PageExtents``: an export
    file's byte range and the number of its first line), for its span reader to read them there;
    empty for a source that finds them by id (PostgreSQL). A span with an extent and no ids is a
    whole range (``ports.PagesByRange``): its reader reads every row of it in scope and gives them
    as ``RangeRows``.
    """

    tenant: str
    scope: tuple[str, ...]
    cutoff: dt.datetime
    ids: tuple[int, ...]
    extent: tuple[int, ...] = ()


class ReadIds(tuple[int, ...]):
    """The ids of the rows a span's reader read from a whole range (``ports.PagesByRange``), in
    order, and ``told``: what the reader says of the range's other lines, for the source that cut
    it (opaque here; it must pickle). Crosses back from a worker as a page's ids."""

    told: object = None

    def __new__(cls, ids: Iterable[int], told: object = None) -> ReadIds:
        made = super().__new__(cls, ids)
        made.told = told
        return made

    def __getnewargs__(self) -> tuple[tuple[int, ...], object]:
        return tuple(self), self.told


class RangeRows(list[AuditRow]):
    """The rows a span's reader read from a whole range, and their ``ReadIds`` (``read_ids``)."""

    __slots__ = ("ids",)

    def __init__(self, rows: Iterable[AuditRow], told: object) -> None:
        super().__init__(rows)
        self.ids = ReadIds([row.id for row in self], told)


def read_ids(rows: Sequence[AuditRow]) -> tuple[int, ...]:
    """The ids of the rows a span's reader gave, as they go back to the pipeline: a range's
    ``ReadIds`` (with what its reader told), else the rows' own."""
    return rows.ids if isinstance(rows, RangeRows) else tuple(row.id for row in rows)


class InProcessPages:
    """``PagePipeline`` in the caller's process: prepare, look up, transform, one page at a time."""

    __slots__ = ()

    def transform_pages(
        self,
        pages: Iterable[Sequence[AuditRow]],
        transformer: Transformer,
        lookup: PageLookup,
        *,
        company_sso_id: str,
        encoder: LogEncoder | None = None,
        names_entities: bool = False,
    ) -> Generator[TransformedPage, None, None]:
        """The pages, each transformed here; its logs stay ``ActivityLog`` (``encoder`` is not used:
        the writer, in this same process, encodes each log once anyway)."""
        for rows in pages:
            prepared = transformer.prepare(rows)
            context = lookup(transformer.plan(prepared))
            result = transformer.transform(prepared, context, company_sso_id=company_sso_id)
            yield TransformedPage([row.id for row in rows], result)


def encode_ahead(log: ActivityLog, encoder: LogEncoder, *, names_entities: bool) -> ActivityLog | EncodedLog:
    """``log`` as ``encoder`` encodes it, or ``log`` itself when the run loop may still change it.

    With ``names_entities`` the loop gives an association log its ``linked_entity_name`` before
    writing it (``_entity_names``): such a log is left as it is, to be encoded after it was named.
    Every other log is written exactly as the transformer made it, so its encoding can be made
    wherever it was transformed.
    """
    if names_entities and may_be_named(log):
        return log
    return encoder(log)


def encoded_log(log: ActivityLog, encoding: str, data: bytes, problem: str = "") -> EncodedLog:
    """The ``EncodedLog`` of ``log`` as a writer's encoder makes it: ``data`` in ``encoding``, or
    ``problem`` (``data`` empty) when that writer would refuse the log."""
    return EncodedLog(
        log.company_sso_id,
        log.external_id,
        log.action,
        encoding,
        data,
        problem,
        log.source_tag,
        NAME_KEY in log.metadata,
    )
