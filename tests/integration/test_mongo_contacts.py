"""MongoContactDirectory: contacts by CRM person id within one company, and Phase-A coverage."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from bson import Binary, Int64, ObjectId
from bson.binary import UuidRepresentation
from bson.codec_options import DatetimeConversion
from bson.datetime_ms import DatetimeMS
from pymongo import MongoClient

from crm_audit_adapters.mongo import MongoContactDirectory, RetryPolicy, apply_migration
from crm_audit_transform.domain import Contact
from support.mongo import T0

UUID_TEXT = "7d4c1f0e-2f6a-4c7b-9a55-0c2b9d3e8f11"
NO_WAIT = RetryPolicy(attempts=2, sleep=lambda _: None)


class CountingCollection:
    """Counts ``find`` calls, to pin "one query per page"."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.finds: list[dict[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def find(self, query: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        self.finds.append(query)
        return self._inner.find(query, *args, **kwargs)


def _contact(company: str, crm_id: Any, *, created_at: Any = T0, **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"_id": ObjectId(), "company_sso_id": company, "name": "x", **extra}
    if crm_id is not ...:
        doc["crm_data"] = {"id": crm_id}
    if created_at is not ...:
        doc["created_at"] = created_at
    return doc


class FixedReply:
    """A collection whose every ``find`` returns the given documents."""

    def __init__(self, docs: list[dict[str, Any]]) -> None:
        self._docs = docs

    def find(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        return list(self._docs)


@pytest.fixture
def contacts(mongo_db: Any) -> Any:
    apply_migration(mongo_db, "up")
    return mongo_db.contacts


class TestContactsByCrmIds:
    def test_finds_the_companys_contacts_in_one_query(self, contacts: Any) -> None:
        """Person ids of the company map to its contacts; one find serves the whole page."""
        a1, a2 = _contact("company-a", 101), _contact("company-a", 102)
        contacts.insert_many([a1, a2, _contact("company-a", 103)])
        counting = CountingCollection(contacts)
        found = MongoContactDirectory(counting, retry=NO_WAIT).contacts_by_crm_ids(
            "company-a", [101, 102, 999]
        )
        assert found == {
            101: Contact(str(a1["_id"]), "company-a", 101, T0),
            102: Contact(str(a2["_id"]), "company-a", 102, T0),
        }
        assert len(counting.finds) == 1
        assert counting.finds[0]["company_sso_id"] == "company-a"
        assert set(counting.finds[0]["crm_data.id"]["$in"]) >= {101, 102, 999}

    def test_never_reads_another_companys_contact(self, contacts: Any) -> None:
        """The same person id in another company is invisible (no cross-tenant read)."""
        contacts.insert_one(_contact("company-b", 101))
        assert MongoContactDirectory(contacts).contacts_by_crm_ids("company-a", [101]) == {}

    def test_a_person_id_stored_as_a_string_is_found(self, contacts: Any) -> None:
        """crm_data.id written as "101" matches person id 101."""
        contacts.insert_one(_contact("company-a", "101"))
        assert set(MongoContactDirectory(contacts).contacts_by_crm_ids("company-a", [101])) == {101}

    def test_created_at_comes_back_aware_utc(self, contacts: Any) -> None:
        """The sync watermark is an aware UTC datetime whatever tz the client decodes with."""
        local = dt.datetime(2024, 5, 1, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=7)))
        contacts.insert_one(_contact("company-a", 5, created_at=local))
        contact = MongoContactDirectory(contacts).contacts_by_crm_ids("company-a", [5])[5]
        assert contact.created_at == dt.datetime(2024, 5, 1, 2, 0, tzinfo=dt.UTC)
        assert contact.created_at.tzinfo is dt.UTC

    @pytest.mark.parametrize(
        ("millis", "end"), [(253402300800000, dt.datetime.max), (-62135596800001, dt.datetime.min)]
    )
    def test_a_created_at_past_datetimes_range_is_the_ranges_end(self, millis: int, end: dt.datetime) -> None:
        """A BSON date past years 1-9999 made pymongo refuse the whole reply (InvalidBSON), so every
        page naming that company's persons failed. The directory reads it as DatetimeMS, and that as
        the range's end, which the watermark compares alike, as a dry run reads the same contact from
        contacts.jsonl. (Neither mongomock nor the emulator can store such a date: the reply is faked.)"""
        never = MongoClient("mongodb://127.0.0.1:1", connect=False, tz_aware=True)
        try:
            directory = MongoContactDirectory.in_database(never["cdp"])
            assert directory._collection.codec_options.datetime_conversion == DatetimeConversion.DATETIME_AUTO
        finally:
            never.close()
        doc = _contact("company-a", 5, created_at=DatetimeMS(millis))
        faked = MongoContactDirectory(FixedReply([doc]))  # type: ignore[arg-type]
        assert faked.contacts_by_crm_ids("company-a", [5])[5].created_at == end.replace(tzinfo=dt.UTC)

    def test_missing_created_at_falls_back_to_the_insertion_time(self, contacts: Any) -> None:
        """Without created_at the ObjectId's timestamp is the watermark, never a missing contact."""
        doc = _contact("company-a", 7, created_at=...)
        contacts.insert_one(doc)
        contact = MongoContactDirectory(contacts).contacts_by_crm_ids("company-a", [7])[7]
        assert contact.created_at == doc["_id"].generation_time

    def test_duplicate_person_ids_resolve_to_the_earliest_contact(self, contacts: Any) -> None:
        """Two contacts with one person id: the first inserted wins, every time."""
        first, second = _contact("company-a", 8), _contact("company-a", 8)
        contacts.insert_many([first, second])
        found = MongoContactDirectory(contacts).contacts_by_crm_ids("company-a", [8])
        assert found[8].id == str(first["_id"])

    @pytest.mark.parametrize(
        ("stored", "text"),
        [
            (Binary.from_uuid(uuid.UUID(UUID_TEXT), UuidRepresentation.STANDARD), UUID_TEXT),
            (Binary(uuid.UUID(UUID_TEXT).bytes, 3), None),  # legacy UUID: byte order differs by driver
            (Binary(b"\x01\x02", 0), None),
            (Binary(b"\x01\x02", 4), None),  # a subtype-4 binary that is no 16-byte UUID
            (12345, "12345"),
            (Int64(2**40), str(2**40)),
            (1.5, None),
            ("c-1", "c-1"),
        ],
        ids=["uuid", "legacy-uuid", "bytes", "short-subtype-4", "int", "int64", "double", "string"],
    )
    def test_the_contact_id_is_the_text_a_cdp_reader_matches(
        self, contacts: Any, stored: object, text: str | None
    ) -> None:
        """customer_id is the contact's id: a UUID ``_id`` is its canonical text. An ``_id`` with no
        such text finds no contact (``contact_not_found``) where ``str()`` gave ``"b'}L\\x1f…'"``,
        which names no contact, and verify recomputed the same and said clean."""
        contacts.insert_one(_contact("company-a", 9, _id=stored))
        found = MongoContactDirectory(contacts).contacts_by_crm_ids("company-a", [9])
        assert {person: contact.id for person, contact in found.items()} == (
            {} if text is None else {9: text}
        )

    def test_no_ids_means_no_query(self, contacts: Any) -> None:
        """An empty page asks nothing."""
        counting = CountingCollection(contacts)
        assert MongoContactDirectory(counting).contacts_by_crm_ids("company-a", []) == {}
        assert counting.finds == []
