"""Properties of planning and applying enrichment, on the in-memory store and on the Mongo adapter.

For any stored logs (both shapes, any mix of keys present), any events and any CRM answers:
applying a plan twice leaves the documents as applying it once; no existing key or field is ever
removed or changed; documents of non-association logs are never touched.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Callable
from typing import Any

import mongomock
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crm_audit_adapters.mongo.enrichment import MongoEnrichmentStore
from crm_audit_transform.domain import ActivityLog, Actor, EntityRef
from crm_audit_transform.enrichment import ASSOCIATION_ACTIONS, ENRICHMENT_KEYS
from crm_audit_transform.enrichment.enrich import EnrichPorts, plan_enrichment
from crm_audit_transform.ports import EnrichmentStore
from crm_audit_transform.testing.enrichment import InMemoryEnrichmentStore, activity_log_document
from crm_audit_transform.testing.lookups import InMemoryEntityDirectory

T0 = dt.datetime(2024, 3, 1, 10, 0, tzinfo=dt.UTC)
COMPANIES = ("sso-a", "sso-b")
TYPES = ("Crm::Deal", "Crm::Task")
ACTIONS = (*sorted(ASSOCIATION_ACTIONS), "updated", "created")

offsets = st.integers(min_value=0, max_value=8_000).map(lambda ms: T0 + dt.timedelta(milliseconds=ms))
entity_ids = st.integers(min_value=1, max_value=3)
metadata_values: dict[str, st.SearchStrategy[Any]] = {
    "crm_person_id": st.integers(min_value=1, max_value=3),
    "linked_entity_type": st.sampled_from(TYPES),
    "linked_entity_id": entity_ids | entity_ids.map(str),
    "linked_entity_name": st.sampled_from(["Deal A", "[Deleted reference]", None]),
}


@st.composite
def documents(draw: st.DrawFn) -> list[dict[str, Any]]:
    docs = []
    for index in range(draw(st.integers(min_value=0, max_value=8))):
        keys = draw(st.lists(st.sampled_from(ENRICHMENT_KEYS), unique=True))
        metadata = {key: draw(metadata_values[key]) for key in keys}
        metadata["crm_audit_id"] = index
        docs.append(
            activity_log_document(
                company_sso_id=draw(st.sampled_from(COMPANIES)),
                customer_id=draw(st.sampled_from(["c1", "c2"])),
                category="deal",
                action=draw(st.sampled_from(ACTIONS)),
                timestamp=draw(offsets),
                external_id=draw(st.sampled_from(["", f"crm:t:audit:{index}"])),
                metadata=metadata,
            )
        )
    return docs


@st.composite
def events(draw: st.DrawFn) -> ActivityLog:
    metadata: dict[str, Any] = {"linked_entity_type": draw(st.sampled_from(TYPES))}
    metadata["linked_entity_id"] = draw(entity_ids)
    if draw(st.booleans()):
        metadata["crm_person_id"] = draw(st.integers(min_value=1, max_value=3))
    return ActivityLog(
        company_sso_id=draw(st.sampled_from(COMPANIES)),
        customer_id=draw(st.sampled_from(["c1", "c2"])),
        category="deal",
        action=draw(st.sampled_from(ACTIONS)),
        actor=Actor("system", "Qontak System"),
        changes=(),
        timestamp=draw(offsets),
        external_id=draw(st.sampled_from(["", *(f"crm:t:audit:{i}" for i in range(8))])),
        metadata=metadata,
    )


@st.composite
def directories(draw: st.DrawFn) -> InMemoryEntityDirectory:
    refs = []
    for entity_type in TYPES:
        for entity_id in range(1, 4):
            if draw(st.booleans()):
                name = draw(st.sampled_from(["Deal A", "Task B", None]))
                refs.append(EntityRef(entity_type, entity_id, name, exists=draw(st.booleans())))
    return InMemoryEntityDirectory({"t": refs})


Snapshot = dict[str, dict[str, Any]]


def in_memory(
    docs: list[dict[str, Any]], persons: dict[tuple[str, str], int]
) -> tuple[Any, Callable[[], Snapshot]]:
    store = InMemoryEnrichmentStore(docs, persons=persons)
    return store, lambda: store.documents


def on_mongomock(
    docs: list[dict[str, Any]], persons: dict[tuple[str, str], int]
) -> tuple[Any, Callable[[], Snapshot]]:
    db = mongomock.MongoClient().get_database("cdp")
    if docs:
        db.activity_logs.insert_many(copy.deepcopy(docs))
    for (company, customer), person in persons.items():
        db.contacts.insert_one({"_id": customer, "company_sso_id": company, "crm_data": {"id": person}})
    store = MongoEnrichmentStore.in_database(db)

    def snapshot() -> Snapshot:
        return {str(doc.pop("_id")): doc for doc in db.activity_logs.find({})}

    return store, snapshot


def run_property(build: Callable[..., tuple[Any, Callable[[], Snapshot]]], data: st.DataObject) -> None:
    docs = data.draw(documents(), label="documents")
    persons = data.draw(
        st.dictionaries(st.tuples(st.just("sso-a"), st.sampled_from(["c1", "c2"])), st.integers(1, 3)),
        label="persons",
    )
    directory = data.draw(directories(), label="crm")
    store, snapshot = build(docs, persons)
    typed_store: EnrichmentStore = store
    sources: list[Any] = data.draw(st.lists(events(), max_size=6), label="events")
    for company in COMPANIES:
        sources += typed_store.association_logs_lacking(company, after=None, limit=100)

    before = snapshot()
    plan = plan_enrichment(sources, tenant="t", ports=EnrichPorts(directory, typed_store))
    first = typed_store.apply(plan)
    once = snapshot()
    second = typed_store.apply(plan)
    twice = snapshot()

    assert twice == once
    assert second.keys_set == 0
    applied = first.keys_set + first.keys_left_alone + first.keys_too_large + first.keys_refused_total
    assert applied == plan.keys_planned
    assert once.keys() == before.keys()
    for doc_id, old in before.items():
        new = once[doc_id]
        if old["action"] not in ASSOCIATION_ACTIONS:
            assert new == old
            continue
        assert {k: v for k, v in new.items() if k != "metadata"} == {
            k: v for k, v in old.items() if k != "metadata"
        }
        old_meta, new_meta = old.get("metadata") or {}, new.get("metadata") or {}
        assert {k: new_meta.get(k) for k in old_meta} == old_meta
        assert set(new_meta) - set(old_meta) <= set(ENRICHMENT_KEYS)


class TestApplyProperties:
    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(data=st.data())
    def test_in_memory_apply_is_idempotent_additive_and_association_only(self, data: st.DataObject) -> None:
        """In memory: twice equals once, nothing changes or goes, only association logs gain keys."""
        run_property(in_memory, data)

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(data=st.data())
    def test_mongo_apply_is_idempotent_additive_and_association_only(self, data: st.DataObject) -> None:
        """Through the Mongo adapter (mongomock): the same three guarantees hold."""
        run_property(on_mongomock, data)
