"""The in-memory ``EnrichmentStore``: activity-log documents in their MongoDB shape, also written to as
an ``ActivityLogStore`` — one collection behind both ports, as the Mongo adapters share one.

Documents are plain dicts shaped like ``encode_activity_log`` output (``company_sso_id``,
``customer_id``, ``category``, ``action``, ``timestamp``, ``external_id`` and ``source_tag`` only
when set, ``metadata``), so fixtures read the same here and in the Mongo adapter's tests. Apply
follows the adapter's rules exactly: one guarded update per key, every filter field pinned. A run
wired with this store enriches what it inserted, and ``logs`` shows the patched metadata. Like
MongoDB, it refuses a key that would take its log past 16 MiB (``keys_too_large``) and leaves alone a
``metadata`` that is not a document.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import attrs

from ..bson_nesting import nests_past
from ..domain import SOURCE_TAG, ActivityLog, EncodedLog, WriteResult
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
from ._bson_size import ID_BYTES, MAX_DOCUMENT_BYTES, document_bytes
from ._log_limits import METADATA_ROOM, OVERFLOW
from .stores import insert_unordered, refuse_encoded, restored_log

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


def _document_of(log: ActivityLog) -> dict[str, Any]:
    # The fields enrichment reads and pins; the log itself is kept beside it for ``logs``.
    doc = activity_log_document(
        company_sso_id=log.company_sso_id,
        customer_id=log.customer_id,
        category=log.category,
        action=log.action,
        timestamp=log.timestamp,
        external_id=log.external_id,
        metadata=copy.deepcopy(dict(log.metadata)),
    )
    if log.source_tag:
        doc["source_tag"] = log.source_tag
    else:
        doc.pop("source_tag", None)
    return doc


def _at_path(document: Mapping[str, Any], path: str) -> Any:
    found: Any = document
    for part in path.split("."):
        if not isinstance(found, Mapping) or part not in found:
            return None
        found = found[part]
    return found


def _metadata_of(document: Mapping[str, Any]) -> Mapping[str, Any]:
    # A metadata that is not a document holds no key (a string's "in" would find a substring).
    metadata = document.get("metadata")
    return metadata if isinstance(metadata, Mapping) else {}


def _past_the_limit(document: Mapping[str, Any]) -> bool:
    """Whether MongoDB would refuse ``document`` for its size (an ObjectId ``_id`` counted when it
    has none); False when it holds a value outside the value model, which this cannot size."""
    try:
        size = document_bytes(document)
    except TypeError:
        return False
    return size + (0 if "_id" in document else ID_BYTES) > MAX_DOCUMENT_BYTES


def _aware(value: dt.datetime) -> dt.datetime:
    return as_utc(value, naive="utc")


class InMemoryEnrichmentStore:
    """Activity logs (and contacts' CRM person ids) in memory; ``doc_id`` orders by insertion.

    Two ways in: ``add(document)`` stores a raw document (any shape the CDP may hold), and the
    ``ActivityLogStore`` methods (``insert_batch``, ``add_native``, or ``logs=`` at construction)
    store ``ActivityLog`` values, which ``logs`` gives back with their metadata as patched since.
    ``persons`` maps ``(company_sso_id, customer_id)`` to the contact's ``crm_data.id``.
    """

    __slots__ = ("_docs", "_entity_id_path", "_keys", "_logs", "_next", "_persons", "updates")

    def __init__(
        self,
        documents: Iterable[Mapping[str, Any]] = (),
        *,
        logs: Iterable[ActivityLog] = (),
        persons: Mapping[tuple[str, str], int] | None = None,
        entity_id_path: str = DEFAULT_ENTITY_ID_PATH,
    ) -> None:
        self._docs: dict[str, dict[str, Any]] = {}
        self._logs: dict[str, ActivityLog] = {}
        # The partial unique index: each stored (company, external id) → the source_tag of the last
        # document holding it. Kept as documents come; a deletion or a restore drops it, to be built
        # again from the documents at the next insert (built per batch, a run cost the square of its
        # batches).
        self._keys: dict[tuple[str, str], object] | None = {}
        self._next = 1
        self._persons = dict(persons or {})
        self._entity_id_path = entity_id_path
        self.updates = 0
        """Guarded single-key updates attempted, like the adapter's round of update operations."""
        for document in documents:
            self.add(document)
        for log in logs:
            self.add_native(log)

    # -- documents ---------------------------------------------------------------------------
    def add(self, document: Mapping[str, Any]) -> str:
        """Store a copy of ``document`` and return its ``doc_id``."""
        return self._keep(copy.deepcopy(dict(document)))

    def _keep(self, document: dict[str, Any]) -> str:
        # ``document`` is the store's own from here: no caller holds it or any value in it.
        doc_id = f"{self._next:012d}"
        self._next += 1  # ids never repeat, even after a rollback deleted documents
        self._docs[doc_id] = document
        if self._keys is not None and isinstance(document.get("external_id"), str):
            self._keys[(document["company_sso_id"], document["external_id"])] = document.get("source_tag")
        return doc_id

    def _key_index(self) -> dict[tuple[str, str], object]:
        if self._keys is None:
            self._keys = {
                (doc["company_sso_id"], doc["external_id"]): doc.get("source_tag")
                for doc in self._docs.values()
                if isinstance(doc.get("external_id"), str)
            }
        return self._keys

    def document(self, doc_id: str) -> dict[str, Any]:
        """A copy of a stored document, for assertions."""
        return copy.deepcopy(self._docs[doc_id])

    @property
    def documents(self) -> dict[str, dict[str, Any]]:
        return copy.deepcopy(self._docs)

    def set_metadata(self, doc_id: str, key: str, value: Any) -> None:
        """Write one metadata key as a concurrent writer (the live feed, another run) would."""
        self._docs[doc_id].setdefault("metadata", {})[key] = value
        self._sync_log(doc_id)

    # -- ActivityLogStore --------------------------------------------------------------------
    @property
    def logs(self) -> tuple[ActivityLog, ...]:
        """Every log stored as an ``ActivityLog``, in insertion order (raw documents are not logs)."""
        return tuple(self._logs.values())

    def add_native(self, log: ActivityLog) -> None:
        """Store a log as the CDP holds it: a live-feed log (no ``external_id``) or one of ours."""
        # Built afresh, its metadata a deep copy: ``add``'s second copy of the whole document (its
        # timestamp rebuilt through ``__reduce_ex__``) was about a quarter of an in-memory run's CPU.
        doc_id = self._keep(_document_of(log))
        self._logs[doc_id] = log

    def insert_batch(self, logs: Sequence[ActivityLog | EncodedLog]) -> Sequence[WriteResult]:
        # Unordered insert against the partial unique index: each duplicate is reported, the rest land.
        # It has no log_encoder, so an EncodedLog reaching it is a wiring mistake. A log MongoDB
        # would refuse (past 16 MiB, nested past 100 levels) fails alone, as it does there.
        return insert_unordered(refuse_encoded(logs, self), self._key_index(), self.add_native)

    def _forget(self, doc_ids: Iterable[str]) -> None:
        for doc_id in doc_ids:
            del self._docs[doc_id]
            self._logs.pop(doc_id, None)
            self._keys = None  # another document may hold the key: built again at the next insert

    def _migrated(self, doc: Mapping[str, Any], company_sso_id: str) -> bool:
        return doc["company_sso_id"] == company_sso_id and doc.get("source_tag") == SOURCE_TAG

    def delete_migrated(self, company_sso_id: str) -> int:
        gone = [doc_id for doc_id, doc in self._docs.items() if self._migrated(doc, company_sso_id)]
        self._forget(gone)
        return len(gone)

    def migrated_chunk(self, company_sso_id: str, limit: int) -> Sequence[object]:
        """The document ids of at most ``limit`` of the company's migrated logs (``MigratedLogsInChunks``)."""
        return [doc_id for doc_id, doc in self._docs.items() if self._migrated(doc, company_sso_id)][:limit]

    def delete_migrated_chunk(self, company_sso_id: str, chunk: Sequence[object]) -> int:
        ids = dict.fromkeys(str(doc_id) for doc_id in chunk)
        gone = [
            doc_id
            for doc_id in ids
            if doc_id in self._docs and self._migrated(self._docs[doc_id], company_sso_id)
        ]
        self._forget(gone)
        return len(gone)

    def delete_migrated_ids(self, company_sso_id: str, external_ids: Collection[str]) -> int:
        wanted = set(external_ids)
        gone = [
            doc_id
            for doc_id, doc in self._docs.items()
            if self._migrated(doc, company_sso_id) and doc.get("external_id") in wanted
        ]
        self._forget(gone)
        return len(gone)

    def count_migrated(self, company_sso_id: str) -> int:
        return sum(1 for doc in self._docs.values() if self._migrated(doc, company_sso_id))

    def restore_migrated(self, log: ActivityLog, run_keys: Collection[str]) -> bool:
        """Set this company's ``crm_migration`` logs of ``log``'s ``external_id`` back to ``log``,
        keeping their metadata keys that are not ``run_keys`` (``ports.MigratedLogsRestore``)."""
        found = False
        for doc_id, doc in list(self._docs.items()):
            ours = doc_id in self._logs and self._migrated(doc, log.company_sso_id)
            if ours and doc.get("external_id") == log.external_id:
                restored = restored_log(log, doc.get("metadata"), run_keys)
                self._docs[doc_id] = _document_of(restored)
                self._logs[doc_id] = restored
                self._keys = None
                found = True
        return found

    def _sync_log(self, doc_id: str) -> None:
        log = self._logs.get(doc_id)
        metadata = self._docs[doc_id].get("metadata")
        if log is not None and isinstance(metadata, dict) and metadata != log.metadata:
            self._logs[doc_id] = attrs.evolve(log, metadata=copy.deepcopy(metadata))

    # -- EnrichmentStore ---------------------------------------------------------------------
    def _stored(self, doc_id: str, doc: Mapping[str, Any]) -> StoredLog:
        metadata = _metadata_of(doc)
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
            metadata = _metadata_of(doc)
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
        """Each key by its own guarded update, as the adapter's fallback applies them: set when absent;
        ``keys_too_large`` when the log (with an ObjectId ``_id``) would pass MongoDB's 16 MiB;
        ``keys_refused["Overflow"]`` (first, whatever the log) when the value would nest the log past
        MongoDB's 100 levels; ``keys_left_alone`` when present, on a log that no longer matches, or
        on a ``metadata`` that is not a document (MongoDB's ``PathNotViable``); a missing
        ``metadata`` is created."""
        result = EnrichmentTally()
        for patch in plan.patches:
            doc = self._docs.get(patch.target.doc_id)
            keys_set = too_large = too_deep = 0
            for key, value in patch.sets.items():
                if nests_past(value, METADATA_ROOM):
                    too_deep += 1  # the adapter refuses it before sending, as MongoDB would (code 15)
                    continue
                self.updates += 1
                if doc is None or not self._matches(doc, patch.target):
                    continue
                created = "metadata" not in doc
                metadata = doc.setdefault("metadata", {})
                if not isinstance(metadata, dict) or key in metadata:
                    continue
                metadata[key] = copy.deepcopy(value)
                if _past_the_limit(doc):
                    # MongoDB refuses the update whole: the log stays as it was.
                    del metadata[key]
                    if created:
                        del doc["metadata"]
                    too_large += 1
                    continue
                keys_set += 1
            if keys_set:
                self._sync_log(patch.target.doc_id)
            result += EnrichmentTally(
                patched=int(keys_set > 0),
                keys_set=keys_set,
                keys_left_alone=len(patch.sets) - keys_set - too_large - too_deep,
                keys_too_large=too_large,
                keys_refused={OVERFLOW: too_deep},
            )
        return result
