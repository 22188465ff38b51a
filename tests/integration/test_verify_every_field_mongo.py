"""Verify compares every field the run writes on MongoDB (mongomock and the wire emulator), and
``--repair`` sets a drifted log back there: one field of one stored log each, edited in
``activity_logs`` as an operator or another tool would."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from pymongo.database import Database

from crm_audit_adapters.mongo import MongoActivityLogStore, apply_migration
from crm_audit_adapters.mongo.documents import _OUR_METADATA_KEYS
from crm_audit_adapters.mongo.verification import MongoMigratedLogReader
from crm_audit_transform.usecases import RunSettings
from crm_audit_transform.verification import RUN_METADATA_KEYS
from support.corpus_account import World, audit_rows

Doc = dict[str, Any]
Edit = Callable[[Doc], Doc]
"""A stored document to the update that drifts it."""

EDITS: dict[str, tuple[Edit, str]] = {
    "customer_id": (lambda doc: {"$set": {"customer_id": "contact-acme-999"}}, "customer_id"),
    "category": (lambda doc: {"$set": {"category": "other"}}, "category"),
    "action": (lambda doc: {"$set": {"action": "other"}}, "action"),
    "actor": (lambda doc: {"$set": {"actor.name": "Someone Else"}}, "actor"),
    "attributes": (lambda doc: {"$pop": {"attributes": 1}}, "attributes"),
    "timestamp": (
        lambda doc: {"$set": {"timestamp": doc["timestamp"] - dt.timedelta(seconds=1)}},
        "timestamp",
    ),
    **{
        f"metadata.{key}": (
            lambda doc, key=key: {"$set": {f"metadata.{key}": f"{doc['metadata'][key]}-edited"}},
            f"metadata.{key}",
        )
        for key in RUN_METADATA_KEYS
        if key != "combined"
    },
    "int to double": (
        lambda doc: {"$set": {"metadata.crm_person_id": float(doc["metadata"]["crm_person_id"])}},
        "metadata.crm_person_id",
    ),
    "combined added": (lambda doc: {"$set": {"metadata.combined": True}}, "metadata.combined"),
    "name removed": (
        lambda doc: {"$unset": {"metadata.linked_entity_name": ""}},
        "metadata.linked_entity_name",
    ),
    "metadata not a document": (lambda doc: {"$set": {"metadata": "gone"}}, ""),
}


def test_the_adapters_metadata_keys_are_the_runs() -> None:
    """The keys the document encoder writes unescaped are the keys verify compares and repair sets."""
    assert frozenset(RUN_METADATA_KEYS) == _OUR_METADATA_KEYS


def test_every_drifted_field_is_reported_and_repair_sets_each_back(mongo_db: Database[Any]) -> None:
    """Each edit on its own log: verify names the field (every metadata key, for a metadata that is
    no document), repair sets each log back as the run writes it with another writer's key kept, and
    verify is then clean. Before, ``linked_entity_name``, ``combined`` and a stored run key the log
    lacks were not compared, and repair left drifted logs as they were: this test fails there."""
    list(apply_migration(mongo_db, "up"))
    world = World("acme", rows=[row for row in audit_rows("acme") if row.id <= 120], enrich=True)
    world.logs = MongoActivityLogStore.in_database(mongo_db)  # type: ignore[assignment]
    world.reader = MongoMigratedLogReader.in_database(mongo_db)
    world.trigger()
    world.run(settings=RunSettings(page_size=200, halt_threshold=1.0))
    logs = mongo_db.activity_logs
    unused = list(logs.find({"source_tag": "crm_migration"}, sort=[("external_id", 1)]))
    originals: dict[str, Doc] = {}
    expected: dict[int, str] = {}
    for edit, field in EDITS.values():
        # The first log not edited yet that has the key edited (every log has the top-level fields).
        needs = (
            "linked_entity_name" if field in ("", "metadata.combined") else field.removeprefix("metadata.")
        )
        doc = next(d for d in unused if needs in d["metadata"] or ("." not in field and field))
        unused.remove(doc)
        originals[doc["external_id"]] = doc
        logs.update_one({"_id": doc["_id"]}, {"$set": {"metadata.crm_note": "kept"}})
        logs.update_one({"_id": doc["_id"]}, edit(doc))
        whole = ", ".join(f"metadata.{key}" for key in doc["metadata"])
        expected[doc["metadata"]["crm_audit_id"]] = field or whole

    found = world.verify()
    assert {f.audit_id: f.detail for f in found.findings["drifted"].items} == expected
    assert found.outstanding == {"drifted": len(EDITS)}

    repaired = world.verify(repair=True)
    assert (repaired.restored, repaired.outstanding) == (len(EDITS), {})
    assert repaired.clean, repaired.to_json()
    for external_id, original in originals.items():
        now = logs.find_one({"external_id": external_id})
        assert now is not None
        kept = {} if expected[original["metadata"]["crm_audit_id"]].count(",") else {"crm_note": "kept"}
        assert now["metadata"] == {**original["metadata"], **kept}
        assert {k: v for k, v in now.items() if k != "metadata"} == {
            k: v for k, v in original.items() if k != "metadata"
        }

    again = world.verify(repair=True)
    assert again.clean, again.to_json()
    assert (again.count("drifted"), again.restored) == (0, 0)


@pytest.mark.parametrize("tag", ["other_tool", None])
def test_a_log_of_another_source_tag_is_not_taken_over(mongo_db: Database[Any], tag: str | None) -> None:
    """A log of our external id whose ``source_tag`` was changed or removed is reported drifted and
    left as it is by a repair: the write path takes such a log as another tool's."""
    list(apply_migration(mongo_db, "up"))
    world = World("acme", rows=[row for row in audit_rows("acme") if row.id <= 40], enrich=True)
    world.logs = MongoActivityLogStore.in_database(mongo_db)  # type: ignore[assignment]
    world.reader = MongoMigratedLogReader.in_database(mongo_db)
    world.trigger()
    world.run(settings=RunSettings(page_size=200, halt_threshold=1.0))
    logs = mongo_db.activity_logs
    doc = logs.find_one({"source_tag": "crm_migration"}, sort=[("external_id", 1)])
    assert doc is not None
    update = {"$set": {"category": "other", "source_tag": tag}} if tag else {"$set": {"category": "other"}}
    logs.update_one({"_id": doc["_id"]}, {**update, **({} if tag else {"$unset": {"source_tag": ""}})})
    edited = logs.find_one({"_id": doc["_id"]})
    repaired = world.verify(repair=True)
    assert (repaired.restored, repaired.outstanding) == (0, {"drifted": 1})
    assert logs.find_one({"_id": doc["_id"]}) == edited
