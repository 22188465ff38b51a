"""Two contacts of one person: the contacts file keeps the one MongoDB's directory keeps, for every
``_id`` kind a contact may have (``mongo.contact_ids``: ObjectId, string, integer, UUID).

MongoDB keeps the first by ``_id``: BSON's type order (numbers, strings, binary data, ObjectIds),
then the value. The file's tie-break knew only strings and ObjectIds, by their text: an integer
``_id`` 5 lost to the string "10" ("10" < "5"), a 24-hex-digit string was taken for an ObjectId,
and a UUID sorted as its text.
"""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bson import Binary, Int64, ObjectId, json_util
from bson.binary import UuidRepresentation
from bson.json_util import RELAXED_JSON_OPTIONS

from crm_audit_adapters.files import JsonlContactDirectory
from crm_audit_adapters.mongo import MongoContactDirectory
from support.mongo import fresh_database, mongo_backends

SYNCED = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)

IDS: dict[str, object] = {
    "int 5": 5,
    "int64 12": Int64(12),
    "int -3": -3,
    "string 10": "10",
    "string 5": "5",
    "string of 24 hex digits": "ffffffffffffffffffffffff",
    "string é": "é",
    "objectid 01": ObjectId("000000000000000000000001"),
    "objectid ab": ObjectId("ab0000000000000000000000"),
    "uuid 7d": Binary.from_uuid(
        uuid.UUID("7d4c1f0e-2f6a-4c7b-9a55-0c2b9d3e8f11"), UuidRepresentation.STANDARD
    ),
    "uuid 00": Binary.from_uuid(
        uuid.UUID("00000000-2f6a-4c7b-9a55-0c2b9d3e8f11"), UuidRepresentation.STANDARD
    ),
}
PAIRS = list(itertools.permutations(IDS, 2))


def contact(doc_id: object) -> dict[str, object]:
    return {"_id": doc_id, "company_sso_id": "company-a", "crm_data": {"id": 7}, "created_at": SYNCED}


@pytest.fixture(params=mongo_backends())
def database(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    yield from fresh_database(request, monkeypatch, request.param)


def test_the_file_keeps_the_contact_mongodb_keeps(database: Any, tmp_path: Path) -> None:
    """Every ordered pair of ``_id`` kinds, the two lines in that order in a ``mongoexport`` file
    (relaxed Extended JSON), the two documents in the collection: the same contact is found."""
    collection = database["contacts"]
    wrong: list[str] = []
    for first, second in PAIRS:
        collection.delete_many({})
        collection.insert_many([contact(IDS[first]), contact(IDS[second])])
        kept = MongoContactDirectory.in_database(database).contacts_by_crm_ids("company-a", [7])[7]
        path = tmp_path / "contacts.jsonl"
        path.write_text(
            "".join(
                json_util.dumps(contact(IDS[name]), json_options=RELAXED_JSON_OPTIONS) + "\n"
                for name in (first, second)
            ),
            encoding="utf-8",
        )
        found = JsonlContactDirectory(path).contacts_by_crm_ids("company-a", [7])[7]
        if found != kept:
            wrong.append(f"{first} then {second}: file {found.id}, MongoDB {kept.id}")
    assert wrong == []
