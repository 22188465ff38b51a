"""``MigratedLogReader`` on MongoDB: an account's logs read back for verify, by indexed queries.

* ``migrated_logs``: ``{company_sso_id, external_id: {$in: page}}`` — the prefix of
  ``uniq_company_external_id`` (migration 035), one query per page of audits.
* ``migrated_external_ids``: ``{company_sso_id, source_tag, external_id: {$type: "string", $gte: last}}``
  (not an array: ``$type`` matches one holding a string) sorted by ``external_id`` — the order of
  ``uniq_company_external_id`` itself, so each keyset chunk (retried on its own) walks the index
  instead of sorting the account's logs; a stream over millions of logs holds one chunk and resumes
  after a network error where it was. Each chunk starts at the last id read and skips the copies of
  it already read: were the unique index missing, every copy of a duplicated id is still read once,
  wherever the chunks split them.
* ``non_string_external_ids``: the account's ``crm_migration`` logs whose ``external_id`` is there
  but not a string, an array included (rollback deletes them too: ``external_id: {$exists: true}``),
  in ``_id`` order, each as its relaxed Extended JSON (``7``, ``null``): no id of ours, so verify
  reports them ``stray``. A stream apart (``ports.log_stores.NonStringExternalIds``): in the id
  stream, ``5`` and ``"5"`` would be one text, and two logs of one id (a false ``duplicate``).
* ``tagged_external_ids``: the same, with each log's ``source_tag``, in three ranges of the index,
  the one under ``crm:{tenant}:audit:`` read whatever the tag: a log of another tool under an id of
  ours is read too (verify's stray pass).
* ``live_feed_candidates``: the enrichment store's query (the match key, ``external_id`` absent).

The content form of a log is BSON: each field of the document (a ``metadata`` key on its own) is
compared as the bytes ``bson.encode`` gives. Equal bytes mean equal BSON
values as MongoDB compares them — a NaN equals itself, ``1`` and ``1.0`` differ, ``bytes`` and
``Binary`` subtype 0 are the same, and a sub-document whose keys were reordered differs (as it
does for the server) — which is what the CDP reads.

Documents are read as ``RawBSONDocument`` (whole, with their ``_id``) and decoded only on demand.
A recomputed log's content (:class:`BsonContent`) also holds its whole encoded document; a stored
document whose bytes after its ``_id`` are exactly those is the log the adapter would write, so it
is compared without decoding and its ``MigratedDoc`` is built from the log (:class:`StoredBson`).
Anything else — an enrichment key added, a field edited, another ``_id`` type — is decoded and
compared field by field as before.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Final, cast

import bson
from bson import json_util
from bson.codec_options import CodecOptions
from bson.errors import BSONError
from bson.objectid import ObjectId
from bson.raw_bson import RawBSONDocument
from pymongo import ASCENDING
from pymongo.collection import Collection as RawCollection

from crm_audit_transform.domain import SOURCE_TAG, ActivityLog
from crm_audit_transform.enrichment import MatchKey, StoredLog
from crm_audit_transform.enrichment.model import as_referent_id
from crm_audit_transform.verification import MigratedDoc, StoredMigratedLog

from ..log_content import EncodedContent, encoded_fields
from .bson_values import decode_value, from_bson_datetime, to_bson_datetime
from .document_limits import ID_BYTES, MAX_DOCUMENT_BYTES, too_large
from .documents import encode_activity_log
from .documents_types import Document, MongoCollection, MongoDatabase, ReadDocument
from .enrichment import DEFAULT_ENTITY_ID_PATH, MongoEnrichmentStore, encode_doc_id
from .names import CollectionNames
from .retry import DEFAULT_RETRY, RetryPolicy, call_with_retry

__all__ = ["BsonContent", "MongoMigratedLogReader", "StoredBson", "bson_content"]

_ID_CHUNK: Final = 5_000
"""External ids per chunk of the stray stream (~0.3 MB of keys)."""
_STRING: Final[Document] = {"$type": "string", "$not": {"$type": "array"}}
"""An ``external_id`` that is a string. ``$type`` alone also matches an array holding one, which
would stream a list as an id (and sort by its least element): an array is a non-string one."""


def _bson(value: object) -> bytes:
    return bson.encode({"v": value})


def bson_content(doc: ReadDocument) -> dict[str, object]:
    """Every field of an ``activity_logs`` document but its ``_id``, each as the bytes
    ``bson.encode`` gives it, a ``metadata`` key an entry of its own (``metadata.<key>``): the shape
    ``verification.drifted_fields`` compares, so a field the sink comes to write is compared too."""
    return encoded_fields(doc, _bson, skip="_id")


class BsonContent(EncodedContent):
    """A log's fields in BSON form, with its whole encoded document when it has one.

    As a mapping it is :func:`bson_content` of the document, computed on first use. ``==`` with
    another ``BsonContent`` is True at once when both documents are byte for byte the same (past a
    stored document's ``_id``), and otherwise compares the mappings.
    """

    __slots__ = ("_doc", "body")

    def __init__(self, doc: ReadDocument, body: bytes | None = None, log: ActivityLog | None = None) -> None:
        super().__init__(log)  # the recomputed log this content was made from (``content_of``), if any
        self._doc = doc
        self.body = body  # the document's elements after any _id, as stored or as it would be written

    @property
    def whole(self) -> bytes | None:
        return self.body

    def _fields_now(self) -> dict[str, object]:
        return bson_content(self._doc)

    def __repr__(self) -> str:
        return f"BsonContent({len(self.body or b'')} bytes)"


_OBJECT_ID_ELEMENT: Final = 1 + len(b"_id\x00") + 12
"""An ``_id`` ObjectId element: type byte, the name, 12 bytes."""


def _body(raw: bytes) -> bytes | None:
    """A stored document's elements after its leading ``_id`` ObjectId (None for another ``_id``)."""
    if raw[4:9] != b"\x07_id\x00":
        return None
    return raw[4 + _OBJECT_ID_ELEMENT :]


def _recomputed_doc(log: ActivityLog, content: BsonContent, doc_id: ObjectId) -> MigratedDoc:
    """What ``migrated_doc`` reads from the stored document of ``log`` itself, built from ``log``."""
    metadata = log.metadata
    person, entity = metadata.get("crm_person_id"), metadata.get("linked_entity_id")
    return MigratedDoc(
        doc_id=encode_doc_id(doc_id),
        external_id=log.external_id,
        company_sso_id=log.company_sso_id,
        customer_id=log.customer_id,
        category=log.category,
        action=log.action,
        timestamp=to_bson_datetime(log.timestamp),  # BSON holds whole milliseconds
        source_tag=log.source_tag,
        content=content,
        crm_person_id=None if person is None else as_referent_id(person),
        linked_entity_id=None if entity is None else as_referent_id(entity),
    )


class StoredBson:
    """A stored log as its raw BSON (``StoredMigratedLog``): decoded only when not the recomputed one's.

    ``same_as(expected)``: its elements after its ``_id`` ObjectId are the recomputed document's
    bytes. ``codec_options`` are the collection's, so a decoded document is what a plain ``find``
    returns.
    """

    __slots__ = ("_codec_options", "_raw", "external_id")

    def __init__(self, raw: bytes, external_id: str, codec_options: CodecOptions[Document]) -> None:
        self._raw = raw
        self._codec_options = codec_options
        self.external_id = external_id

    def _decoded(self) -> Document:
        return bson.decode(self._raw, self._codec_options)

    @property
    def content(self) -> BsonContent:
        """The stored fields (decoded on first use), with the stored body."""
        return BsonContent(self._decoded(), _body(self._raw))

    def same_as(self, expected: Mapping[str, object]) -> bool:
        if type(expected) is not BsonContent or expected.log is None or expected.body is None:
            return False
        return _body(self._raw) == expected.body

    def parsed(self, expected: Mapping[str, object] | None = None) -> MigratedDoc | None:
        if expected is not None and self.same_as(expected):
            content = cast(BsonContent, expected)
            doc_id = ObjectId(self._raw[9 : 9 + 12])  # the leading _id element's 12 bytes
            return _recomputed_doc(cast(ActivityLog, content.log), content, doc_id)
        return migrated_doc(self._decoded())

    def __repr__(self) -> str:
        return f"StoredBson({self.external_id!r})"


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

    __slots__ = ("_collection", "_live_feed", "_raw_collection", "_retry")

    def __init__(
        self,
        collection: MongoCollection,
        *,
        entity_id_path: str = DEFAULT_ENTITY_ID_PATH,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._collection = collection
        # Whole documents, undecoded: one equal to its recomputed form is compared as bytes.
        self._raw_collection: RawCollection[RawBSONDocument] | None
        try:
            raw_options = collection.codec_options.with_options(document_class=RawBSONDocument)
            self._raw_collection = collection.with_options(codec_options=raw_options)
        except NotImplementedError:  # mongomock has no raw documents: read decoded ones, compare by field
            self._raw_collection = None
        self._retry = retry or DEFAULT_RETRY
        self._live_feed = MongoEnrichmentStore(collection, entity_id_path=entity_id_path, retry=self._retry)

    @classmethod
    def in_database(
        cls, db: MongoDatabase, names: CollectionNames | None = None, *, retry: RetryPolicy | None = None
    ) -> MongoMigratedLogReader:
        return cls(db[(names or CollectionNames()).activity_logs], retry=retry)

    def migrated_logs(
        self, company_sso_id: str, external_ids: Collection[str]
    ) -> Sequence[StoredMigratedLog]:
        if not external_ids:
            return ()
        query = {"company_sso_id": company_sso_id, "external_id": {"$in": list(external_ids)}}
        raw_collection = self._raw_collection
        if raw_collection is None:

            def fetch_decoded(_: int) -> list[Document]:
                return list(self._collection.find(query))

            decoded = call_with_retry(fetch_decoded, self._retry, "read migrated activity logs")
            return [doc for doc in map(migrated_doc, decoded) if doc is not None]

        def fetch(_: int) -> list[RawBSONDocument]:
            return list(raw_collection.find(query))

        docs = call_with_retry(fetch, self._retry, "read migrated activity logs")
        options = self._collection.codec_options
        found: list[StoredBson] = []
        for doc in docs:
            external_id = doc.get("external_id")
            if isinstance(external_id, str):
                found.append(StoredBson(bytes(doc.raw), external_id, options))
        return found

    def migrated_external_ids(self, company_sso_id: str) -> Iterator[str]:
        query: Document = {"company_sso_id": company_sso_id, "source_tag": SOURCE_TAG, "external_id": _STRING}
        for doc in self._by_external_id(query, {"_id": 0, "external_id": 1}):
            yield doc["external_id"]

    def tagged_external_ids(self, company_sso_id: str, prefix: str) -> Iterator[tuple[str, str]]:
        """``ports.TaggedExternalIds``: ``migrated_external_ids`` with each log's tag, and the logs
        of another ``source_tag`` under ``prefix``, in three ranges of ``uniq_company_external_id``
        in id order: the ``crm_migration`` ids below ``prefix``, every id under it (any tag, read
        once: the run's ids are there), the ``crm_migration`` ids above it. The same documents as
        ``migrated_external_ids`` reads, and those of another tag under ``prefix`` only."""
        upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)  # the least string above every one under prefix
        ours: Document = {"company_sso_id": company_sso_id, "source_tag": SOURCE_TAG}
        ranges: tuple[Document, ...] = (
            {**ours, "external_id": {**_STRING, "$lt": prefix}},
            {"company_sso_id": company_sso_id, "external_id": {**_STRING, "$gte": prefix, "$lt": upper}},
            {**ours, "external_id": {**_STRING, "$gte": upper}},
        )
        for query in ranges:
            for doc in self._by_external_id(query, {"_id": 0, "external_id": 1, "source_tag": 1}):
                tag = doc.get("source_tag")
                yield doc["external_id"], tag if isinstance(tag, str) else ""

    def _by_external_id(self, query: Document, projection: Document) -> Iterator[Document]:
        """``query``'s documents in ``external_id`` order, ``_ID_CHUNK`` a query, each retried on its
        own: a keyset on ``external_id`` that goes on from the last id read (``$gte``), skipping
        the copies of it already read, so each copy of a duplicated id is read once, wherever the
        chunks split them (``$gt`` passed over the copies in the next chunk)."""
        bounds = cast(Document, query["external_id"])
        after: str | None = None
        read_of_after = 0  # the copies of ``after`` already yielded
        while True:
            chunk_query = query if after is None else {**query, "external_id": {**bounds, "$gte": after}}

            def fetch(
                _: int, chunk_query: Document = chunk_query, skip: int = read_of_after
            ) -> list[Document]:
                cursor = self._collection.find(chunk_query, projection).sort("external_id", ASCENDING)
                return list(cursor.skip(skip).limit(_ID_CHUNK))

            chunk = call_with_retry(fetch, self._retry, "stream migrated external ids")
            yield from chunk
            if len(chunk) < _ID_CHUNK:
                return
            last = chunk[-1]["external_id"]
            copies = 0
            for doc in reversed(chunk):
                if doc["external_id"] != last:
                    break
                copies += 1
            read_of_after = read_of_after + copies if last == after else copies
            after = last

    def non_string_external_ids(self, company_sso_id: str) -> Iterator[str]:
        """``ports.log_stores.NonStringExternalIds``: the account's ``crm_migration`` external ids
        that are not strings, each as its relaxed Extended JSON, in ``_id`` order."""
        base: Document = {
            "company_sso_id": company_sso_id,
            "source_tag": SOURCE_TAG,
            "$or": [
                {"external_id": {"$exists": True, "$not": {"$type": "string"}}},
                {"external_id": {"$type": "array"}},  # one holding a string too (``_STRING``)
            ],
        }
        after: object = None
        while True:
            query: Document = base if after is None else {**base, "_id": {"$gt": after}}

            def fetch(_: int, query: Document = query) -> list[Document]:
                cursor = self._collection.find(query, {"_id": 1, "external_id": 1})
                return list(cursor.sort("_id", ASCENDING).limit(_ID_CHUNK))

            chunk = call_with_retry(fetch, self._retry, "stream migrated external ids")
            for doc in chunk:
                yield json_util.dumps(doc["external_id"], json_options=json_util.RELAXED_JSON_OPTIONS)
            if len(chunk) < _ID_CHUNK:
                return
            after = chunk[-1]["_id"]

    def content_of(self, log: ActivityLog) -> Mapping[str, object]:
        """``ValueError`` with the writer's reason when ``MongoActivityLogStore`` fails the log
        ``write_error``: past MongoDB's 16 MiB with its ``_id``, or a value BSON cannot encode."""
        try:
            doc = encode_activity_log(log)
            encoded = bson.encode(doc)
        except (TypeError, OverflowError, BSONError) as exc:
            raise ValueError(f"cannot encode the document: {exc}") from exc
        if len(encoded) + ID_BYTES > MAX_DOCUMENT_BYTES:
            raise ValueError(too_large(len(encoded) + ID_BYTES))
        return BsonContent(doc, encoded[4:], log)

    @property
    def holds_live_feed(self) -> bool:
        """The CDP's collection holds the live feed's logs too."""
        return True

    def live_feed_candidates(
        self, keys: Collection[MatchKey], window: dt.timedelta
    ) -> Mapping[MatchKey, Sequence[StoredLog]]:
        return self._live_feed.live_feed_candidates(keys, window)
