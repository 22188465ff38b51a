"""The port enrichment drives: the CDP activity logs it reads and patches in place.

It lives beside the planner rather than in ``crm_audit_transform.ports`` only to keep the
enrichment package self-contained; it is a port like the others, with an in-memory
implementation in ``crm_audit_transform.testing.enrichment``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping, Sequence
from typing import Protocol

from .model import ApplyResult, EnrichmentPlan, MatchKey, StoredLog


class EnrichmentStore(Protocol):
    """``activity_logs`` (and the contacts' ``crm_data.id``) as enrichment reads and patches them."""

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

    def apply(self, plan: EnrichmentPlan) -> ApplyResult:
        """``$set`` each patch's keys on its target, each key only while it is still absent there."""
        ...
