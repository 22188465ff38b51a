"""``activity_logs``: insert migrated logs idempotently, count them, and roll them back.

Idempotency is the partial unique index ``uniq_company_external_id``; nothing is read before a
write. A network error retries the whole batch with the same documents, each under an ``_id``
chosen here before the first attempt. That makes a retry's duplicates provable: a duplicate whose
stored ``_id`` is the one this call chose was written by this call's earlier attempt (its
acknowledgement was lost) and counts as ``inserted``; any other duplicate was there before and
counts as ``skipped: duplicate_external_id``. Nothing is counted twice or lost.

Each document is BSON-encoded once, with the collection's codec options: the size check needs its
bytes, and a pymongo collection is handed those very bytes (``RawBSONDocument``) instead of encoding
the dict a second time, which was a fifth of the client's CPU per insert
(benchmarks/bench_mongo_wire.py). Other collections (mongomock, test wrappers) get the dicts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

import bson
from bson import ObjectId
from bson.codec_options import CodecOptions
from bson.errors import BSONError
from bson.raw_bson import RawBSONDocument
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError

from crm_audit_transform import reasons
from crm_audit_transform.domain import SOURCE_TAG, ActivityLog, WriteResult

from .documents import encode_activity_log
from .documents_types import Document, MongoCollection, MongoDatabase, ReadDocument
from .names import CollectionNames
from .retry import DEFAULT_RETRY, RetryPolicy, call_with_retry

__all__ = ["MongoActivityLogStore"]

DUPLICATE_KEY_CODES: Final = frozenset({11000, 11001})
MAX_DOCUMENT_BYTES: Final = 16 * 1024 * 1024
"""MongoDB's document size limit; a larger log fails alone instead of failing its batch."""


class _Pending:
    __slots__ = ("doc", "encoded", "external_id", "index")

    def __init__(self, index: int, external_id: str, doc: Document, encoded: bytes) -> None:
        self.index = index
        self.external_id = external_id
        self.doc = doc
        self.encoded = encoded


class MongoActivityLogStore:
    """``ports.ActivityLogStore`` over a pymongo (or mongomock) collection."""

    __slots__ = ("_collection", "_raw", "_retry")

    def __init__(self, collection: MongoCollection, *, retry: RetryPolicy | None = None) -> None:
        self._collection = collection
        self._retry = retry or DEFAULT_RETRY
        # pymongo sends a RawBSONDocument's bytes as they are; anything else gets the dicts.
        self._raw = isinstance(collection, Collection)

    @classmethod
    def in_database(
        cls, db: MongoDatabase, names: CollectionNames | None = None, *, retry: RetryPolicy | None = None
    ) -> MongoActivityLogStore:
        return cls(db[(names or CollectionNames()).activity_logs], retry=retry)

    @property
    def collection(self) -> MongoCollection:
        """The underlying collection (enrichment patches the same documents)."""
        return self._collection

    def insert_batch(self, logs: Sequence[ActivityLog]) -> Sequence[WriteResult]:
        results: list[WriteResult | None] = [None] * len(logs)
        pending: list[_Pending] = []
        options = self._collection.codec_options if self._raw else None
        for index, log in enumerate(logs):
            problem, doc, encoded = _prepare(log, options)
            if problem:
                results[index] = WriteResult(log.external_id, "failed", reasons.WRITE_ERROR, problem)
            else:
                pending.append(_Pending(index, log.external_id, doc, encoded))
        if pending:
            written = call_with_retry(
                lambda attempt: self._insert(pending, attempt), self._retry, "insert activity logs"
            )
            for item, result in zip(pending, written, strict=True):
                results[item.index] = result
        return tuple(r for r in results if r is not None)

    def _insert(self, pending: Sequence[_Pending], attempt: int) -> list[WriteResult]:
        try:
            documents: list[Document | RawBSONDocument] = (
                [RawBSONDocument(item.encoded) for item in pending]
                if self._raw
                else [item.doc for item in pending]
            )
            self._collection.insert_many(documents, ordered=False)
            errors: Sequence[ReadDocument] = ()
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors") or ()
        by_position = {int(error["index"]): error for error in errors}
        duplicates = [pending[pos].doc["_id"] for pos, error in by_position.items() if _is_duplicate(error)]
        # Only a retried attempt can meet its own earlier writes; the first attempt reads nothing.
        ours = self._already_ours(duplicates) if attempt > 1 and duplicates else set()
        results: list[WriteResult] = []
        for pos, item in enumerate(pending):
            error = by_position.get(pos)
            if error is None or item.doc["_id"] in ours:
                results.append(WriteResult(item.external_id, "inserted"))
            elif _is_duplicate(error):
                results.append(WriteResult(item.external_id, "skipped", reasons.DUPLICATE_EXTERNAL_ID))
            else:
                message = f"code {error.get('code')}: {error.get('errmsg', 'write error')}"
                results.append(WriteResult(item.external_id, "failed", reasons.WRITE_ERROR, message))
        return results

    def _already_ours(self, ids: Sequence[ObjectId]) -> set[ObjectId]:
        return {doc["_id"] for doc in self._collection.find({"_id": {"$in": list(ids)}}, {"_id": 1})}

    def _migrated_filter(self, company_sso_id: str) -> Document:
        # The external_id condition is a second guard: native logs never carry one.
        return {"company_sso_id": company_sso_id, "source_tag": SOURCE_TAG, "external_id": {"$exists": True}}

    def delete_migrated(self, company_sso_id: str) -> int:
        """Delete this company's migrated logs; the count stays right when a retry was needed.

        A lost acknowledgement would make the retried ``delete_many`` report 0, so the count is
        taken before and after instead (rollback runs with no job writing for the account).
        """
        query = self._migrated_filter(company_sso_id)
        before = self.count_migrated(company_sso_id)
        attempts: list[int] = []

        def delete(attempt: int) -> int:
            attempts.append(attempt)
            return self._collection.delete_many(query).deleted_count

        deleted = call_with_retry(delete, self._retry, "delete migrated activity logs")
        if len(attempts) == 1:
            return deleted
        return max(deleted, before - self.count_migrated(company_sso_id))

    def count_migrated(self, company_sso_id: str) -> int:
        query = self._migrated_filter(company_sso_id)
        return call_with_retry(
            lambda _: self._collection.count_documents(query), self._retry, "count migrated activity logs"
        )


def _is_duplicate(error: ReadDocument) -> bool:
    """A duplicate key on our idempotency key (or on the ``_id`` we chose), not on another index.

    Servers name the index's keys in ``keyPattern``; when they do not (mongomock), code 11000 is
    taken to be ours, the only unique index the migration relies on.
    """
    if error.get("code") not in DUPLICATE_KEY_CODES:
        return False
    pattern = error.get("keyPattern")
    return not isinstance(pattern, Mapping) or "external_id" in pattern or list(pattern) == ["_id"]


def _prepare(log: ActivityLog, options: CodecOptions[Document] | None) -> tuple[str, Document, bytes]:
    """The document to insert under a fresh ``_id`` and its BSON, or why this one log cannot be written.

    ``options``: the collection's codec options, so the bytes are the ones pymongo would send
    (None: the defaults, for a collection that is handed the dict).
    """
    if not log.external_id:
        return "an activity log without external_id cannot be written idempotently", {}, b""
    try:
        doc = {"_id": ObjectId(), **encode_activity_log(log)}
        encoded = bson.encode(doc) if options is None else bson.encode(doc, codec_options=options)
    except (TypeError, ValueError, OverflowError, BSONError) as exc:
        return f"cannot encode the document: {exc}", {}, b""
    if len(encoded) > MAX_DOCUMENT_BYTES:
        return f"document of {len(encoded)} bytes exceeds MongoDB's {MAX_DOCUMENT_BYTES}-byte limit", {}, b""
    return "", doc, encoded
