"""MongoEnrichmentStore on ``mongo_db`` (mongomock, and a real server when configured)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import bson
import pytest
from bson import Binary, ObjectId
from bson.binary import UuidRepresentation
from pymongo.database import Database

from crm_audit_adapters.mongo.document_limits import MAX_DOCUMENT_BYTES
from crm_audit_adapters.mongo.documents import encode_activity_log
from crm_audit_adapters.mongo.enrichment import MongoEnrichmentStore, decode_doc_id, encode_doc_id
from crm_audit_transform import reasons
from crm_audit_transform.domain import ActivityLog, Actor, EntityRef
from crm_audit_transform.enrichment import DELETED_REFERENCE, EnrichmentPlan, MatchKey, Patch, Target
from crm_audit_transform.enrichment.enrich import (
    EnrichPorts,
    enrich_existing,
    enrich_migrated,
    plan_enrichment,
)
from crm_audit_transform.testing.enrichment import activity_log_document
from crm_audit_transform.testing.lookups import InMemoryEntityDirectory
from support.mongo_limits import SizeLimitedCollection

COMPANY = "sso-acme"
TENANT = "acme"
CUSTOMER = str(ObjectId("65f000000000000000000001"))
T0 = dt.datetime(2024, 3, 1, 10, 0, 0, 250_000, tzinfo=dt.UTC)
DEAL = "Crm::Deal"

ENTITIES = InMemoryEntityDirectory(
    {TENANT: [EntityRef(DEAL, 7, "Big renewal"), EntityRef(DEAL, 8, "Gone", False)]}
)


def event(audit_id: int = 101, *, entity_id: int = 7, external: bool = True) -> ActivityLog:
    return ActivityLog(
        company_sso_id=COMPANY,
        customer_id=CUSTOMER,
        category="deal",
        action="link",
        actor=Actor("system", "Qontak System"),
        changes=(),
        timestamp=T0,
        external_id=f"crm:{TENANT}:audit:{audit_id}" if external else "",
        metadata={
            "crm_audit_id": audit_id,
            "crm_person_id": 42,
            "linked_entity_type": DEAL,
            "linked_entity_id": entity_id,
        },
    )


def insert_ours(db: Database[Any], log: ActivityLog, *drop: str) -> Any:
    doc = encode_activity_log(log)
    for key in drop:
        del doc["metadata"][key]
    return db.activity_logs.insert_one(doc).inserted_id


def insert_live(db: Database[Any], *, offset: float = 0.0, entity_id: object = 7, **meta: Any) -> Any:
    doc = activity_log_document(
        company_sso_id=COMPANY,
        customer_id=CUSTOMER,
        category="deal",
        action="link",
        timestamp=T0 + dt.timedelta(seconds=offset),
        metadata={"linked_entity_id": entity_id, **meta},
    )
    return db.activity_logs.insert_one(doc).inserted_id


def metadata(db: Database[Any], doc_id: Any) -> dict[str, Any]:
    doc = db.activity_logs.find_one({"_id": doc_id})
    assert doc is not None
    return dict(doc.get("metadata") or {})


def migrate(db: Database[Any], *logs: ActivityLog) -> Any:
    store = MongoEnrichmentStore.in_database(db)
    return enrich_migrated(logs, tenant=TENANT, ports=EnrichPorts(ENTITIES, store))


class TestMongoEnrichment:
    def test_a_migrated_log_missing_crm_person_id_is_filled(self, mongo_db: Database[Any]) -> None:
        """Our log written by the adapter, lacking crm_person_id, gains it and the entity name."""
        doc_id = insert_ours(mongo_db, event(), "crm_person_id")
        report = migrate(mongo_db, event())
        stored = metadata(mongo_db, doc_id)
        assert (stored["crm_person_id"], stored["linked_entity_name"]) == (42, "Big renewal")
        assert stored["crm_audit_id"] == 101
        assert (report.patched, report.keys_set) == (1, 2)

    def test_a_live_feed_log_is_patched_in_place_with_no_new_document(self, mongo_db: Database[Any]) -> None:
        """The live-feed log the key finds (id written as text) is updated; the collection does not grow."""
        doc_id = insert_live(mongo_db, offset=-2.5, entity_id="7")
        report = migrate(mongo_db, event(external=False))
        assert mongo_db.activity_logs.count_documents({}) == 1
        assert metadata(mongo_db, doc_id) == {
            "linked_entity_id": "7",
            "crm_person_id": 42,
            "linked_entity_type": DEAL,
            "linked_entity_name": "Big renewal",
        }
        assert "external_id" not in mongo_db.activity_logs.find_one({"_id": doc_id})
        assert report.patched == 1

    def test_two_candidates_are_ambiguous_and_nothing_is_patched(self, mongo_db: Database[Any]) -> None:
        """Two live-feed logs within the window: ``enrich_ambiguous``, both documents unchanged."""
        first, second = insert_live(mongo_db, offset=-1), insert_live(mongo_db, offset=1)
        report = migrate(mongo_db, event(external=False))
        assert report.skipped == {reasons.ENRICH_AMBIGUOUS: 1}
        assert metadata(mongo_db, first) == metadata(mongo_db, second) == {"linked_entity_id": 7}

    def test_a_deleted_referent_is_named_deleted_reference(self, mongo_db: Database[Any]) -> None:
        """A referent the CRM deleted is written as ``[Deleted reference]``."""
        doc_id = insert_ours(mongo_db, event(entity_id=8))
        migrate(mongo_db, event(entity_id=8))
        assert metadata(mongo_db, doc_id)["linked_entity_name"] == DELETED_REFERENCE

    def test_a_second_run_patches_nothing(self, mongo_db: Database[Any]) -> None:
        """The same batch enriched twice: the second pass sets no key."""
        insert_ours(mongo_db, event(), "crm_person_id")
        insert_live(mongo_db, entity_id=7)
        migrate(mongo_db, event(), event(102, external=False))
        again = migrate(mongo_db, event(), event(102, external=False))
        assert (again.patched, again.keys_set, again.planned_patches) == (0, 0, 0)

    def test_a_key_that_appeared_after_planning_is_left_alone(self, mongo_db: Database[Any]) -> None:
        """A concurrent writer's key survives; the plan's other keys are still set, and counted exactly."""
        doc_id = insert_ours(mongo_db, event(), "crm_person_id")
        store = MongoEnrichmentStore.in_database(mongo_db)
        plan = plan_enrichment([event()], tenant=TENANT, ports=EnrichPorts(ENTITIES, store))
        mongo_db.activity_logs.update_one({"_id": doc_id}, {"$set": {"metadata.crm_person_id": 99}})
        applied = store.apply(plan)
        stored = metadata(mongo_db, doc_id)
        assert (stored["crm_person_id"], stored["linked_entity_name"]) == (99, "Big renewal")
        assert (applied.patched, applied.keys_set, applied.keys_left_alone) == (1, 1, 1)

    def test_a_patch_lands_only_on_the_log_it_was_planned_for(self, mongo_db: Database[Any]) -> None:
        """A live-feed target that has since gained an external_id no longer matches the patch's filter."""
        doc_id = insert_live(mongo_db)
        store = MongoEnrichmentStore.in_database(mongo_db)
        plan = plan_enrichment([event(external=False)], tenant=TENANT, ports=EnrichPorts(ENTITIES, store))
        mongo_db.activity_logs.update_one({"_id": doc_id}, {"$set": {"external_id": "crm:acme:audit:9"}})
        applied = store.apply(plan)
        assert metadata(mongo_db, doc_id) == {"linked_entity_id": 7}
        assert applied.keys_set == 0

    def test_a_metadata_that_is_not_a_document_is_left_alone(self, mongo_db: Database[Any]) -> None:
        """A log whose metadata is null cannot take a key: it is counted as left alone, not an error."""
        doc_id = mongo_db.activity_logs.insert_one(
            {"company_sso_id": COMPANY, "customer_id": CUSTOMER, "category": "deal", "action": "link"}
            | {"timestamp": T0, "metadata": None}
        ).inserted_id
        target = Target(encode_doc_id(doc_id), COMPANY, CUSTOMER, "deal", "link")
        plan = EnrichmentPlan(patches=(Patch(target, {"crm_person_id": 42}),))
        applied = MongoEnrichmentStore.in_database(mongo_db).apply(plan)
        assert (applied.keys_set, applied.keys_left_alone) == (0, 1)
        assert mongo_db.activity_logs.find_one({"_id": doc_id})["metadata"] is None


def patch_of(doc_id: Any, **sets: Any) -> EnrichmentPlan:
    target = Target(encode_doc_id(doc_id), COMPANY, CUSTOMER, "deal", "link")
    return EnrichmentPlan(patches=(Patch(target, sets),))


class TestMongoEnrichmentPastTheSizeLimit:
    def test_a_key_too_large_for_any_log_is_refused_before_it_is_sent(self, mongo_db: Database[Any]) -> None:
        """A 16 MiB name is counted too large and never sent (pymongo would raise, mongomock and the
        emulator would store it); the patch's small key is still set."""
        doc_id = insert_live(mongo_db)
        huge = "n" * MAX_DOCUMENT_BYTES
        applied = MongoEnrichmentStore.in_database(mongo_db).apply(
            patch_of(doc_id, crm_person_id=42, linked_entity_name=huge)
        )
        assert (applied.patched, applied.keys_set, applied.keys_too_large, applied.keys_left_alone) == (
            1,
            1,
            1,
            0,
        )
        assert metadata(mongo_db, doc_id) == {"linked_entity_id": 7, "crm_person_id": 42}

    def test_a_log_mongodb_refuses_to_grow_counts_the_key_too_large(self, mongo_db: Database[Any]) -> None:
        """MongoDB's refusal (code 17419, raised by a collection double because mongomock and the
        emulator have no size limit) counts the key too large, not left alone; a key that fits is set."""
        doc_id = insert_live(mongo_db)
        size = len(bson.encode(mongo_db.activity_logs.find_one({"_id": doc_id})))
        room = 60  # the person id (19 bytes) fits, a 200-character name does not
        filler = "f" * (MAX_DOCUMENT_BYTES - size - room - len(b"\x02filler\x00") - 5)
        mongo_db.activity_logs.update_one({"_id": doc_id}, {"$set": {"metadata.filler": filler}})
        logs = SizeLimitedCollection(mongo_db.activity_logs)
        applied = MongoEnrichmentStore(logs).apply(
            patch_of(doc_id, crm_person_id=42, linked_entity_name="N" * 200)
        )
        assert logs.refused == 2  # the whole patch, then the name alone
        assert (applied.patched, applied.keys_set, applied.keys_too_large, applied.keys_left_alone) == (
            1,
            1,
            1,
            0,
        )
        stored = metadata(mongo_db, doc_id)
        assert stored["crm_person_id"] == 42
        assert "linked_entity_name" not in stored


class TestMongoEnrichmentReads:
    def test_candidates_are_live_feed_logs_of_the_key_only(self, mongo_db: Database[Any]) -> None:
        """Our logs, other customers and logs outside the window are never candidates."""
        inside = insert_live(mongo_db, offset=4.9)
        insert_live(mongo_db, offset=5.1)
        insert_ours(mongo_db, event())
        other = activity_log_document(
            company_sso_id=COMPANY, customer_id="other", category="deal", action="link", timestamp=T0
        )
        mongo_db.activity_logs.insert_one(other | {"metadata": {"linked_entity_id": 7}})
        key = MatchKey(COMPANY, CUSTOMER, "deal", "link", 7, T0)
        store = MongoEnrichmentStore.in_database(mongo_db)
        found = store.live_feed_candidates([key], dt.timedelta(seconds=5))
        assert [log.doc_id for log in found[key]] == [encode_doc_id(inside)]

    def test_crm_person_ids_come_from_the_companys_contacts(self, mongo_db: Database[Any]) -> None:
        """A customer id resolves to its contact's crm_data.id, within the company only."""
        mongo_db.contacts.insert_many(
            [
                {"_id": ObjectId(CUSTOMER), "company_sso_id": COMPANY, "crm_data": {"id": 42}},
                {"_id": "plain-id", "company_sso_id": COMPANY, "crm_data": {"id": "43"}},
                {"_id": "foreign", "company_sso_id": "sso-other", "crm_data": {"id": 44}},
            ]
        )
        store = MongoEnrichmentStore.in_database(mongo_db)
        found = store.crm_person_ids(COMPANY, [CUSTOMER, "plain-id", "foreign"])
        assert found == {CUSTOMER: 42, "plain-id": 43}

    def test_crm_person_ids_find_a_contact_by_the_text_a_run_writes(self, mongo_db: Database[Any]) -> None:
        """A UUID or integer ``_id`` is found by the customer_id a run writes for it (its canonical
        text, its digits): before, only an ObjectId or a string ``_id`` was looked for."""
        uuid_text = "7d4c1f0e-2f6a-4c7b-9a55-0c2b9d3e8f11"
        mongo_db.contacts.insert_many(
            [
                {
                    "_id": Binary.from_uuid(uuid.UUID(uuid_text), UuidRepresentation.STANDARD),
                    "company_sso_id": COMPANY,
                    "crm_data": {"id": 45},
                },
                {"_id": 12345, "company_sso_id": COMPANY, "crm_data": {"id": 46}},
            ]
        )
        store = MongoEnrichmentStore.in_database(mongo_db)
        assert store.crm_person_ids(COMPANY, [uuid_text, "12345", "012345"]) == {uuid_text: 45, "12345": 46}

    def test_the_scan_pages_incomplete_association_logs_by_id(self, mongo_db: Database[Any]) -> None:
        """Only this company's association logs lacking a key are scanned, in ``_id`` pages."""
        lacking = [insert_live(mongo_db, offset=i) for i in range(3)]
        complete = event(200)
        doc = encode_activity_log(complete)
        doc["metadata"]["linked_entity_name"] = "Big renewal"
        mongo_db.activity_logs.insert_one(doc)
        mongo_db.activity_logs.insert_one(encode_activity_log(event(201)) | {"action": "updated"})
        store = MongoEnrichmentStore.in_database(mongo_db)
        first = store.association_logs_lacking(COMPANY, after=None, limit=2)
        rest = store.association_logs_lacking(COMPANY, after=first[-1].doc_id, limit=2)
        assert [log.doc_id for log in (*first, *rest)] == [encode_doc_id(i) for i in lacking]

    @pytest.mark.parametrize("doc_id", [ObjectId("65f0000000000000000000aa"), "live-17", 17])
    def test_document_ids_round_trip_through_text(self, doc_id: Any) -> None:
        """Any ``_id`` survives being named in a plan and read back for the update."""
        assert decode_doc_id(encode_doc_id(doc_id)) == doc_id

    @pytest.mark.parametrize(
        "stamp",
        [
            dt.datetime(1, 1, 1, tzinfo=dt.UTC),  # Go's zero time.Time, as a live feed may write it
            dt.datetime(9999, 12, 31, 23, 59, 59, 999_000, tzinfo=dt.UTC),
        ],
        ids=["year-1", "year-9999"],
    )
    def test_a_live_feed_log_at_either_end_of_the_date_range_is_enriched(
        self, mongo_db: Database[Any], stamp: dt.datetime
    ) -> None:
        """A key's window that would reach past year 1 or 9999 ends there: the log is found and
        patched. Before, computing the window raised ``OverflowError``, and ``enrich`` of the
        whole account failed (``INTERNAL``) while that one document was in the CDP."""
        mongo_db.contacts.insert_one(
            {"_id": ObjectId(CUSTOMER), "company_sso_id": COMPANY, "crm_data": {"id": 42}}
        )
        doc = activity_log_document(
            company_sso_id=COMPANY,
            customer_id=CUSTOMER,
            category="deal",
            action="link",
            timestamp=stamp,
            metadata={"linked_entity_id": 7, "linked_entity_type": DEAL},
        )
        doc_id = mongo_db.activity_logs.insert_one(doc).inserted_id
        store = MongoEnrichmentStore.in_database(mongo_db)
        report = enrich_existing(COMPANY, TENANT, ports=EnrichPorts(ENTITIES, store))
        assert (report.patched, report.keys_set) == (1, 2)
        assert metadata(mongo_db, doc_id)["crm_person_id"] == 42
        assert metadata(mongo_db, doc_id)["linked_entity_name"] == "Big renewal"

    @pytest.mark.parametrize("field", ["external_id", "customer_id", "category"])
    def test_a_javascript_value_where_text_belongs_is_not_read_as_text(
        self, mongo_db: Database[Any], field: str
    ) -> None:
        """``bson.Code`` (BSON JavaScript) subclasses ``str`` but cannot be hashed: a log holding one
        where text belongs is no log enrichment reads as ours, or at all, and the live-feed log
        beside it is still patched. Before, the planner's set of external ids or its match keys
        raised ``TypeError`` and ``enrich`` failed (``INTERNAL``)."""
        odd = activity_log_document(
            company_sso_id=COMPANY,
            customer_id=CUSTOMER,
            category="deal",
            action="link",
            timestamp=T0 - dt.timedelta(days=1),
            metadata={"linked_entity_id": 8, "linked_entity_type": DEAL},
        )
        odd[field] = bson.Code(str(odd.get(field) or f"crm:{TENANT}:audit:5"))
        odd_id = mongo_db.activity_logs.insert_one(odd).inserted_id
        doc_id = insert_live(mongo_db, linked_entity_type=DEAL, crm_person_id=42)
        store = MongoEnrichmentStore.in_database(mongo_db)
        enrich_existing(COMPANY, TENANT, ports=EnrichPorts(ENTITIES, store))
        assert metadata(mongo_db, doc_id)["linked_entity_name"] == "Big renewal"
        assert "linked_entity_name" not in metadata(mongo_db, odd_id) or field == "external_id"

    def test_enrich_existing_fills_live_feed_logs_through_the_adapter(self, mongo_db: Database[Any]) -> None:
        """``enrich`` on logs already in CDP: the live-feed log gets crm_person_id from its contact."""
        mongo_db.contacts.insert_one(
            {"_id": ObjectId(CUSTOMER), "company_sso_id": COMPANY, "crm_data": {"id": 42}}
        )
        doc_id = insert_live(mongo_db, linked_entity_type=DEAL)
        store = MongoEnrichmentStore.in_database(mongo_db)
        dry = enrich_existing(COMPANY, TENANT, ports=EnrichPorts(ENTITIES, store), dry_run=True)
        assert metadata(mongo_db, doc_id) == {"linked_entity_id": 7, "linked_entity_type": DEAL}
        report = enrich_existing(COMPANY, TENANT, ports=EnrichPorts(ENTITIES, store))
        assert dry.planned_keys == report.keys_set == 2
        assert metadata(mongo_db, doc_id)["crm_person_id"] == 42
