"""Where a run's pages are prepared and transformed: in this process or in workers."""

from __future__ import annotations

from collections.abc import Generator, Iterable, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ..domain import AuditRow
from .audit_source import AuditPageIds
from .log_stores import LogEncoder

if TYPE_CHECKING:  # the page types import the lookup ports: annotations only
    from ..transformer import Transformer
    from ..usecases.pages import PageLookup, PageSpan, TransformedPage


class PagePipeline(Protocol):
    """Where a run's pages are prepared and transformed: here (``usecases.InProcessPages``) or in workers.

    Given the pages (read lazily, in id order) and the page's batched lookups, it yields one
    ``TransformedPage`` per page in the order given, and calls ``lookup`` once per page in that
    order, from the caller's thread — except that when ``lookup`` is a ``lookup.RunLookups`` whose
    ``for_worker`` gives a copy, a pipeline that transforms pages in other processes may have each
    of those pages looked up there, by the copy (each process its own cache, not in page order).
    It may read pages ahead (a bounded number) and must stop its
    work when the generator is closed (the loop halted, stopped or was cancelled).

    ``encoder`` is the run's writer's (``EncodingLogWriter``), or None. A pipeline that transforms
    elsewhere may give migrated logs back as that encoder's ``EncodedLog``, except — when
    ``names_entities`` (the loop names linked entities before writing) — the logs the loop may still
    change (``usecases.pages.encode_ahead`` applies the rule). One that transforms here ignores it.
    """

    def transform_pages(
        self,
        pages: Iterable[Sequence[AuditRow]],
        transformer: Transformer,
        lookup: PageLookup,
        *,
        company_sso_id: str,
        encoder: LogEncoder | None = None,
        names_entities: bool = False,
    ) -> Generator[TransformedPage, None, None]: ...


@runtime_checkable
class SpanPipeline(PagePipeline, Protocol):
    """A ``PagePipeline`` that can also take pages by their ids (``usecases.pages.PageSpan``) and
    read their rows where it transforms them: in this process with ``source.span_rows``, in another
    with ``source.span_reader()`` (``AuditPageIds``).

    ``transform_spans`` keeps ``transform_pages``' contract (order, one ``lookup`` per page in page
    order, from the caller's thread); each ``TransformedPage`` holds the ids of the rows actually
    read, which may be fewer than the span's (a row deleted meanwhile).
    """

    def transform_spans(
        self,
        spans: Iterable[PageSpan],
        source: AuditPageIds,
        transformer: Transformer,
        lookup: PageLookup,
        *,
        company_sso_id: str,
        encoder: LogEncoder | None = None,
        names_entities: bool = False,
    ) -> Generator[TransformedPage, None, None]: ...
