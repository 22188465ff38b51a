"""``ports.ContactDirectory``: one contract that every implementation passes.

Implementations: ``InMemoryContactDirectory``, the MongoDB directory on mongomock, on the
wire-protocol emulator and on a real server when configured, and the JSONL contacts file.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from bson import ObjectId

from crm_audit_adapters.files import JsonlContactDirectory
from crm_audit_adapters.mongo import MongoContactDirectory
from crm_audit_transform.domain import Contact
from crm_audit_transform.ports import ContactDirectory
from crm_audit_transform.testing import InMemoryContactDirectory
from support.mongo import fresh_database, mongo_backends

SYNCED = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


def oid(n: int) -> str:
    return f"{n:024x}"


CONTACTS = (
    Contact(oid(1), "company-a", 1, SYNCED),
    Contact(oid(2), "company-a", 2, SYNCED + dt.timedelta(days=1)),
    Contact(oid(3), "company-b", 1, SYNCED),  # person ids overlap across accounts
    Contact(oid(4), "company-a", 2, SYNCED),  # a second contact of person 2: the first one wins
)
NATIVE = {"_id": oid(9), "company_sso_id": "company-a", "created_at": SYNCED}
"""A CDP-native contact: no ``crm_data.id``, never looked up, never counted."""


def documents() -> list[dict[str, object]]:
    docs: list[dict[str, object]] = [
        {
            "_id": c.id,
            "company_sso_id": c.company_sso_id,
            "crm_data": {"id": c.crm_person_id},
            "created_at": c.created_at,
        }
        for c in CONTACTS
    ]
    return [*docs, dict(NATIVE)]


@pytest.fixture(params=["in_memory", *mongo_backends(), "jsonl_file"])
def directory(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[ContactDirectory]:
    """Each implementation holding ``CONTACTS`` and one native contact, in that order."""
    if request.param == "in_memory":
        yield InMemoryContactDirectory(CONTACTS)
    elif request.param == "jsonl_file":
        path = tmp_path / "contacts.jsonl"
        with path.open("w", encoding="utf-8") as out:
            for doc in documents():
                created = doc["created_at"]
                assert isinstance(created, dt.datetime)
                out.write(json.dumps({**doc, "created_at": created.isoformat()}) + "\n")
        yield JsonlContactDirectory(path)
    else:
        for db in fresh_database(request, monkeypatch, request.param):
            db["contacts"].insert_many([{**doc, "_id": ObjectId(str(doc["_id"]))} for doc in documents()])
            yield MongoContactDirectory.in_database(db)


class TestContactDirectory:
    def test_contacts_are_found_by_person_id_within_the_company_only(
        self, directory: ContactDirectory
    ) -> None:
        """Never a cross-tenant read: company-b's person 1 is not company-a's."""
        found = directory.contacts_by_crm_ids("company-a", [1, 2, 3])
        assert set(found) == {1, 2}
        assert found[1] == CONTACTS[0]
        assert directory.contacts_by_crm_ids("company-b", [1, 2]) == {1: CONTACTS[2]}

    def test_of_two_contacts_of_one_person_the_first_wins(self, directory: ContactDirectory) -> None:
        """A stable answer from page to page when the CDP holds a duplicate contact."""
        assert directory.contacts_by_crm_ids("company-a", [2])[2] == CONTACTS[1]

    def test_no_ids_and_unknown_companies_find_nothing(self, directory: ContactDirectory) -> None:
        """Empty answers, not errors."""
        assert directory.contacts_by_crm_ids("company-a", []) == {}
        assert directory.contacts_by_crm_ids("company-z", [1]) == {}

    def test_ids_past_64_bits_find_nothing_beside_the_others(self, directory: ContactDirectory) -> None:
        """A row's comment or changes may name any integer as its ``crm_person_id``; one past BSON's
        64-bit integers (which pymongo cannot send) names no contact and must not stop the page's
        other lookups (MongoDB raised ``OverflowError`` for the whole page)."""
        huge = [2**63, -(2**63) - 1, 10**23]
        assert directory.contacts_by_crm_ids("company-a", [*huge, 1]) == {1: CONTACTS[0]}
        assert directory.contacts_by_crm_ids("company-a", huge) == {}

    def test_pages_asking_again_get_the_same_contacts(self, directory: ContactDirectory) -> None:
        """A run's pages ask for the same people again (a directory may keep what it read): every
        answer is the first one's, whatever was asked between, for each company alike."""
        first = {
            company: directory.contacts_by_crm_ids(company, [1, 2, 3])
            for company in ("company-a", "company-b")
        }
        for page in ([2], [3, 1], [1, 2, 3], [2, 1]):
            for company in ("company-b", "company-a"):
                answer = directory.contacts_by_crm_ids(company, page)
                assert answer == {i: first[company][i] for i in page if i in first[company]}
        assert first == {"company-a": {1: CONTACTS[0], 2: CONTACTS[1]}, "company-b": {1: CONTACTS[2]}}
