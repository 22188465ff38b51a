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
from typing import TYPE_CHECKING

from attrs import frozen

from ..domain import ActivityLog, AuditRow, EncodedLog
from ..lookup import LookupContext, LookupRequest
from ..transformer import PageResult, Transformer
from ._entity_names import NAME_KEY, may_be_named

if TYPE_CHECKING:  # the ports module names this one's types in annotations only
    from ..ports import LogEncoder

__all__ = ["InProcessPages", "PageLookup", "TransformedPage", "encode_ahead", "encoded_log"]

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
        encoder: LogEncoder | None = None,
        names_entities: bool = False,
    ) -> Generator[TransformedPage, None, None]:
        """The pages, each transformed here; its logs stay ``ActivityLog`` (``encoder`` is not used:
        the writer, in this same process, encodes each log once anyway)."""
        for rows in pages:
            prepared = transformer.prepare(rows)
            context = lookup(transformer.plan(prepared))
            result = transformer.transform(prepared, context, company_sso_id=company_sso_id)
            yield TransformedPage(rows, result)


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
