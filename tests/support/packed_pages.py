"""A page pipeline that hands its pages back packed, as a page pool's workers do, in this process."""

from __future__ import annotations

from collections.abc import Generator, Iterable, Sequence

from crm_audit_transform.domain import AuditRow
from crm_audit_transform.packed import pack_outcomes
from crm_audit_transform.ports import LogEncoder
from crm_audit_transform.transformer import PageResult, Transformer
from crm_audit_transform.usecases.pages import InProcessPages, PageLookup, TransformedPage, encode_ahead


class PackedPages:
    """``InProcessPages`` whose pages come back as ``wire.pack`` gives them to the run loop: each
    migrated log encoded with the run's writer's encoder (but those the loop may name), packed."""

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
        for page in InProcessPages().transform_pages(
            pages, transformer, lookup, company_sso_id=company_sso_id, encoder=encoder
        ):
            result = page.result
            encode = (
                None
                if encoder is None
                else (lambda log: encode_ahead(log, encoder, names_entities=names_entities))
            )
            packed = pack_outcomes(result.outcomes, encode)
            yield TransformedPage(page.ids, PageResult(packed, None, result.fell_through, result.degraded))
