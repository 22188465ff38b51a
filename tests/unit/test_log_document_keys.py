"""One list of a log document's keys (``domain.LOG_DOCUMENT_KEYS``): every writer puts exactly these,
and ``/migrate`` takes exactly these and reads each, so a key cannot be written by one and refused,
or taken and dropped, by the other."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pytest

from crm_audit_adapters.http.errors import ApiError
from crm_audit_adapters.http.records import (
    ACTOR_KEYS,
    ATTRIBUTE_KEYS,
    RECORD_KEYS,
    decode_record,
    parse_body,
)
from crm_audit_adapters.mongo.documents import encode_activity_log
from crm_audit_adapters.mongo.extended_json import pure_relaxed_json_bytes, relaxed_json_line_bytes
from crm_audit_transform.domain import (
    ACTOR_DOCUMENT_KEYS,
    ATTRIBUTE_DOCUMENT_KEYS,
    LOG_DOCUMENT_KEYS,
    ActivityLog,
    Actor,
    FieldChange,
)
from crm_audit_transform.testing._log_limits import log_document

FULL = ActivityLog(
    company_sso_id="co",
    customer_id="contact-1",
    category="contact",
    action="updated",
    actor=Actor("user", "Budi", "sso-1"),
    changes=(FieldChange("amount", "Amount", Decimal("10.50"), {"to": [1, "x"]}),),
    timestamp=dt.datetime(2024, 1, 2, 3, 4, 5, 123000, tzinfo=dt.UTC),
    external_id="crm:acme:audit:26",
    metadata={"crm_audit_id": 26, "crm_tenant": "acme", "crm_person_id": 3},
)
"""A log with every optional part: an actor's SSO id, a change, an external id, metadata."""


def _sink_documents() -> list[dict[str, Any]]:
    """The document as each writer puts it: MongoDB's, the JSONL sink's line (compiled when built,
    and the pure path), the in-memory stores'."""
    lines = [relaxed_json_line_bytes(FULL), pure_relaxed_json_bytes(FULL)]
    return [encode_activity_log(FULL), *(json.loads(line) for line in lines), log_document(FULL)]


@pytest.mark.parametrize("doc", _sink_documents(), ids=["mongo", "jsonl", "jsonl-pure", "in-memory"])
def test_every_writer_puts_the_keys_of_the_list_in_its_order(doc: dict[str, Any]) -> None:
    """The document's keys, its actor's and its attribute's are the core's lists, in their order."""
    assert tuple(doc) == LOG_DOCUMENT_KEYS
    assert tuple(doc["actor"]) == ACTOR_DOCUMENT_KEYS
    assert tuple(doc["attributes"][0]) == ATTRIBUTE_DOCUMENT_KEYS


def test_migrate_takes_the_keys_of_the_list_and_no_other() -> None:
    """``/migrate``'s key sets are the core's lists."""
    lists = (LOG_DOCUMENT_KEYS, ACTOR_DOCUMENT_KEYS, ATTRIBUTE_DOCUMENT_KEYS)
    assert tuple(map(frozenset, lists)) == (RECORD_KEYS, ACTOR_KEYS, ATTRIBUTE_KEYS)


def _posted() -> dict[str, Any]:
    """The sink's line as ``/migrate`` parses it (a body of that one record)."""
    body = b'{"records": [' + relaxed_json_line_bytes(FULL).rstrip(b"\n") + b"]}"
    (record,) = parse_body(body)
    assert isinstance(record, dict)
    return record


def test_the_sink_s_line_posted_to_migrate_is_the_log_it_was() -> None:
    """Every key the sink writes is read back: nothing of the line is taken and dropped."""
    assert decode_record(_posted(), "records[0]") == FULL


CHANGED: dict[str, object] = {
    "company_sso_id": "co-2",
    "customer_id": "contact-2",
    "category": "deal",
    "action": "created",
    "actor": {"type": "user", "name": "Budi", "id": "sso-2"},
    "attributes": [],
    "timestamp": "2024-01-02T03:04:06Z",
    "external_id": "crm:acme:audit:27",
    "source_tag": "native",
    "metadata": {"crm_audit_id": 26, "crm_tenant": "acme", "crm_person_id": 4},
}
"""Another value for each key of the list."""


@pytest.mark.parametrize("key", LOG_DOCUMENT_KEYS)
def test_migrate_reads_each_key_it_takes(key: str) -> None:
    """Another value at any key of the list is another log, or a refusal naming the key: no key is
    taken and then ignored."""
    assert set(CHANGED) == set(LOG_DOCUMENT_KEYS)
    try:
        decoded = decode_record({**_posted(), key: CHANGED[key]}, "records[0]")
    except ApiError as refused:
        message = refused.message
    else:
        assert decoded != FULL
        return
    assert (
        key in message
    )  # external_id's: "metadata.crm_audit_id: must be 27, the audit id external_id names"
