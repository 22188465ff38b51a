"""``activity_logs`` as enrichment reads and patches it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from ..enrichment_tally import EnrichmentTally

if TYPE_CHECKING:  # the enrichment package imports these ports: annotations only, no import cycle
    from ..enrichment.model import EnrichmentPlan, MatchKey, StoredLog


class EnrichmentStore(Protocol):
    """``activity_logs`` (and the contacts' ``crm_data.id``) as enrichment reads and patches them.

    Logs already in the CDP (the live feed's, and ours from before) are enriched in place; see
    docs/enrichment.md.
    """

    def logs_by_external_ids(
        self, company_sso_id: str, external_ids: Collection[str]
    ) -> Mapping[str, StoredLog]:
        """Our logs of the company by ``external_id``; ids it does not hold are absent."""
        ...

    def live_feed_candidates(
        self, keys: Collection[MatchKey], window: dt.timedelta
    ) -> Mapping[MatchKey, Sequence[StoredLog]]:
        """Per key, every log without ``external_id`` that the key matches within ``window``."""
        ...

    def crm_person_ids(self, company_sso_id: str, customer_ids: Collection[str]) -> Mapping[str, int]:
        """The ``crm_data.id`` of the company's contacts by customer id; contacts without one are absent."""
        ...

    def association_logs_lacking(
        self, company_sso_id: str, *, after: str | None, limit: int
    ) -> Sequence[StoredLog]:
        """Association logs of the company missing any enrichment key, by ``doc_id`` after ``after``."""
        ...

    def apply(self, plan: EnrichmentPlan) -> EnrichmentTally:
        """``$set`` each patch's keys on its target, each key only while it is still absent there."""
        ...
