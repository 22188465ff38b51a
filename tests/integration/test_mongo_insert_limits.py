"""MongoDB's document limits: the emulator refuses as a server does, and the store refuses first.

Every insert path of a run (``run``, ``verify --repair``, Celery's tasks, ``--workers``' encoders) writes
through ``MongoActivityLogStore``, whose client-side checks (``document_limits``, ``bson_values``) fail a
log past 16 MiB or 100 levels alone before the insert. The emulator now refuses such documents too
(scripts/mongo_emulator.py), so a check that let one through would fail these tests on it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs
import bson
import pytest
from pymongo.errors import BulkWriteError, OperationFailure, WriteError

from crm_audit_adapters.mongo import MongoActivityLogStore, apply_migration
from crm_audit_adapters.mongo.bson_values import MONGODB_MAX_NESTING, NESTS_PAST_MONGODB
from crm_audit_adapters.mongo.document_limits import ID_BYTES, MAX_DOCUMENT_BYTES
from crm_audit_adapters.mongo.documents import encode_activity_log
from crm_audit_transform import reasons
from crm_audit_transform.domain import ActivityLog
from support.mongo import activity_log, fresh_database, mongo_backends
from support.mongo_limits import SizeLimitedCollection

BAD_VALUE, OVERFLOW = 2, 15
RESULT_TOO_LARGE = 17419  # "Resulting document after update is larger than 16777216"
UPSERT_TOO_LARGE = 17420  # "Document to upsert is larger than 16777216"


def nested(levels: int) -> dict[str, Any]:
    """A document ``levels`` deep as MongoDB counts: itself level 1, each non-empty one below +1."""
    doc: dict[str, Any] = {"v": 1}
    for _ in range(levels - 1):
        doc = {"a": doc}
    return doc


def of_size(size: int) -> dict[str, Any]:
    """A document whose BSON, with the ``_id`` the server adds, is ``size`` bytes."""
    return {"s": "x" * (size - len(bson.encode({"s": ""})) - ID_BYTES)}


@pytest.fixture(params=[backend for backend in mongo_backends() if backend != "mongomock"])
def raw(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A collection on the emulator, and on a real server when one is configured: the same cases on
    each (mongomock checks no limit)."""
    for db in fresh_database(request, monkeypatch, request.param):
        yield db.docs


class TestTheEmulatorRefusesAsAServer:
    def test_a_document_of_16_mib_is_stored_and_one_byte_more_is_bad_value(self, raw: Any) -> None:
        """Up to 16 MiB (``_id`` included) inserted; past it the server's write error, code 2."""
        raw.insert_one(of_size(MAX_DOCUMENT_BYTES))
        with pytest.raises(WriteError) as caught:
            raw.insert_one(of_size(MAX_DOCUMENT_BYTES + 1))
        assert caught.value.code == BAD_VALUE
        assert "object to insert too large" in str(caught.value)
        assert raw.count_documents({}) == 1

    def test_a_document_nested_100_levels_is_stored_and_101_is_overflow(self, raw: Any) -> None:
        """MongoDB's documented nesting limit: 100 levels inserted, 101 refused with code 15."""
        raw.insert_one(nested(MONGODB_MAX_NESTING))
        with pytest.raises(WriteError) as caught:
            raw.insert_one(nested(MONGODB_MAX_NESTING + 1))
        assert caught.value.code == OVERFLOW
        assert raw.count_documents({}) == 1

    @pytest.mark.parametrize(("ordered", "stored"), [(False, [1, 3]), (True, [1])])
    def test_a_refused_document_in_a_batch_is_one_write_error(
        self, raw: Any, ordered: bool, stored: list[int]
    ) -> None:
        """Unordered, the others are inserted; ordered, the insert stops at the refused one."""
        docs = [{"i": 1}, {"i": 2, **nested(MONGODB_MAX_NESTING + 1)}, {"i": 3}]
        with pytest.raises(BulkWriteError) as caught:
            raw.insert_many(docs, ordered=ordered)
        assert [(e["index"], e["code"]) for e in caught.value.details["writeErrors"]] == [(1, OVERFLOW)]
        assert sorted(doc["i"] for doc in raw.find({}, {"i": 1})) == stored

    def test_an_update_to_16_mib_is_stored_and_one_byte_more_is_refused_as_it_was(self, raw: Any) -> None:
        """``update`` and ``findAndModify`` whose resulting document would pass 16 MiB (``_id``
        included) get the server's write error 17419; the document stays as it was."""
        doc_id = raw.insert_one({"s": ""}).inserted_id
        fits = of_size(MAX_DOCUMENT_BYTES)
        raw.update_one({"_id": doc_id}, {"$set": fits})
        past = {"s": fits["s"] + "x"}
        with pytest.raises(WriteError) as caught:
            raw.update_one({"_id": doc_id}, {"$set": past})
        assert caught.value.code == RESULT_TOO_LARGE
        with pytest.raises(OperationFailure) as modified:
            raw.find_one_and_update({"_id": doc_id}, {"$set": past})
        assert modified.value.code == RESULT_TOO_LARGE
        with pytest.raises(WriteError):
            raw.replace_one({"_id": doc_id}, past)
        assert len(raw.find_one({"_id": doc_id})["s"]) == len(fits["s"])

    def test_an_upsert_that_inserts_past_16_mib_is_refused_and_inserts_nothing(self, raw: Any) -> None:
        """An upsert's insert up to 16 MiB is stored; one byte more is the server's write error 17420
        ("Document to upsert is larger than 16777216"), by ``update`` and by ``findAndModify``, and
        nothing is inserted. The emulator stored it."""
        fits = of_size(MAX_DOCUMENT_BYTES - len(bson.encode({"k": 1})) + len(bson.encode({})))
        raw.update_one({"k": 1}, {"$set": fits}, upsert=True)
        assert len(bson.encode(raw.find_one({"k": 1}))) == MAX_DOCUMENT_BYTES
        past = {"s": fits["s"] + "x"}
        with pytest.raises(WriteError) as caught:
            raw.update_one({"k": 2}, {"$set": past}, upsert=True)
        assert (caught.value.code, str(caught.value).startswith("Document to upsert is larger")) == (
            UPSERT_TOO_LARGE,
            True,
        )
        with pytest.raises(OperationFailure) as modified:
            raw.find_one_and_update({"k": 3}, {"$set": past}, upsert=True)
        assert modified.value.code == UPSERT_TOO_LARGE
        assert raw.count_documents({}) == 1

    def test_an_update_or_upsert_nesting_past_100_levels_is_overflow(self, raw: Any) -> None:
        """A ``$set`` that makes a document 100 levels deep is stored; 101 is ``Overflow`` (15), by
        ``update``, ``findAndModify`` and an upsert's insert, the document as it was. The emulator
        stored them."""
        doc_id = raw.insert_one({"v": 1}).inserted_id
        raw.update_one({"_id": doc_id}, {"$set": nested(MONGODB_MAX_NESTING)})
        deeper = {"$set": {"a": nested(MONGODB_MAX_NESTING)}}
        with pytest.raises(WriteError) as caught:
            raw.update_one({"_id": doc_id}, deeper)
        assert caught.value.code == OVERFLOW
        with pytest.raises(OperationFailure) as modified:
            raw.find_one_and_update({"_id": doc_id}, deeper)
        assert modified.value.code == OVERFLOW
        with pytest.raises(WriteError) as upserted:
            raw.update_one({"k": 2}, deeper, upsert=True)
        assert upserted.value.code == OVERFLOW
        assert raw.count_documents({}) == 1
        assert raw.find_one({"_id": doc_id}, {"_id": 0}) == {"v": 1, **nested(MONGODB_MAX_NESTING)}


@pytest.fixture(params=mongo_backends())
def updated(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A collection that refuses an update past MongoDB's limits: mongomock's wrapped in
    ``SizeLimitedCollection``, the emulator's and a real server's as they are."""
    for db in fresh_database(request, monkeypatch, request.param):
        yield SizeLimitedCollection(db.docs) if request.param == "mongomock" else db.docs


class TestEveryCollectionRefusesAnUpdatePastTheLimits:
    def test_an_update_one_nesting_past_100_levels_is_overflow_on_each(self, updated: Any) -> None:
        """The same ``update_one`` on each: to 100 levels stored, 101 ``Overflow`` (15) and the
        document as it was. mongomock's ``SizeLimitedCollection`` stored the 101 levels."""
        doc_id = updated.insert_one({"v": 1}).inserted_id
        updated.update_one({"_id": doc_id}, {"$set": nested(MONGODB_MAX_NESTING)})
        with pytest.raises(WriteError) as caught:
            updated.update_one({"_id": doc_id}, {"$set": {"b": nested(MONGODB_MAX_NESTING)}})
        assert caught.value.code == OVERFLOW
        assert updated.find_one({"_id": doc_id}, {"_id": 0}) == {"v": 1, **nested(MONGODB_MAX_NESTING)}

    def test_an_update_one_past_16_mib_is_refused_on_each(self, updated: Any) -> None:
        """The same ``update_one`` on each: one byte past 16 MiB is 17419, the document as it was."""
        doc_id = updated.insert_one({"s": ""}).inserted_id
        past = of_size(MAX_DOCUMENT_BYTES + 1)
        with pytest.raises(WriteError) as caught:
            updated.update_one({"_id": doc_id}, {"$set": past})
        assert caught.value.code == RESULT_TOO_LARGE
        assert updated.find_one({"_id": doc_id}, {"_id": 0}) == {"s": ""}


def deepest_in_metadata(extra_levels: int = 0) -> ActivityLog:
    """A log whose metadata holds a list nested to MongoDB's limit (98 levels under the document and
    ``metadata``), plus ``extra_levels``."""
    value: Any = "x"
    for _ in range(MONGODB_MAX_NESTING - 2 + extra_levels):
        value = [value]
    base = activity_log(1)
    return attrs.evolve(base, metadata={**base.metadata, "deep": value})


def sized(size: int, audit_id: int = 1) -> ActivityLog:
    """A log whose stored document (with its ``_id``) is ``size`` bytes."""
    base = activity_log(audit_id)
    empty = attrs.evolve(base, metadata={**base.metadata, "blob": ""})
    room = size - len(bson.encode(encode_activity_log(empty))) - ID_BYTES
    return attrs.evolve(base, metadata={**base.metadata, "blob": "x" * room})


@pytest.fixture
def store(mongo_db: Any) -> MongoActivityLogStore:
    apply_migration(mongo_db, "up")
    return MongoActivityLogStore.in_database(mongo_db)


class TestTheStoreRefusesFirst:
    def test_a_log_of_16_mib_is_inserted_and_one_byte_more_fails_alone(
        self, store: MongoActivityLogStore
    ) -> None:
        """The store's size check stops where the server's does: 16 MiB inserted (the emulator agrees),
        one byte more failed ``write_error`` before the insert, its batch-mate inserted."""
        fits, past = sized(MAX_DOCUMENT_BYTES), sized(MAX_DOCUMENT_BYTES + 1, audit_id=3)
        results = store.insert_batch([fits, past, activity_log(2)])
        assert [(r.status, r.reason) for r in results] == [
            ("inserted", ""),
            ("failed", reasons.WRITE_ERROR),
            ("inserted", ""),
        ]
        assert f"{MAX_DOCUMENT_BYTES + 1} bytes exceeds" in results[1].detail

    def test_the_deepest_log_is_inserted_and_one_level_more_fails_alone(
        self, store: MongoActivityLogStore
    ) -> None:
        """The store's nesting check counts as the server does: the deepest log it lets through is
        one the emulator takes; a level more is failed before the insert."""
        deepest, past = deepest_in_metadata(), deepest_in_metadata(1)
        past = attrs.evolve(past, external_id=past.external_id + "-past")  # its own key
        results = store.insert_batch([deepest, past])
        assert [(r.status, r.detail) for r in results] == [
            ("inserted", ""),
            ("failed", f"cannot encode the document: {NESTS_PAST_MONGODB}"),
        ]
