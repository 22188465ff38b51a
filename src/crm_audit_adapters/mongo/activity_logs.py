"""``activity_logs``: insert migrated logs idempotently, count them, and roll them back.

Idempotency is the partial unique index ``uniq_company_external_id``; nothing is read before a
write. A network error retries the whole batch with the same documents, each under an ``_id``
chosen here before the first attempt. That makes a retry's duplicates provable: a duplicate whose
stored ``_id`` is the one this call chose was written by this call's earlier attempt (its
acknowledgement was lost) and counts as ``inserted``; any other duplicate was there before and
counts as ``skipped: duplicate_external_id``. Nothing is counted twice or lost. A duplicate whose
key a log of another ``source_tag`` holds (another tool's) is ``failed: write_error`` instead: the
run counts a duplicate as migrated, and that log is not ours (``_held_by_others``).

Each document is BSON-encoded once, with the collection's codec options: the size check needs its
bytes, and a pymongo collection is handed those very bytes (``RawBSONDocument``) instead of encoding
the dict a second time, which was a fifth of the client's CPU per insert
(benchmarks/bench_mongo_wire.py). Other collections (mongomock, test wrappers) get the dicts.

Encoded ahead (``ports.EncodingLogWriter``): ``log_encoder`` is a ``BsonLogEncoder``, which a
``--workers`` process runs where it transformed the log: the document's BSON without ``_id``, checked
for size as here. The store prepends the ``_id`` element it chose (17 bytes: type, ``"_id\0"``, the
ObjectId) and hands pymongo those bytes, so the writing process encodes nothing. The bytes are the
ones this store would have made itself: a document with ``_id`` first encodes as its ``_id`` element
followed by the other elements, and our documents hold no value whose encoding depends on the codec
options other than their ``type_registry`` (no ``uuid.UUID``), so a collection with a type registry
gets no encoder and encodes here. A collection that is handed dicts (mongomock) has no encoder either.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping, Sequence
from collections.abc import Collection as Ids
from typing import Any, Final, TypeVar, cast

import attrs
import bson
import pymongo
from attrs import frozen
from bson import ObjectId
from bson.codec_options import CodecOptions
from bson.errors import BSONError
from bson.raw_bson import RawBSONDocument
from pymongo import UpdateMany
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError, ProtocolError, WriteConcernError

from crm_audit_transform import reasons
from crm_audit_transform.domain import (
    HELD_BY_ANOTHER_TOOL,
    NO_EXTERNAL_ID,
    SOURCE_TAG,
    ActivityLog,
    EncodedLog,
    WriteResult,
)
from crm_audit_transform.errors import RestoreRefused
from crm_audit_transform.ports.log_stores import RestoreResult
from crm_audit_transform.usecases.pages import encoded_log

from .document_limits import ID_BYTES, ID_ELEMENT, MAX_DOCUMENT_BYTES, too_large
from .documents import encode_activity_log
from .documents_types import Document, MongoCollection, MongoDatabase, ReadDocument
from .names import CollectionNames
from .primary import on_primary
from .retry import DEFAULT_RETRY, RetryPolicy, call_with_retry

__all__ = ["ACCOUNT_READ_TIMEOUT_S", "BSON_ENCODING", "BsonLogEncoder", "MongoActivityLogStore"]

T = TypeVar("T")

DUPLICATE_KEY_CODES: Final = frozenset({11000, 11001})

BSON_ENCODING: Final = "bson"
"""``EncodedLog.encoding`` of ``BsonLogEncoder``: the document's BSON without its ``_id``."""

_FOREIGN: Final = f"code 11000: {HELD_BY_ANOTHER_TOOL}"


@frozen
class BsonLogEncoder:
    """``ports.LogEncoder`` of ``MongoActivityLogStore``: a log's document as BSON, without ``_id``.

    ``codec_options`` are the collection's (they pickle: the encoder is sent to worker processes).
    The problem strings are the store's own, so a log refused ahead reads as one refused here.
    """

    codec_options: CodecOptions[Any]

    def __call__(self, log: ActivityLog) -> EncodedLog:
        if not log.external_id:
            return encoded_log(log, BSON_ENCODING, b"", NO_EXTERNAL_ID)
        try:
            data = bson.encode(encode_activity_log(log), codec_options=self.codec_options)
        except (TypeError, ValueError, OverflowError, BSONError) as exc:
            return encoded_log(log, BSON_ENCODING, b"", f"cannot encode the document: {exc}")
        if len(data) + ID_BYTES > MAX_DOCUMENT_BYTES:
            size = len(data) + ID_BYTES
            return encoded_log(log, BSON_ENCODING, b"", too_large(size))
        return encoded_log(log, BSON_ENCODING, data)


def with_id(doc_id: ObjectId, data: bytes) -> bytes:
    """BSON ``data`` (a document without ``_id``) with ``_id: doc_id`` as its first element: the
    bytes of ``bson.encode({"_id": doc_id, **bson.decode(data)})``."""
    return struct.pack("<i", len(data) + ID_BYTES) + ID_ELEMENT + doc_id.binary + data[4:]


class _Pending:
    __slots__ = ("company_sso_id", "doc", "doc_id", "encoded", "external_id", "index")

    def __init__(
        self,
        index: int,
        company_sso_id: str,
        external_id: str,
        doc_id: ObjectId,
        doc: Document,
        encoded: bytes,
    ) -> None:
        self.index = index
        self.company_sso_id = company_sso_id
        self.external_id = external_id
        self.doc_id = doc_id
        self.doc = doc  # empty for a log encoded ahead (``encoded`` is then all there is)
        self.encoded = encoded


ACCOUNT_READ_TIMEOUT_S: Final = 600.0
"""The deadline, in seconds, of a read over a whole account's migrated logs (``count_migrated``,
``migrated_chunk``), all its attempts together: pymongo's ``timeout()``, which bounds each socket
read by what is left of it in place of the client's ``socketTimeoutMS`` and sends the server that
much as ``maxTimeMS``, so the server stops the command too.

``socketTimeoutMS`` (the runner's: a tenth of the lease) is a write's bound: a batch is answered, or
given up, while its lease holds (docs/runner.md, "Not fenced"). A count decides no write on its own:
the rollback renews its hold, fenced on its lease, before each delete, so a count or read that
outlasts the hold ends with that renewal refused (the hold lost), never a delete sent without it. An
account of many millions of logs is counted in more than 12 s, and the rollback, which would have
worked, stopped ``STORE_UNAVAILABLE``. Ten minutes: well past any count an index serves, and still
an end for a server that stopped answering."""


class MongoActivityLogStore:
    """``ports.ActivityLogStore`` over a pymongo (or mongomock) collection.

    ``account_read_timeout_s``: the deadline of a read over a whole account's migrated logs
    (``ACCOUNT_READ_TIMEOUT_S``); None leaves it to the client's ``socketTimeoutMS``. Writes and
    every other read keep the client's timeouts."""

    __slots__ = ("_account_read_timeout_s", "_collection", "_raw", "_retry")

    def __init__(
        self,
        collection: MongoCollection,
        *,
        retry: RetryPolicy | None = None,
        account_read_timeout_s: float | None = ACCOUNT_READ_TIMEOUT_S,
    ) -> None:
        # pymongo sends a RawBSONDocument's bytes as they are; anything else gets the dicts.
        self._raw = isinstance(collection, Collection)
        self._collection = on_primary(collection)  # a retry reads its own logs right after its insert
        self._retry = retry or DEFAULT_RETRY
        self._account_read_timeout_s = account_read_timeout_s

    @classmethod
    def in_database(
        cls,
        db: MongoDatabase,
        names: CollectionNames | None = None,
        *,
        retry: RetryPolicy | None = None,
        account_read_timeout_s: float | None = ACCOUNT_READ_TIMEOUT_S,
    ) -> MongoActivityLogStore:
        return cls(
            db[(names or CollectionNames()).activity_logs],
            retry=retry,
            account_read_timeout_s=account_read_timeout_s,
        )

    def _account_read(self, operation: Callable[[int], T], what: str) -> T:
        """``call_with_retry`` of a read over a whole account, under ``account_read_timeout_s``."""
        if self._account_read_timeout_s is None:
            return call_with_retry(operation, self._retry, what)
        with pymongo.timeout(self._account_read_timeout_s):
            return call_with_retry(operation, self._retry, what)

    @property
    def collection(self) -> MongoCollection:
        """The underlying collection (enrichment patches the same documents)."""
        return self._collection

    def log_encoder(self) -> BsonLogEncoder | None:
        """A ``BsonLogEncoder`` with the collection's codec options; None when the collection is
        handed dicts (mongomock) or its codec options carry a ``type_registry`` (see above)."""
        if not self._raw:
            return None
        options = self._collection.codec_options
        if options.type_registry.codecs or options.type_registry.fallback_encoder is not None:
            return None
        return BsonLogEncoder(options)

    def insert_batch(self, logs: Sequence[ActivityLog | EncodedLog]) -> Sequence[WriteResult]:
        """Insert unordered (``ports.ActivityLogWriter``); an ``EncodedLog`` must be ``BsonLogEncoder``'s
        (``TypeError`` otherwise, or when the collection is handed dicts)."""
        results: list[WriteResult | None] = [None] * len(logs)
        pending: list[_Pending] = []
        options = self._collection.codec_options if self._raw else None
        for index, log in enumerate(logs):
            if isinstance(log, EncodedLog):
                problem, doc_id, doc, encoded = self._take_encoded(log)
            else:
                problem, doc_id, doc, encoded = _prepare(log, options)
            if problem:
                results[index] = WriteResult(log.external_id, "failed", reasons.WRITE_ERROR, problem)
            else:
                pending.append(_Pending(index, log.company_sso_id, log.external_id, doc_id, doc, encoded))
        if pending:
            written = call_with_retry(
                lambda attempt: self._insert(pending, attempt), self._retry, "insert activity logs"
            )
            for item, result in zip(pending, written, strict=True):
                results[item.index] = result
        return tuple(r for r in results if r is not None)

    def _take_encoded(self, log: EncodedLog) -> tuple[str, ObjectId, Document, bytes]:
        if log.encoding != BSON_ENCODING or not self._raw:
            raise TypeError(
                f"{type(self).__name__} over {self._collection!r} cannot write a {log.encoding} log"
            )
        if not log.external_id:
            return NO_EXTERNAL_ID, _NO_ID, {}, b""
        if log.problem:
            return log.problem, _NO_ID, {}, b""
        doc_id = ObjectId()
        return "", doc_id, {}, with_id(doc_id, log.data)

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
            unconfirmed = exc.details.get("writeConcernErrors") or ()
            if unconfirmed:
                # Applied on the primary but not confirmed as the URI's write concern asks (w=majority
                # timing out, a lagging secondary): a failover may roll it back after the cursor moved.
                # The attempt is retried; its own logs then come back as ours (``_already_ours``).
                raise unconfirmed_write(unconfirmed[0]) from None
        by_position = _by_position(errors, len(pending))
        duplicates = [pending[pos].doc_id for pos, error in by_position.items() if _is_duplicate(error)]
        # Only a retried attempt can meet its own earlier writes; the first attempt reads nothing.
        ours = self._already_ours(duplicates) if attempt > 1 and duplicates else set()
        held = [
            pending[pos]
            for pos, error in by_position.items()
            if _is_duplicate(error) and pending[pos].doc_id not in ours
        ]
        foreign = self._held_by_others(held) if held else set()
        results: list[WriteResult] = []
        for pos, item in enumerate(pending):
            error = by_position.get(pos)
            if error is None or item.doc_id in ours:
                results.append(WriteResult(item.external_id, "inserted"))
            elif _is_duplicate(error) and (item.company_sso_id, item.external_id) in foreign:
                results.append(WriteResult(item.external_id, "failed", reasons.WRITE_ERROR, _FOREIGN))
            elif _is_duplicate(error):
                results.append(WriteResult(item.external_id, "skipped", reasons.DUPLICATE_EXTERNAL_ID))
            else:
                message = f"code {error.get('code')}: {error.get('errmsg', 'write error')}"
                results.append(WriteResult(item.external_id, "failed", reasons.WRITE_ERROR, message))
        return results

    def _already_ours(self, ids: Sequence[ObjectId]) -> set[ObjectId]:
        return {doc["_id"] for doc in self._collection.find({"_id": {"$in": list(ids)}}, {"_id": 1})}

    def _held_by_others(self, held: Sequence[_Pending]) -> set[tuple[str, str]]:
        """The (company, external id) of ``held`` whose stored log is not a ``crm_migration`` one.

        Read only after the insert met duplicates, so a write still reads nothing first. A log of
        ours (a replay) is the record already in the timeline: the run counts it as migrated. A log
        another tool wrote under the same key is not: rollback and verify never take it for ours,
        so it must not be counted as migrated either. A stored log no longer there is left a
        duplicate, as before.
        """
        wanted: dict[str, list[str]] = {}
        for item in held:
            wanted.setdefault(item.company_sso_id, []).append(item.external_id)
        query = {"$or": [{"company_sso_id": c, "external_id": {"$in": ids}} for c, ids in wanted.items()]}
        projection = {"_id": 0, "company_sso_id": 1, "external_id": 1, "source_tag": 1}
        return {
            (doc["company_sso_id"], doc["external_id"])
            for doc in self._collection.find(query, projection)
            if doc.get("source_tag") != SOURCE_TAG
        }

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

    def migrated_chunk(self, company_sso_id: str, limit: int) -> Sequence[object]:
        """The ``_id`` of at most ``limit`` of this company's migrated logs (``ports.MigratedLogsInChunks``:
        rollback's next chunk), in no promised order: the ones deleted before are gone.

        Those whose ``external_id`` is a string first: ``external_id: {$type: "string"}`` implies the
        partial filter of ``uniq_company_external_id``, so a server can read them off that index
        from the company's prefix (``$exists: true`` does not imply it: a server may not use a
        partial index then, and would read the account's native logs too, once per chunk). Only a
        chunk that string ids do not fill asks for the rest (an ``external_id`` that is not a
        string: never ours, but ``delete_migrated`` deletes them too)."""
        base = self._migrated_filter(company_sso_id)
        ours = {**base, "external_id": {"$type": "string"}}
        others = {**base, "external_id": {"$exists": True, "$not": {"$type": "string"}}}

        def read(_: int) -> list[object]:
            ids: list[object] = [doc["_id"] for doc in self._collection.find(ours, {"_id": 1}).limit(limit)]
            if len(ids) < limit:
                rest = self._collection.find(others, {"_id": 1}).limit(limit - len(ids))
                ids.extend(doc["_id"] for doc in rest)
            return ids

        return self._account_read(read, "read a chunk of migrated activity logs")

    def delete_migrated_chunk(self, company_sso_id: str, chunk: Sequence[object]) -> int:
        """Delete the logs of ``chunk`` (``_id``s) that are still this company's migrated logs: one
        ``delete_many`` by ``_id`` (between the chunk's least and greatest, and one of them) under
        ``_migrated_filter``. A retry after a lost acknowledgement
        would report fewer: the count is then the chunk's logs no longer there."""
        return self._delete_chunk(company_sso_id, chunk, self._retry)

    def delete_migrated_chunk_once(self, company_sso_id: str, chunk: Sequence[object]) -> int:
        """``delete_migrated_chunk`` in one attempt (``ports.MigratedChunkDeleteOnce``): a rollback
        stopped by Ctrl-C sending its chunk in flight again; the client's socket timeout bounds it,
        and a failure is ``StoreUnavailable`` at once."""
        return self._delete_chunk(company_sso_id, chunk, attrs.evolve(self._retry, attempts=1))

    def _delete_chunk(self, company_sso_id: str, chunk: Sequence[object], retry: RetryPolicy) -> int:
        if not chunk:
            return 0
        ids = list(dict.fromkeys(chunk))
        where: Document = {"$in": ids}
        if all(isinstance(doc_id, ObjectId) for doc_id in ids):
            # The range first: a store that matches $in by scanning its list (mongomock) rules most
            # documents out by it; MongoDB looks the ids up on the _id index either way.
            where = {"$gte": min(ids), "$lte": max(ids), "$in": ids}  # type: ignore[type-var]
        query = {**self._migrated_filter(company_sso_id), "_id": where}
        before = len(ids)
        attempts: list[int] = []

        def delete(attempt: int) -> int:
            attempts.append(attempt)
            return self._collection.delete_many(query).deleted_count

        deleted = call_with_retry(delete, retry, "delete a chunk of migrated activity logs")
        if len(attempts) == 1:
            return deleted
        left = call_with_retry(
            lambda _: self._collection.count_documents(query), self._retry, "count a chunk's migrated logs"
        )
        return max(deleted, before - left)

    def delete_migrated_ids(self, company_sso_id: str, external_ids: Ids[str]) -> int:
        """Delete this company's migrated logs with these external ids (``ports.MigratedLogsById``:
        a ``/migrate`` batch undoing itself): one ``delete_many`` on the idempotency index."""
        wanted = sorted(set(external_ids))
        if not wanted:
            return 0
        query = {**self._migrated_filter(company_sso_id), "external_id": {"$in": wanted}}
        return call_with_retry(
            lambda _: self._collection.delete_many(query).deleted_count,
            self._retry,
            "delete a batch's migrated activity logs",
        )

    def restore_migrated(self, log: ActivityLog, run_keys: Ids[str]) -> bool:
        """Set this company's migrated logs of ``log``'s ``external_id`` back to ``log``
        (``ports.MigratedLogsRestore``): ``restore_migrated_many`` of that one log. Whether one was
        there; ``RestoreRefused`` when MongoDB refuses the document the update would make."""
        result = self.restore_migrated_many([log], run_keys)
        if result.refused:
            raise result.refused[0]
        return result.restored > 0

    def restore_migrated_many(self, logs: Sequence[ActivityLog], run_keys: Ids[str]) -> RestoreResult:
        """Set this company's migrated logs of each of ``logs``' external ids back to that log as
        ``insert_batch`` writes it (``ports.MigratedLogsRestoreMany``, ``verify --repair`` of the
        drifted logs): one unordered ``bulk_write`` on the idempotency index, two ``UpdateMany`` a
        log. The first, for a stored ``metadata`` that is a document, ``$set``s each top-level field
        and each of the log's metadata keys and ``$unset``s the ``run_keys`` (the keys the run
        writes) the log lacks: the other metadata keys stay. The second replaces a ``metadata`` that
        is not a document whole. Their filters exclude each other, so in either order a log ends
        the same. Only ``crm_migration`` logs: one of another ``source_tag`` is not ours
        (``insert_batch`` fails such a key ``write_error``), and is left for a decision.

        A log MongoDB refuses (a write error of its update: the document it would make past 16 MiB
        with the metadata keys kept, code 17419), or that the driver cannot send (past its size
        bound: the batch is then sent a log at a time, to name it), is a ``RestoreRefused`` of the
        result, the others set back all the same. ``restored``: the logs a stored log matched,
        from the answer's ``nMatched`` when it is one a log sent, else read back (one ``find``).
        A network error retries the whole request (it is idempotent); past the retries
        ``StoreUnavailable``, and a rerun sets back what it did not."""
        refused: dict[int, RestoreRefused] = {}
        ops: list[tuple[int, UpdateMany]] = []  # (the log's position, one of its updates)
        for n, log in enumerate(logs):
            try:
                ops += [(n, op) for op in _restore_ops(log, run_keys)]
            except (TypeError, ValueError, OverflowError, BSONError) as exc:
                refused[n] = RestoreRefused(log.external_id, f"cannot encode the document: {exc}")
        try:
            matched = self._bulk_restore(ops, logs, refused)
        except BSONError:  # one update past the driver's size bound: each log alone, to name it
            matched = 0
            for n in sorted({n for n, _ in ops}):
                try:
                    matched += self._bulk_restore([op for op in ops if op[0] == n], logs, refused)
                except BSONError as exc:
                    refused[n] = RestoreRefused(logs[n].external_id, f"cannot send the update: {exc}")
        sent = [log for n, log in enumerate(logs) if n not in refused]
        restored = len(sent) if matched == len(sent) else self._still_ours(sent)
        return RestoreResult(restored, tuple(refused[n] for n in sorted(refused)))

    def _bulk_restore(
        self,
        ops: Sequence[tuple[int, UpdateMany]],
        logs: Sequence[ActivityLog],
        refused: dict[int, RestoreRefused],
    ) -> int:
        """Send ``ops`` in one unordered ``bulk_write`` (retried whole); the documents matched.
        Each write error refuses its log (into ``refused``)."""
        if not ops:
            return 0

        def send(_: int) -> tuple[int, dict[int, ReadDocument]]:
            try:
                result = self._collection.bulk_write([op for _, op in ops], ordered=False)
            except BulkWriteError as exc:
                unconfirmed = exc.details.get("writeConcernErrors") or ()
                if unconfirmed:
                    raise unconfirmed_write(unconfirmed[0]) from None
                # An answer naming no update sent is a ProtocolError here: StoreUnavailable, not a crash.
                errors = _by_position(exc.details.get("writeErrors") or (), len(ops))
                return int(exc.details.get("nMatched") or 0), errors
            return result.matched_count, {}

        matched, errors = call_with_retry(send, self._retry, "restore drifted activity logs")
        for position, error in errors.items():
            n = ops[position][0]
            # The server's words and code only: a write error's text may quote the document.
            why = f"code {error.get('code')}: {str(error.get('errmsg', 'write error'))[:200]}"
            refused.setdefault(n, RestoreRefused(logs[n].external_id, why))
        return matched

    def _still_ours(self, logs: Sequence[ActivityLog]) -> int:
        """How many of ``logs`` have a ``crm_migration`` log stored under their company and external
        id: read when the answer's match count does not say it (a log gone since verify read it,
        or one matched by both of its updates)."""
        if not logs:
            return 0
        wanted: dict[str, list[str]] = {}
        for log in logs:
            wanted.setdefault(log.company_sso_id, []).append(log.external_id)
        query = {
            "source_tag": SOURCE_TAG,
            "$or": [{"company_sso_id": c, "external_id": {"$in": ids}} for c, ids in wanted.items()],
        }
        projection = {"_id": 0, "company_sso_id": 1, "external_id": 1}
        found = call_with_retry(
            lambda _: {
                (d["company_sso_id"], d["external_id"]) for d in self._collection.find(query, projection)
            },
            self._retry,
            "read restored activity logs",
        )
        return sum(1 for log in logs if (log.company_sso_id, log.external_id) in found)

    def count_migrated(self, company_sso_id: str) -> int:
        """How many of this company's migrated logs the collection holds: one count, under
        ``account_read_timeout_s`` (``ACCOUNT_READ_TIMEOUT_S``), not the client's socket timeout."""
        query = self._migrated_filter(company_sso_id)
        return self._account_read(
            lambda _: self._collection.count_documents(query), "count migrated activity logs"
        )


def _by_position(errors: Sequence[object], size: int) -> dict[int, ReadDocument]:
    """A batch's write errors by the position of the log each names; ``ProtocolError`` (so
    ``StoreUnavailable``, nothing counted) for an answer that names no log of the ``size`` sent: a
    position missing, not an int or out of range. Read as it was, such an answer raised
    ``KeyError`` or ``IndexError``, or counted another log's error."""
    found: dict[int, ReadDocument] = {}
    for error in errors:
        index = error.get("index") if isinstance(error, Mapping) else None
        if type(index) is not int or not 0 <= index < size or index in found:
            raise ProtocolError(
                f"the server's answer to an insert of {size} logs names a write error at index "
                f"{str(index)[:20]!r}, which is none of them"
            )
        found[index] = error  # type: ignore[assignment]
    return found


def _restore_ops(log: ActivityLog, run_keys: Ids[str]) -> tuple[UpdateMany, UpdateMany]:
    """``restore_migrated_many``'s two updates of ``log``: its fields and metadata keys ``$set`` on a
    stored log whose ``metadata`` is a document (the ``run_keys`` it lacks ``$unset``), and its whole
    ``metadata`` set on one whose ``metadata`` is not."""
    doc = encode_activity_log(log)
    metadata = cast(Document, doc.pop("metadata"))
    ours = {"company_sso_id": log.company_sso_id, "external_id": log.external_id, "source_tag": SOURCE_TAG}
    fields = {name: value for name, value in doc.items() if name not in ours}
    keyed: Document = {"$set": {**fields, **{f"metadata.{key}": value for key, value in metadata.items()}}}
    if absent := [key for key in sorted(run_keys) if key not in metadata]:
        keyed["$unset"] = {f"metadata.{key}": "" for key in absent}
    whole: Document = {"$set": {**fields, "metadata": metadata}}
    return (
        UpdateMany({**ours, "metadata": {"$type": "object"}}, keyed),
        UpdateMany({**ours, "metadata": {"$not": {"$type": "object"}}}, whole),
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


_NO_ID: Final = ObjectId(b"\x00" * 12)
"""The ``_id`` of a log that is not inserted (never sent)."""


def unconfirmed_write(error: ReadDocument) -> WriteConcernError:
    """The ``WriteConcernError`` of a batch's first write-concern error, naming its code and the
    server's words only (a ``BulkWriteError``'s own text carries the documents)."""
    code = error.get("code")
    return WriteConcernError(f"write concern not confirmed: code {code}: {error.get('errmsg', '')}", code)


def _prepare(
    log: ActivityLog, options: CodecOptions[Document] | None
) -> tuple[str, ObjectId, Document, bytes]:
    """The ``_id``, the document to insert under it and its BSON, or why this one log cannot be written.

    ``options``: the collection's codec options, so the bytes are the ones pymongo would send
    (None: the defaults, for a collection that is handed the dict).
    """
    if not log.external_id:
        return NO_EXTERNAL_ID, _NO_ID, {}, b""
    try:
        doc_id = ObjectId()
        doc = {"_id": doc_id, **encode_activity_log(log)}
        encoded = bson.encode(doc) if options is None else bson.encode(doc, codec_options=options)
    except (TypeError, ValueError, OverflowError, BSONError) as exc:
        return f"cannot encode the document: {exc}", _NO_ID, {}, b""
    if len(encoded) > MAX_DOCUMENT_BYTES:
        return too_large(len(encoded)), _NO_ID, {}, b""
    return "", doc_id, doc, encoded
