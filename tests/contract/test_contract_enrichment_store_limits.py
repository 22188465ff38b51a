"""``ports.EnrichmentStore.apply`` against MongoDB's limits: every implementation refuses alike.

Implementations: the in-memory store (``crm_audit_transform.testing``) and the MongoDB store on
mongomock, on the wire-protocol emulator and on a real server when configured. mongomock has no
document size limit, so there the collection is wrapped in ``support.mongo_limits.SizeLimitedCollection``,
which refuses as MongoDB does; the emulator (scripts/mongo_emulator.py) and a real server refuse by
themselves.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import bson
import pytest
from bson import ObjectId

from crm_audit_adapters.mongo.enrichment import MongoEnrichmentStore, decode_doc_id, encode_doc_id
from crm_audit_transform.enrichment import EnrichmentPlan, Patch, Target
from crm_audit_transform.ports import EnrichmentStore
from crm_audit_transform.testing import _bson_size
from crm_audit_transform.testing.enrichment import InMemoryEnrichmentStore, activity_log_document
from support.mongo import fresh_database, mongo_backends
from support.mongo_limits import SizeLimitedCollection

COMPANY = "sso-acme"
CUSTOMER = str(ObjectId("65f000000000000000000001"))
T0 = dt.datetime(2024, 3, 1, 10, 0, 0, tzinfo=dt.UTC)
MAX = _bson_size.MAX_DOCUMENT_BYTES


@attrs.frozen
class Logs:
    """One implementation: its store, and how a test adds, reads and sizes a raw document."""

    store: EnrichmentStore
    add: Callable[[dict[str, Any]], str]
    read: Callable[[str], dict[str, Any]]
    size: Callable[[str], int]  # as MongoDB counts it, ``_id`` included


def _in_memory() -> Logs:
    store = InMemoryEnrichmentStore()

    def size(doc_id: str) -> int:
        return _bson_size.document_bytes(store.document(doc_id)) + _bson_size.ID_BYTES

    return Logs(store, store.add, store.document, size)


def _mongo(db: Any, kind: str) -> Logs:
    logs = db.activity_logs

    def add(doc: dict[str, Any]) -> str:
        return encode_doc_id(logs.insert_one(doc).inserted_id)

    def read(doc_id: str) -> dict[str, Any]:
        found: dict[str, Any] = logs.find_one({"_id": decode_doc_id(doc_id)})
        return found

    # The emulator and a real server refuse by themselves; mongomock stores any size.
    collection = SizeLimitedCollection(logs) if kind == "mongomock" else logs
    return Logs(MongoEnrichmentStore(collection), add, read, lambda i: len(bson.encode(read(i))))


@pytest.fixture(params=["in_memory", *mongo_backends()])
def logs(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Logs]:
    if request.param == "in_memory":
        yield _in_memory()
        return
    for db in fresh_database(request, monkeypatch, request.param):
        yield _mongo(db, request.param)


def live_log(logs: Logs, metadata: object = ..., **fields: Any) -> str:
    """A live-feed association log (``metadata`` absent when given as ``...``)."""
    doc = activity_log_document(
        company_sso_id=COMPANY, customer_id=CUSTOMER, category="deal", action="link", timestamp=T0
    )
    if metadata is not ...:
        doc["metadata"] = metadata
    return logs.add({**doc, **fields})


def patch_of(doc_id: str, **sets: Any) -> EnrichmentPlan:
    return EnrichmentPlan(patches=(Patch(Target(doc_id, COMPANY, CUSTOMER, "deal", "link"), sets),))


def counts(applied: Any) -> tuple[int, int, int, int]:
    return (applied.patched, applied.keys_set, applied.keys_too_large, applied.keys_left_alone)


class TestPastTheSizeLimit:
    def test_a_key_past_the_limit_on_its_own_is_too_large_and_the_other_key_is_set(self, logs: Logs) -> None:
        """A 16 MiB name: ``keys_too_large``, never stored; the patch's person id is set."""
        doc_id = live_log(logs, {"linked_entity_id": 7})
        applied = logs.store.apply(patch_of(doc_id, crm_person_id=42, linked_entity_name="n" * MAX))
        assert counts(applied) == (1, 1, 1, 0)
        assert logs.read(doc_id)["metadata"] == {"linked_entity_id": 7, "crm_person_id": 42}

    def test_a_log_that_would_grow_past_the_limit_keeps_what_fits(self, logs: Logs) -> None:
        """A log 60 bytes short of the limit takes the person id (19 bytes), not a 200-character name."""
        doc_id = live_log(logs, {"linked_entity_id": 7})
        filler_element = len(b"\x02filler\x00") + 5  # type, key, NUL, length, the text's NUL
        filler = "f" * (MAX - logs.size(doc_id) - 60 - filler_element)
        doc_id = live_log(logs, {"linked_entity_id": 7, "filler": filler})
        assert logs.size(doc_id) == MAX - 60
        applied = logs.store.apply(patch_of(doc_id, crm_person_id=42, linked_entity_name="N" * 200))
        assert counts(applied) == (1, 1, 1, 0)
        metadata = logs.read(doc_id)["metadata"]
        assert (metadata["crm_person_id"], "linked_entity_name" in metadata) == (42, False)

    def test_a_key_that_fills_the_log_to_the_byte_is_set(self, logs: Logs) -> None:
        """The limit is inclusive: a log that reaches exactly 16 MiB with its new key is stored."""
        doc_id = live_log(logs, {"linked_entity_id": 7})
        name_element = len(b"\x02linked_entity_name\x00") + 5
        room = MAX - logs.size(doc_id) - name_element
        applied = logs.store.apply(patch_of(doc_id, linked_entity_name="n" * room))
        assert counts(applied) == (1, 1, 0, 0)
        assert logs.size(doc_id) == MAX


class TestMetadataNotADocument:
    @pytest.mark.parametrize("metadata", [None, "note"])  # mongomock raises ValueError for a list
    def test_a_metadata_that_is_not_a_document_is_left_alone(self, logs: Logs, metadata: object) -> None:
        """MongoDB cannot ``$set`` a key inside it (``PathNotViable``): left alone, unchanged."""
        doc_id = live_log(logs, metadata)
        applied = logs.store.apply(patch_of(doc_id, crm_person_id=42))
        assert counts(applied) == (0, 0, 0, 1)
        assert logs.read(doc_id)["metadata"] == metadata

    def test_a_missing_metadata_is_created(self, logs: Logs) -> None:
        """A log with no ``metadata`` at all gains one holding the key, as ``$set`` creates it."""
        doc_id = live_log(logs)
        applied = logs.store.apply(patch_of(doc_id, crm_person_id=42))
        assert counts(applied) == (1, 1, 0, 0)
        assert logs.read(doc_id)["metadata"] == {"crm_person_id": 42}


def nested_list(levels: int) -> object:
    """A value ``levels`` deep as MongoDB counts (each non-empty list one level)."""
    value: object = 1
    for _ in range(levels):
        value = [value]
    return value


class TestPastTheNestingLimit:
    ROOM = 98
    """The levels a metadata value may nest: the document (1) and ``metadata`` (2) above it."""

    def test_a_key_nested_to_the_limit_is_set_and_one_level_more_is_overflow(self, logs: Logs) -> None:
        """98 levels under ``metadata`` are set; 99 are ``keys_refused["Overflow"]`` (MongoDB's code
        15), never stored, and the patch's other key is set. The in-memory store and mongomock stored
        the 99 levels; the emulator's refusal halted the pass (``StoreUnavailable``)."""
        fits = live_log(logs, {"linked_entity_id": 7})
        applied = logs.store.apply(patch_of(fits, linked_entity_name=nested_list(self.ROOM)))
        assert counts(applied) == (1, 1, 0, 0)
        deep = live_log(logs, {"linked_entity_id": 7})
        applied = logs.store.apply(
            patch_of(deep, crm_person_id=42, linked_entity_name=nested_list(self.ROOM + 1))
        )
        assert (counts(applied), applied.keys_refused) == ((1, 1, 0, 0), {"Overflow": 1})
        assert logs.read(deep)["metadata"] == {"linked_entity_id": 7, "crm_person_id": 42}

    def test_a_value_deeper_than_the_interpreter_walks_is_overflow_too(self, logs: Logs) -> None:
        """5,000 levels: refused before any walk of the value; every store met ``RecursionError``."""
        doc_id = live_log(logs, {"linked_entity_id": 7})
        applied = logs.store.apply(patch_of(doc_id, linked_entity_name=nested_list(5_000)))
        assert (counts(applied), applied.keys_refused) == ((0, 0, 0, 0), {"Overflow": 1})
        assert logs.read(doc_id)["metadata"] == {"linked_entity_id": 7}
