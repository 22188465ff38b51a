"""``/migrate``'s record decoder on its own: the keys a record may hold (that they are the sink's:
tests/unit/test_log_document_keys.py), and metadata that must agree with its ``external_id``."""

from __future__ import annotations

from typing import Any

import pytest
from bson import Int64

from crm_audit_adapters.http.errors import ApiError
from crm_audit_adapters.http.records import decode_record, parse_body, refuse_unknown_keys


def record(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "company_sso_id": "co",
        "customer_id": "contact-1",
        "category": "contact",
        "action": "updated",
        "actor": {"type": "user", "name": "Budi", "id": "sso-1"},
        "attributes": [{"field": "phone", "label": "Phone", "from": "1", "to": "2"}],
        "timestamp": "2024-01-02T03:04:05Z",
        "external_id": "crm:acme:audit:26",
        "source_tag": "crm_migration",
        "metadata": {"crm_audit_id": 26, "crm_tenant": "acme", "crm_person_id": 3},
    }
    doc.update(changes)
    return doc


def refusal(doc: dict[str, Any]) -> str:
    with pytest.raises(ApiError) as raised:
        decode_record(doc, "records[0]")
    assert (raised.value.status, raised.value.code) == (400, "INVALID_RECORD")
    return raised.value.message


@pytest.mark.parametrize(
    ("doc", "named"),
    [
        (record(atributes=[]), "records[0]: unknown key(s) 'atributes'; a record holds only action,"),
        (record(_id="65a0"), "records[0]: unknown key(s) '_id'"),
        (
            record(actor={"type": "user", "name": "B", "email": "b@x"}),
            "records[0].actor: unknown key(s) 'email'",
        ),
        (
            record(attributes=[{"field": "f", "label": "F", "from": 1, "to": 2, "old": 0}]),
            "records[0].attributes[0]: unknown key(s) 'old'",
        ),
        (record(**{f"k{i}": i for i in range(7)}), "'k4' and 2 more;"),
        (record(**{"x" * 100: 1}), "'" + "x" * 64 + "…'"),
    ],
)
def test_an_unknown_key_is_refused_by_name(doc: dict[str, Any], named: str) -> None:
    """A key the record does not hold was dropped without a word: a misspelt "atributes" stored the
    log with no change, and "_id" was replaced by the store's. Refused naming it (the first five, each
    cut at 64 characters). Fails on the old code: decode_record took each."""
    assert named in refusal(doc)


@pytest.mark.parametrize(
    ("metadata", "field"),
    [
        ({"crm_audit_id": 27}, "crm_audit_id"),
        ({"crm_audit_id": "26"}, "crm_audit_id"),
        ({"crm_audit_id": True}, "crm_audit_id"),
        ({"crm_audit_id": None}, "crm_audit_id"),
        ({"crm_audit_id": Int64(27)}, "crm_audit_id"),
        ({"crm_tenant": "globex"}, "crm_tenant"),
        ({"crm_tenant": None}, "crm_tenant"),
    ],
)
def test_metadata_contradicting_the_external_id_is_refused(metadata: dict[str, Any], field: str) -> None:
    """metadata.crm_audit_id and crm_tenant, when given, are what external_id names (a run writes the
    row's id and tenant there): another value was stored, and verify reported the log drifted. Fails on
    the old code: decode_record took it."""
    assert f"records[0].metadata.{field}: must be" in refusal(record(metadata=metadata))


def test_metadata_agreeing_or_absent_is_taken() -> None:
    """The two keys may be left out (a record of a caller's own), the id given as a ``$numberLong`` too."""
    for metadata in (
        {},
        {"crm_audit_id": Int64(26), "crm_tenant": "acme"},
        {"crm_tenant": "acme"},
    ):
        assert decode_record(record(metadata=metadata), "records[0]").metadata == {
            k: 26 if k == "crm_audit_id" else v for k, v in metadata.items()
        }


def test_a_body_key_a_route_does_not_take_is_refused_by_name() -> None:
    """The /migrate body holds "records" only, and a route's JSON body the keys it reads: another was
    ignored. Fails on the old code: parse_body took it (and refuse_unknown_keys did not exist)."""
    with pytest.raises(ApiError) as raised:
        parse_body(b'{"records": [], "dry_run": true}')
    assert (raised.value.status, raised.value.code) == (400, "MALFORMED_BODY")
    assert raised.value.message == "body: unknown key(s) 'dry_run'; this route takes records"
    refuse_unknown_keys({"company_sso_id": "c"}, frozenset({"company_sso_id"}))
