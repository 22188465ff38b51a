"""Transformed pages: the CPU part of the run loop, done here or spread over worker processes.

The run loop reads its pages (keyset, in id order) lazily and hands them to a
:class:`~crm_audit_transform.ports.PagePipeline` together with a :data:`PageLookup` — the batched
lookups of one page, which the loop's own thread performs. The pipeline gives each page back as a
:class:`TransformedPage`, in the order the pages came, and calls ``lookup`` once per page, in that
same order; it decides only *where* a page is prepared and transformed. So whatever the pipeline,
the loop writes the same steps in the same order and saves the same cursor after each.

:class:`InProcessPages` is the default: each page prepared, looked up and transformed in turn, in
this process (what ``run_job`` always did). ``crm_audit_adapters.page_pool.ProcessPagePipeline``
spreads the loading and the rules over worker processes while the loop keeps reading, looking up
and writing, one page after another.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Sequence

from attrs import frozen

from ..domain import AuditRow
from ..lookup import LookupContext, LookupRequest
from ..transformer import PageResult, Transformer

__all__ = ["InProcessPages", "PageLookup", "TransformedPage"]

PageLookup = Callable[[LookupRequest], LookupContext]
"""The batched lookups of one page: its request in, the context its rules read out (may raise
what the lookup ports raise, e.g. ``DirectoryRefused``)."""


@frozen
class TransformedPage:
    """One page as read (``rows``, in id order) and its result: one outcome per row, in order."""

    rows: Sequence[AuditRow]
    result: PageResult


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
    ) -> Generator[TransformedPage, None, None]:
        for rows in pages:
            prepared = transformer.prepare(rows)
            context = lookup(transformer.plan(prepared))
            result = transformer.transform(prepared, context, company_sso_id=company_sso_id)
            yield TransformedPage(rows, result)
