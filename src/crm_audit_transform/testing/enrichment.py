"""An in-memory ``EnrichmentStore`` over activity-log documents in their MongoDB shape.

Documents are plain dicts shaped like ``encode_activity_log`` output (``company_sso_id``,
``customer_id``, ``category``, ``action``, ``timestamp``, ``external_id`` only when set,
``metadata``), so fixtures read the same here and in the Mongo adapter's tests. Apply follows the
adapter's rules exactly: one guarded update per key, every filter field pinned.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from ..enrichment.model import (
    ASSOCIATION_ACTIONS,
    ENRICHMENT_KEYS,
    EnrichmentPlan,
    MatchKey,
    StoredLog,
    Target,
)
from ..enrichment_tally import EnrichmentTally
from ..timestamps import as_utc

__all__ = ["InMemoryEnrichmentStore", "activity_log_document"]

DEFAULT_ENTITY_ID_PATH = "metadata.linked_entity_id"


def activity_log_document(
    *,
    company_sso_id: str,
    customer_id: str,
    category: str,
    action: str,
    timestamp: dt.datetime,
    external_id: str = "",
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """An ``activity_logs`` document of either shape: ours (with ``external_id``) or the live feed's.

    A live-feed document has no ``external_id`` key and no ``source_tag``; ours has both.
    """
    doc: dict[str, Any] = {
        "company_sso_id": company_sso_id,
        "customer_id": customer_id,
        "category": category,
        "action": action,
        "actor": {"type": "system", "name": "Qontak System"},
        "attributes": [],
        "timestamp": timestamp,
    }
    if external_id:
        doc["external_id"] = external_id
        doc["source_tag"] = "crm_migration"
    if metadata is not None:
        doc["metadata"] = dict(metadata)
    return doc


def _at_path(document: Mapping[str, Any], path: str) -> Any:
    found: Any = document
    for part in path.split("."):
        if not isinstance(found, Mapping) or part not in found:
            return None
        found = found[part]
    return found


def _aware(value: dt.datetime) -> dt.datetime:
    return as_utc(value, naive="utc")


class InMemoryEnrichmentStore:
    """Activity logs (and contacts' CRM person ids) in memory; ``doc_id`` orders by insertion."""

    __slots__ = ("_docs", "_entity_id_path", "_persons", "updates")

    def __init__(
        self,
        documents: Iterable[Mapping[str, Any]] = (),
        *,
        persons: Mapping[tuple[str, str], int] | None = None,
        entity_id_path: str = DEFAULT_ENTITY_ID_PATH,
    ) -> None:
        self._docs: dict[str, dict[str, Any]] = {}
        self._persons = dict(persons or {})
        self._entity_id_path = entity_id_path
        self.updates = 0
        """Guarded single-key updates attempted, like the adapter's round of update operations."""
        for document in documents:
            self.add(document)

    def add(self, document: Mapping[str, Any]) -> str:
        """Store a copy of ``document`` and return its ``doc_id``."""
        doc_id = f"{len(self._docs) + 1:012d}"
        self._docs[doc_id] = copy.deepcopy(dict(document))
        return doc_id

    def document(self, doc_id: str) -> dict[str, Any]:
        """A copy of a stored document, for assertions."""
        return copy.deepcopy(self._docs[doc_id])

    @property
    def documents(self) -> dict[str, dict[str, Any]]:
        return copy.deepcopy(self._docs)

    def set_metadata(self, doc_id: str, key: str, value: Any) -> None:
        """Write one metadata key as a concurrent writer (the live feed, another run) would."""
        self._docs[doc_id].setdefault("metadata", {})[key] = value

    def _stored(self, doc_id: str, doc: Mapping[str, Any]) -> StoredLog:
        metadata = doc.get("metadata") or {}
        return StoredLog(
            doc_id=doc_id,
            company_sso_id=doc["company_sso_id"],
            customer_id=doc["customer_id"],
            category=doc["category"],
            action=doc["action"],
            timestamp=_aware(doc["timestamp"]),
            external_id=doc.get("external_id") or "",
            metadata={k: metadata[k] for k in ENRICHMENT_KEYS if k in metadata},
            entity_id=_at_path(doc, self._entity_id_path),
        )

    def logs_by_external_ids(
        self, company_sso_id: str, external_ids: Collection[str]
    ) -> Mapping[str, StoredLog]:
        wanted = set(external_ids)
        return {
            doc["external_id"]: self._stored(doc_id, doc)
            for doc_id, doc in self._docs.items()
            if doc["company_sso_id"] == company_sso_id and doc.get("external_id") in wanted
        }

    def live_feed_candidates(
        self, keys: Collection[MatchKey], window: dt.timedelta
    ) -> Mapping[MatchKey, Sequence[StoredLog]]:
        # Like the adapter's query: only logs that hold an id at the entity-id path are candidates.
        live = [
            self._stored(doc_id, doc)
            for doc_id, doc in self._docs.items()
            if "external_id" not in doc and _at_path(doc, self._entity_id_path) is not None
        ]
        return {key: tuple(log for log in live if key.matches(log, window)) for key in keys}

    def crm_person_ids(self, company_sso_id: str, customer_ids: Collection[str]) -> Mapping[str, int]:
        known = self._persons
        return {c: known[(company_sso_id, c)] for c in customer_ids if (company_sso_id, c) in known}

    def association_logs_lacking(
        self, company_sso_id: str, *, after: str | None, limit: int
    ) -> Sequence[StoredLog]:
        found = []
        for doc_id in sorted(self._docs):
            doc = self._docs[doc_id]
            if after is not None and doc_id <= after:
                continue
            if doc["company_sso_id"] != company_sso_id or doc["action"] not in ASSOCIATION_ACTIONS:
                continue
            metadata = doc.get("metadata") or {}
            if all(key in metadata for key in ENRICHMENT_KEYS):
                continue
            found.append(self._stored(doc_id, doc))
            if len(found) == limit:
                break
        return tuple(found)

    def _matches(self, doc: Mapping[str, Any], target: Target) -> bool:
        pinned = (
            doc["company_sso_id"] == target.company_sso_id
            and doc["customer_id"] == target.customer_id
            and doc["category"] == target.category
            and doc["action"] == target.action
            and doc["action"] in ASSOCIATION_ACTIONS
        )
        if target.external_id:
            return pinned and doc.get("external_id") == target.external_id
        return pinned and "external_id" not in doc

    def apply(self, plan: EnrichmentPlan) -> EnrichmentTally:
        result = EnrichmentTally()
        for patch in plan.patches:
            doc = self._docs.get(patch.target.doc_id)
            keys_set = 0
            for key, value in patch.sets.items():
                self.updates += 1
                if doc is None or not self._matches(doc, patch.target):
                    continue
                if not isinstance(doc.get("metadata"), dict):
                    doc["metadata"] = {}
                metadata = doc["metadata"]
                if key in metadata:
                    continue
                metadata[key] = copy.deepcopy(value)
                keys_set += 1
            result += EnrichmentTally(
                patched=int(keys_set > 0), keys_set=keys_set, keys_left_alone=len(patch.sets) - keys_set
            )
        return result
