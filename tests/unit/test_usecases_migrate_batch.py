"""MigrateBatch: at most 20 records, idempotent by the store's unique index, a result per record."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import pytest

from crm_audit_transform import reasons
from crm_audit_transform.domain import ActivityLog, Actor, Contact, WriteResult
from crm_audit_transform.errors import BatchTooLarge
from crm_audit_transform.testing import InMemoryActivityLogStore, InMemoryContactDirectory
from crm_audit_transform.usecases import MAX_BATCH_SIZE
from crm_audit_transform.usecases.migrate_batch import migrate_batch


def log(n: int, company: str = "co-1") -> ActivityLog:
    return ActivityLog(
        company_sso_id=company,
        customer_id=f"contact-{n}",
        category="contact",
        action="update",
        actor=Actor("system", "Qontak System"),
        changes=(),
        timestamp=dt.datetime(2024, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=n),
        external_id=f"crm:acme:audit:{n}",
    )


class CountingStore(InMemoryActivityLogStore):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def insert_batch(self, logs: Sequence[ActivityLog]) -> Sequence[WriteResult]:
        self.calls += 1
        return super().insert_batch(logs)


class TestMigrateBatch:
    def test_writes_a_full_batch_of_twenty(self) -> None:
        """Twenty records are the most a batch holds, and all of them are inserted."""
        store = InMemoryActivityLogStore()
        result = migrate_batch([log(n) for n in range(MAX_BATCH_SIZE)], store)
        assert (result.inserted, result.skipped, result.failed) == (20, 0, 0)
        assert len(store.logs) == 20

    def test_refuses_twenty_one_records_with_batch_too_large(self) -> None:
        """A 21st record is refused as BATCH_TOO_LARGE (400) and nothing is written."""
        store = InMemoryActivityLogStore()
        with pytest.raises(BatchTooLarge) as raised:
            migrate_batch([log(n) for n in range(21)], store)
        assert raised.value.code == "BATCH_TOO_LARGE"
        assert raised.value.http_status == 400
        assert store.logs == ()

    def test_replaying_a_batch_inserts_nothing_and_skips_every_record_as_duplicate(self) -> None:
        """Re-running an identical batch inserts 0 and skips N, each with duplicate_external_id."""
        store = InMemoryActivityLogStore()
        batch = [log(n) for n in range(5)]
        migrate_batch(batch, store)
        again = migrate_batch(batch, store)
        assert (again.inserted, again.skipped, again.failed) == (0, 5, 0)
        assert {r.reason for r in again.results} == {reasons.DUPLICATE_EXTERNAL_ID}
        assert len(store.logs) == 5

    def test_reports_one_result_per_record_in_order(self) -> None:
        """Results line up with the records: the new one inserted, the known one skipped."""
        store = InMemoryActivityLogStore()
        migrate_batch([log(1)], store)
        result = migrate_batch([log(2), log(1)], store)
        assert [(r.external_id, r.status) for r in result.results] == [
            ("crm:acme:audit:2", "inserted"),
            ("crm:acme:audit:1", "skipped"),
        ]

    def test_same_external_id_in_another_company_is_not_a_duplicate(self) -> None:
        """Uniqueness is per (company_sso_id, external_id), like the partial unique index."""
        store = InMemoryActivityLogStore()
        migrate_batch([log(1, "co-1")], store)
        assert migrate_batch([log(1, "co-2")], store).inserted == 1

    def test_an_empty_batch_does_not_reach_the_store(self) -> None:
        """Nothing to write means no call at all, and zero counts."""
        store = CountingStore()
        result = migrate_batch([], store)
        assert (result.inserted, result.skipped, result.failed, store.calls) == (0, 0, 0, 0)

    def test_counts_failed_writes(self) -> None:
        """A record the store could not write is counted as failed, with its reason."""

        class FailingStore(InMemoryActivityLogStore):
            def insert_batch(self, logs: Sequence[ActivityLog]) -> Sequence[WriteResult]:
                return [WriteResult(x.external_id, "failed", reasons.WRITE_ERROR, "disk full") for x in logs]

        result = migrate_batch([log(1), log(2)], FailingStore())
        assert (result.inserted, result.failed) == (0, 2)


class TestContactCheck:
    def test_only_the_contact_the_person_id_names_is_written_and_one_lookup_per_account(self) -> None:
        """With a contact directory a record is written only when customer_id is the account's contact
        of metadata.crm_person_id; the others are skipped contact_not_found in their places, none of
        them written, and each account is looked up once for all its records."""
        at = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
        contacts = InMemoryContactDirectory(
            [Contact("contact-1", "co-1", 1, at), Contact("contact-3", "co-2", 3, at)]
        )
        records = [
            _naming(log(1), 1),
            _naming(log(2), 1),  # person 1 is contact-1, not contact-2
            _naming(log(3, company="co-2"), 3),
            _naming(log(4), 4),  # no contact
            log(5),  # no person named
        ]
        store = CountingStore()
        result = migrate_batch(records, store, contacts=contacts)
        assert [(r.external_id, r.status, r.reason) for r in result.results] == [
            ("crm:acme:audit:1", "inserted", ""),
            ("crm:acme:audit:2", "skipped", reasons.CONTACT_NOT_FOUND),
            ("crm:acme:audit:3", "inserted", ""),
            ("crm:acme:audit:4", "skipped", reasons.CONTACT_NOT_FOUND),
            ("crm:acme:audit:5", "skipped", reasons.CONTACT_NOT_FOUND),
        ]
        assert (result.inserted, result.skipped, result.failed) == (2, 3, 0)
        assert [x.external_id for x in store.logs] == ["crm:acme:audit:1", "crm:acme:audit:3"]
        assert sorted(contacts.calls) == [("co-1", (1, 4)), ("co-2", (3,))]

    def test_a_batch_with_no_contact_writes_nothing(self) -> None:
        """Every record refused: the store is not called at all."""
        store = CountingStore()
        result = migrate_batch([_naming(log(1), 1)], store, contacts=InMemoryContactDirectory())
        assert (result.inserted, result.skipped, store.calls) == (0, 1, 0)


def _naming(record: ActivityLog, person: int) -> ActivityLog:
    return ActivityLog(
        company_sso_id=record.company_sso_id,
        customer_id=record.customer_id,
        category=record.category,
        action=record.action,
        actor=record.actor,
        changes=record.changes,
        timestamp=record.timestamp,
        external_id=record.external_id,
        metadata={"crm_person_id": person},
    )
