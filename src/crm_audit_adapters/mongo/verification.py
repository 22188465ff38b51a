"""``MigratedLogReader`` on MongoDB: an account's logs read back for verify, by indexed queries.

* ``migrated_logs``: ``{company_sso_id, external_id: {$in: page}}`` — the prefix of
  ``uniq_company_external_id`` (migration 035), one query per page of audits.
* ``migrated_external_ids``: ``{company_sso_id, source_tag, external_id: {$type: "string", $gt: last}}``
  sorted by ``external_id`` — the order of ``uniq_company_external_id`` itself, so each keyset chunk
  (retried on its own) walks the index instead of sorting the account's logs; a stream over millions
  of logs holds one chunk and resumes after a network error where it was. The unique index makes
  ``external_id`` a total order; were it missing, a duplicate across a chunk boundary is still
  reported by the page pass.
* ``live_feed_candidates``: the enrichment store's query (the match key, ``external_id`` absent).

The content form of a log is BSON: ``actor``, ``attributes`` and ``timestamp`` are compared as
the bytes ``bson.encode`` gives, the string fields as they are. Equal bytes mean equal BSON
values as MongoDB compares them — a NaN equals itself, ``1`` and ``1.0`` differ, ``bytes`` and
``Binary`` subtype 0 are the same, and a sub-document whose keys were reordered differs (as it
does for the server) — which is what the CDP reads.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Final

import bson
from pymongo import ASCENDING

from crm_audit_transform.domain import SOURCE_TAG, ActivityLog
from crm_audit_transform.enrichment import MatchKey, StoredLog
from crm_audit_transform.enrichment.model import as_referent_id
from crm_audit_transform.verification import MigratedDoc

from .bson_values import decode_value, from_bson_datetime
from .documents import encode_activity_log
from .documents_types import Document, MongoCollection, MongoDatabase, ReadDocument
from .enrichment import DEFAULT_ENTITY_ID_PATH, MongoEnrichmentStore, encode_doc_id
from .names import CollectionNames
from .retry import DEFAULT_RETRY, RetryPolicy, call_with_retry

__all__ = ["MongoMigratedLogReader", "bson_content"]

_PROJECTION: Final = dict.fromkeys(
    (
        "external_id",
        "company_sso_id",
        "customer_id",
        "category",
        "action",
        "actor",
        "attributes",
        "timestamp",
        "source_tag",
        "metadata.crm_person_id",
        "metadata.linked_entity_id",
    ),
    1,
)
_ID_CHUNK: Final = 5_000
"""External ids per chunk of the stray stream (~0.3 MB of keys)."""


def _bson(value: object) -> bytes:
    return bson.encode({"v": value})


def bson_content(doc: ReadDocument) -> dict[str, object]:
    """The owned fields of an ``activity_logs`` document in their BSON form (absent ones left out)."""
    content: dict[str, object] = {}
    for name in ("customer_id", "category", "action"):
        if name in doc:
            content[name] = doc[name]
    for name in ("actor", "attributes", "timestamp"):
        if name in doc:
            content[name] = _bson(doc[name])
    return content


def migrated_doc(doc: ReadDocument) -> MigratedDoc | None:
    """A stored document as verify reads it; None when it lacks what a log must have."""
    timestamp = doc.get("timestamp")
    external_id = doc.get("external_id")
    if not isinstance(timestamp, dt.datetime) or not isinstance(external_id, str):
        return None
    metadata = doc.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    return MigratedDoc(
        doc_id=encode_doc_id(doc.get("_id")),
        external_id=external_id,
        company_sso_id=str(doc.get("company_sso_id", "")),
        customer_id=str(doc.get("customer_id", "")),
        category=str(doc.get("category", "")),
        action=str(doc.get("action", "")),
        timestamp=from_bson_datetime(timestamp),
        source_tag=str(doc.get("source_tag", "")),
        content=bson_content(doc),
        crm_person_id=as_referent_id(decode_value(metadata.get("crm_person_id"))),
        linked_entity_id=as_referent_id(decode_value(metadata.get("linked_entity_id"))),
    )


class MongoMigratedLogReader:
    """``ports.MigratedLogReader`` over the CDP's ``activity_logs`` collection."""

    __slots__ = ("_collection", "_live_feed", "_retry")

    def __init__(
        self,
        collection: MongoCollection,
        *,
        entity_id_path: str = DEFAULT_ENTITY_ID_PATH,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._collection = collection
        self._retry = retry or DEFAULT_RETRY
        self._live_feed = MongoEnrichmentStore(collection, entity_id_path=entity_id_path, retry=self._retry)

    @classmethod
    def in_database(
        cls, db: MongoDatabase, names: CollectionNames | None = None, *, retry: RetryPolicy | None = None
    ) -> MongoMigratedLogReader:
        return cls(db[(names or CollectionNames()).activity_logs], retry=retry)

    def migrated_logs(self, company_sso_id: str, external_ids: Collection[str]) -> Sequence[MigratedDoc]:
        if not external_ids:
            return ()
        query = {"company_sso_id": company_sso_id, "external_id": {"$in": list(external_ids)}}

        def fetch(_: int) -> list[Document]:
            return list(self._collection.find(query, _PROJECTION))

        docs = call_with_retry(fetch, self._retry, "read migrated activity logs")
        return [found for found in map(migrated_doc, docs) if found is not None]

    def migrated_external_ids(self, company_sso_id: str) -> Iterator[str]:
        base: Document = {
            "company_sso_id": company_sso_id,
            "source_tag": SOURCE_TAG,
            "external_id": {"$type": "string"},
        }
        after: str | None = None
        while True:
            query: Document = dict(base)
            if after is not None:
                query["external_id"] = {"$type": "string", "$gt": after}

            def fetch(_: int, query: Document = query) -> list[Document]:
                cursor = self._collection.find(query, {"_id": 0, "external_id": 1})
                return list(cursor.sort("external_id", ASCENDING).limit(_ID_CHUNK))

            chunk = call_with_retry(fetch, self._retry, "stream migrated external ids")
            for doc in chunk:
                yield doc["external_id"]
            if len(chunk) < _ID_CHUNK:
                return
            after = chunk[-1]["external_id"]

    def content_of(self, log: ActivityLog) -> Mapping[str, object]:
        return bson_content(encode_activity_log(log))

    def live_feed_candidates(
        self, keys: Collection[MatchKey], window: dt.timedelta
    ) -> Mapping[MatchKey, Sequence[StoredLog]]:
        return self._live_feed.live_feed_candidates(keys, window)
