"""Enrichment end to end on the in-memory store: ours and live-feed logs, patched in place or skipped."""

from __future__ import annotations

import datetime as dt

import pytest

from crm_audit_transform import reasons
from crm_audit_transform.domain import ActivityLog, Actor, EntityRef
from crm_audit_transform.enrichment import DELETED_REFERENCE
from crm_audit_transform.enrichment.enrich import (
    EnrichPorts,
    enrich_existing,
    enrich_migrated,
    plan_enrichment,
)
from crm_audit_transform.enrichment_tally import EnrichmentTally
from crm_audit_transform.reasons import ENRICH_CONFLICT
from crm_audit_transform.testing.enrichment import InMemoryEnrichmentStore, activity_log_document
from crm_audit_transform.testing.lookups import InMemoryEntityDirectory

COMPANY = "sso-acme"
TENANT = "acme"
CUSTOMER = "cust-1"
T0 = dt.datetime(2024, 3, 1, 10, 0, 0, 250_000, tzinfo=dt.UTC)
DEAL = "Crm::Deal"


def entities() -> InMemoryEntityDirectory:
    return InMemoryEntityDirectory(
        {
            TENANT: [
                EntityRef(DEAL, 7, "Big renewal"),
                EntityRef(DEAL, 8, "Old deal", exists=False),
                EntityRef(DEAL, 10, None),
            ]
        }
    )


def event(
    audit_id: int = 101,
    *,
    action: str = "link",
    entity_id: int = 7,
    external: bool = True,
    timestamp: dt.datetime = T0,
    person: int | None = 42,
) -> ActivityLog:
    """A log the transformer built from a CRM association audit."""
    metadata: dict[str, object] = {
        "crm_audit_id": audit_id,
        "crm_tenant": TENANT,
        "linked_entity_type": DEAL,
        "linked_entity_id": entity_id,
    }
    if person is not None:
        metadata["crm_person_id"] = person
    return ActivityLog(
        company_sso_id=COMPANY,
        customer_id=CUSTOMER,
        category="deal",
        action=action,
        actor=Actor("system", "Qontak System"),
        changes=(),
        timestamp=timestamp,
        external_id=f"crm:{TENANT}:audit:{audit_id}" if external else "",
        metadata=metadata,  # type: ignore[arg-type]
    )


def ours(log: ActivityLog, **drop: bool) -> dict[str, object]:
    """Our stored document of ``log``, without the metadata keys named in ``drop``."""
    metadata = {k: v for k, v in log.metadata.items() if not drop.get(k)}
    return activity_log_document(
        company_sso_id=log.company_sso_id,
        customer_id=log.customer_id,
        category=log.category,
        action=log.action,
        timestamp=log.timestamp,
        external_id=log.external_id,
        metadata=metadata,
    )


def live(
    *,
    entity_id: object = 7,
    offset: float = 0.0,
    action: str = "link",
    customer: str = CUSTOMER,
    **meta: object,
) -> dict[str, object]:
    """A live-feed document: no external_id, the linked entity id in metadata, no crm_person_id."""
    return activity_log_document(
        company_sso_id=COMPANY,
        customer_id=customer,
        category="deal",
        action=action,
        timestamp=T0 + dt.timedelta(seconds=offset),
        metadata={"linked_entity_id": entity_id, **meta},
    )


def migrate(store: InMemoryEnrichmentStore, *logs: ActivityLog) -> EnrichmentTally:
    return enrich_migrated(logs, tenant=TENANT, ports=EnrichPorts(entities(), store))


class TestOwnLogs:
    def test_a_migrated_log_missing_crm_person_id_is_filled(self) -> None:
        """Our stored log that lacks crm_person_id gains it, and the linked entity's name."""
        log = event()
        store = InMemoryEnrichmentStore([ours(log, crm_person_id=True)])
        report = migrate(store, log)
        metadata = store.document("000000000001")["metadata"]
        assert metadata["crm_person_id"] == 42
        assert metadata["linked_entity_name"] == "Big renewal"
        assert (report.patched, report.keys_set) == (1, 2)

    def test_keys_the_log_already_has_are_not_in_the_patch(self) -> None:
        """Only missing keys are planned: an existing linked_entity_name is never rewritten."""
        log = event()
        store = InMemoryEnrichmentStore([ours(log)])
        store.set_metadata("000000000001", "linked_entity_name", "Named by the live feed")
        report = migrate(store, log)
        assert store.document("000000000001")["metadata"]["linked_entity_name"] == "Named by the live feed"
        assert (report.complete, report.planned_patches) == (1, 0)

    def test_a_second_run_patches_nothing(self) -> None:
        """Enriching the same batch again finds every key present and sets none."""
        log = event()
        store = InMemoryEnrichmentStore([ours(log, crm_person_id=True)])
        migrate(store, log)
        again = migrate(store, log)
        assert (again.patched, again.keys_set, again.planned_patches, again.complete) == (0, 0, 0, 1)

    @pytest.mark.parametrize("entity_id", [8, 9], ids=["deleted-in-crm", "row-gone"])
    def test_a_deleted_referent_is_named_deleted_reference(self, entity_id: int) -> None:
        """A referent the CRM marks deleted, or no longer returns, is named ``[Deleted reference]``."""
        log = event(entity_id=entity_id)
        store = InMemoryEnrichmentStore([ours(log)])
        migrate(store, log)
        assert store.document("000000000001")["metadata"]["linked_entity_name"] == DELETED_REFERENCE

    def test_an_existing_referent_without_a_name_leaves_the_name_missing(self) -> None:
        """An entity the CRM has but never named gets no invented name."""
        log = event(entity_id=10)
        store = InMemoryEnrichmentStore([ours(log)])
        report = migrate(store, log)
        assert "linked_entity_name" not in store.document("000000000001")["metadata"]
        assert report.complete == 1

    def test_non_association_logs_are_never_touched(self) -> None:
        """An ``updated`` log is ignored even when it lacks every enrichment key."""
        log = event(action="updated")
        store = InMemoryEnrichmentStore([ours(log, crm_person_id=True)])
        before = store.documents
        report = migrate(store, log)
        assert store.documents == before
        assert (report.ignored, report.logs, store.updates) == (1, 0, 0)

    def test_a_log_that_gained_a_key_between_plan_and_apply_keeps_it(self) -> None:
        """A key written after planning is left as written; the other planned keys are still set."""
        log = event()
        store = InMemoryEnrichmentStore([ours(log, crm_person_id=True)])
        plan = plan_enrichment([log], tenant=TENANT, ports=EnrichPorts(entities(), store))
        store.set_metadata("000000000001", "crm_person_id", 99)
        applied = store.apply(plan)
        metadata = store.document("000000000001")["metadata"]
        assert metadata["crm_person_id"] == 99
        assert metadata["linked_entity_name"] == "Big renewal"
        assert (applied.patched, applied.keys_set, applied.keys_left_alone) == (1, 1, 1)

    def test_a_target_that_disagrees_on_the_person_is_skipped(self) -> None:
        """When our stored log names another person, nothing is patched: ``enrich_conflict``."""
        log = event()
        doc = ours(log)
        doc["metadata"]["crm_person_id"] = 43  # type: ignore[index]
        store = InMemoryEnrichmentStore([doc])
        report = migrate(store, log)
        assert report.skipped == {ENRICH_CONFLICT: 1}
        assert "linked_entity_name" not in store.document("000000000001")["metadata"]


class TestLiveFeedLogs:
    @pytest.mark.parametrize("external", [True, False], ids=["own-log-missing", "no-external-id"])
    def test_a_live_feed_log_matched_by_key_is_patched_in_place(self, external: bool) -> None:
        """The one live-feed log the key finds gains the keys; no document is added."""
        store = InMemoryEnrichmentStore([live(offset=1.5)])
        report = migrate(store, event(external=external))
        docs = store.documents
        assert list(docs) == ["000000000001"]
        assert "external_id" not in docs["000000000001"]
        assert docs["000000000001"]["metadata"] == {
            "linked_entity_id": 7,
            "crm_person_id": 42,
            "linked_entity_type": DEAL,
            "linked_entity_name": "Big renewal",
        }
        assert (report.patched, report.keys_set) == (1, 3)

    def test_a_live_feed_id_written_as_text_still_matches(self) -> None:
        """A live feed that wrote the entity id as ``"7"`` is matched, and its id is left as written."""
        store = InMemoryEnrichmentStore([live(entity_id="7")])
        migrate(store, event())
        metadata = store.document("000000000001")["metadata"]
        assert (metadata["linked_entity_id"], metadata["crm_person_id"]) == ("7", 42)

    def test_two_candidates_are_ambiguous_and_nothing_is_patched(self) -> None:
        """Two live-feed logs within the window: ``enrich_ambiguous``, neither is touched."""
        store = InMemoryEnrichmentStore([live(offset=-1), live(offset=2)])
        before = store.documents
        report = migrate(store, event(external=False))
        assert report.skipped == {reasons.ENRICH_AMBIGUOUS: 1}
        assert store.documents == before

    def test_two_events_claiming_one_live_feed_log_are_both_ambiguous(self) -> None:
        """Two events whose keys find the same single log: neither may patch it."""
        store = InMemoryEnrichmentStore([live()])
        first = event(101, external=False, timestamp=T0 - dt.timedelta(seconds=2))
        second = event(102, external=False, timestamp=T0 + dt.timedelta(seconds=2), person=43)
        before = store.documents
        report = migrate(store, first, second)
        assert report.skipped == {reasons.ENRICH_AMBIGUOUS: 2}
        assert store.documents == before

    @pytest.mark.parametrize(
        "doc",
        [
            live(offset=5.5),
            live(entity_id=8),
            live(action="unlink"),
            live(customer="cust-2"),
        ],
        ids=["outside-window", "other-entity", "other-action", "other-customer"],
    )
    def test_a_log_outside_the_key_is_no_candidate(self, doc: dict[str, object]) -> None:
        """Only company, customer, category, action, entity id and the ±5 s window make a candidate."""
        store = InMemoryEnrichmentStore([doc])
        before = store.documents
        report = migrate(store, event(external=False))
        assert report.skipped == {reasons.ENRICH_NO_CANDIDATE: 1}
        assert store.documents == before

    def test_another_companys_log_is_never_a_candidate(self) -> None:
        """The key is scoped to the company: an identical log of another account is invisible."""
        doc = live()
        doc["company_sso_id"] = "sso-other"
        store = InMemoryEnrichmentStore([doc])
        report = migrate(store, event(external=False))
        assert report.skipped == {reasons.ENRICH_NO_CANDIDATE: 1}


class TestEnrichExisting:
    def test_fills_live_feed_logs_from_their_contact_and_the_crm(self) -> None:
        """A stored live-feed log gets crm_person_id from its contact and its entity's name from the CRM."""
        store = InMemoryEnrichmentStore([live(linked_entity_type=DEAL)], persons={(COMPANY, CUSTOMER): 42})
        report = enrich_existing(COMPANY, TENANT, ports=EnrichPorts(entities(), store))
        metadata = store.document("000000000001")["metadata"]
        assert (metadata["crm_person_id"], metadata["linked_entity_name"]) == (42, "Big renewal")
        assert (report.patched, report.keys_set) == (1, 2)

    def test_dry_run_shows_the_plan_and_changes_nothing(self) -> None:
        """``dry_run`` hands every page's plan to ``on_plan`` and writes nothing."""
        log = event()
        store = InMemoryEnrichmentStore([ours(log, crm_person_id=True)])
        before = store.documents
        plans = []
        report = enrich_existing(
            COMPANY, TENANT, ports=EnrichPorts(entities(), store), dry_run=True, on_plan=plans.append
        )
        assert store.documents == before
        assert [p.keys_planned for p in plans] == [1]
        assert (report.planned_keys, report.keys_set) == (1, 0)

    def test_pages_cover_every_log_once(self) -> None:
        """With one log per page, every incomplete log of the company is visited exactly once."""
        logs = [event(100 + i, entity_id=7) for i in range(5)]
        store = InMemoryEnrichmentStore([ours(log, crm_person_id=True) for log in logs])
        report = enrich_existing(COMPANY, TENANT, ports=EnrichPorts(entities(), store), batch_size=1)
        assert (report.logs, report.patched) == (5, 5)
        assert all("crm_person_id" not in d["metadata"] for d in store.documents.values())
        assert all(d["metadata"]["linked_entity_name"] == "Big renewal" for d in store.documents.values())

    def test_colliding_live_feed_logs_are_left_alone(self) -> None:
        """Two live-feed logs the key cannot tell apart are both skipped as ambiguous."""
        store = InMemoryEnrichmentStore(
            [live(linked_entity_type=DEAL), live(offset=3, linked_entity_type=DEAL)],
            persons={(COMPANY, CUSTOMER): 42},
        )
        before = store.documents
        report = enrich_existing(COMPANY, TENANT, ports=EnrichPorts(entities(), store))
        assert report.skipped == {reasons.ENRICH_AMBIGUOUS: 2}
        assert store.documents == before

    def test_the_entity_id_path_is_configurable(self) -> None:
        """A live feed that keeps the entity id elsewhere is matched there, and the key is copied in."""
        doc = live(linked_entity_type=DEAL)
        del doc["metadata"]["linked_entity_id"]  # type: ignore[attr-defined]
        doc["entity_id"] = 7
        store = InMemoryEnrichmentStore([doc], entity_id_path="entity_id")
        enrich_existing(COMPANY, TENANT, ports=EnrichPorts(entities(), store))
        metadata = store.document("000000000001")["metadata"]
        assert (metadata["linked_entity_id"], metadata["linked_entity_name"]) == (7, "Big renewal")

    def test_a_second_enrich_patches_nothing(self) -> None:
        """Running ``enrich`` twice: the second pass plans and sets no key."""
        log = event()
        store = InMemoryEnrichmentStore(
            [ours(log, crm_person_id=True), live(entity_id=8, linked_entity_type=DEAL)],
            persons={(COMPANY, CUSTOMER): 42},
        )
        enrich_existing(COMPANY, TENANT, ports=EnrichPorts(entities(), store))
        again = enrich_existing(COMPANY, TENANT, ports=EnrichPorts(entities(), store))
        assert (again.planned_keys, again.keys_set) == (0, 0)
