"""The CDP timeline in memory behind both ports a run writes through: logs in, enrichment in place.

``InMemoryActivityLogStore`` keeps ``ActivityLog`` values; this store is one, and also the
``EnrichmentStore`` over the very same logs, the way the Mongo adapters share one collection.
So a run wired with it enriches what it just inserted, and ``logs`` shows the patched metadata.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Mapping, Sequence

import attrs

from ..domain import ActivityLog, Contact
from ..enrichment.model import (
    ASSOCIATION_ACTIONS,
    ENRICHMENT_KEYS,
    EnrichmentPlan,
    MatchKey,
    StoredLog,
    Target,
)
from ..enrichment_tally import EnrichmentTally
from .stores import InMemoryActivityLogStore

__all__ = ["InMemoryTimelineStore"]


def _doc_id(position: int) -> str:
    return f"{position:012d}"


class InMemoryTimelineStore(InMemoryActivityLogStore):
    """Activity logs in memory as an ``ActivityLogStore`` and an ``EnrichmentStore`` at once.

    A log's ``doc_id`` is its position in ``logs`` (so ids order by insertion); ``delete_migrated``
    renumbers them, which a patch planned before a rollback survives only because every target's
    pinned fields are checked again on apply. Live-feed logs keep the linked entity id at
    ``metadata.linked_entity_id``. ``contacts`` supply ``crm_data.id`` by customer id.
    """

    __slots__ = ("_persons", "updates")

    def __init__(self, logs: Iterable[ActivityLog] = (), *, contacts: Iterable[Contact] = ()) -> None:
        super().__init__(logs)
        self._persons = {(c.company_sso_id, c.id): c.crm_person_id for c in contacts}
        self.updates = 0
        """Guarded single-key updates attempted, like the other enrichment stores count them."""

    def _stored(self, position: int) -> StoredLog:
        log = self._logs[position]
        return StoredLog(
            doc_id=_doc_id(position),
            company_sso_id=log.company_sso_id,
            customer_id=log.customer_id,
            category=log.category,
            action=log.action,
            timestamp=log.timestamp,
            external_id=log.external_id,
            metadata=log.metadata,
            entity_id=log.metadata.get("linked_entity_id"),
        )

    def logs_by_external_ids(
        self, company_sso_id: str, external_ids: Collection[str]
    ) -> Mapping[str, StoredLog]:
        wanted = set(external_ids)
        return {
            log.external_id: self._stored(position)
            for position, log in enumerate(self._logs)
            if log.company_sso_id == company_sso_id and log.external_id and log.external_id in wanted
        }

    def live_feed_candidates(
        self, keys: Collection[MatchKey], window: dt.timedelta
    ) -> Mapping[MatchKey, Sequence[StoredLog]]:
        live = [
            self._stored(position)
            for position, log in enumerate(self._logs)
            if not log.external_id and log.metadata.get("linked_entity_id") is not None
        ]
        return {key: tuple(log for log in live if key.matches(log, window)) for key in keys}

    def crm_person_ids(self, company_sso_id: str, customer_ids: Collection[str]) -> Mapping[str, int]:
        known = self._persons
        return {c: known[(company_sso_id, c)] for c in customer_ids if (company_sso_id, c) in known}

    def association_logs_lacking(
        self, company_sso_id: str, *, after: str | None, limit: int
    ) -> Sequence[StoredLog]:
        found: list[StoredLog] = []
        start = 0 if after is None else int(after) + 1
        for position in range(start, len(self._logs)):
            log = self._logs[position]
            if log.company_sso_id != company_sso_id or log.action not in ASSOCIATION_ACTIONS:
                continue
            if all(key in log.metadata for key in ENRICHMENT_KEYS):
                continue
            found.append(self._stored(position))
            if len(found) == limit:
                break
        return tuple(found)

    def _target_at(self, target: Target) -> int | None:
        position = int(target.doc_id) if target.doc_id.isdigit() else -1
        if not 0 <= position < len(self._logs):
            return None
        log = self._logs[position]
        pinned = (
            log.company_sso_id == target.company_sso_id
            and log.customer_id == target.customer_id
            and log.category == target.category
            and log.action == target.action
            and log.action in ASSOCIATION_ACTIONS
            and log.external_id == target.external_id
        )
        return position if pinned else None

    def apply(self, plan: EnrichmentPlan) -> EnrichmentTally:
        result = EnrichmentTally()
        for patch in plan.patches:
            position = self._target_at(patch.target)
            keys_set = 0
            for key, value in patch.sets.items():
                self.updates += 1
                if position is None:
                    continue
                log = self._logs[position]
                if key in log.metadata:
                    continue
                self._logs[position] = attrs.evolve(log, metadata={**log.metadata, key: value})
                keys_set += 1
            result += EnrichmentTally(
                patched=int(keys_set > 0), keys_set=keys_set, keys_left_alone=len(patch.sets) - keys_set
            )
        return result
