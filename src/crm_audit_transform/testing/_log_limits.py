"""Why MongoDB would refuse a log's document: nested past 100 levels, or past 16 MiB.

The in-memory stores refuse a log as ``MongoActivityLogStore`` does, with its words, so a test that
passes on them does not fail on MongoDB (tests/contract/test_contract_activity_log_store.py runs the
same cases on every store). The document is the one ``crm_audit_adapters.mongo.documents`` builds:
``company_sso_id``, ``customer_id``, ``category``, ``action``, ``actor`` (``type``, ``name``, ``id``
when set), ``attributes`` (``field``, ``label``, ``from``, ``to`` per change), ``timestamp``,
``external_id`` when set, ``source_tag`` and ``metadata``; sized by ``_bson_size`` with the ObjectId
``_id`` the store adds.

Nesting is counted as MongoDB counts it (its "Nested Depth for BSON Documents" limit, 100): the
document is level 1, each non-empty embedded document or array one more, an empty one none. A change's
value sits at level 3 (the document, ``attributes``, its change), a metadata value at level 2.
"""

from __future__ import annotations

from typing import Any, Final

from ..bson_nesting import nests_past
from ..domain import NO_EXTERNAL_ID, ActivityLog
from ._bson_size import ID_BYTES, MAX_DOCUMENT_BYTES, document_bytes

__all__ = [
    "MAX_NESTING",
    "METADATA_ROOM",
    "NESTS_TOO_DEEP",
    "OVERFLOW",
    "log_document",
    "log_refusal",
    "too_large",
]

MAX_NESTING: Final = 100
"""MongoDB's nesting limit for a stored document, as ``bson_values.MONGODB_MAX_NESTING`` has it."""

NESTS_TOO_DEEP: Final = (
    "cannot encode the document: "
    f"the document nests more than {MAX_NESTING} levels deep, past MongoDB's limit "
    "for a document (a list or hash value nests too deep)"
)
"""``MongoActivityLogStore``'s words for a log refused for its nesting."""

_ATTRIBUTE_ROOM: Final = MAX_NESTING - 3
METADATA_ROOM: Final = MAX_NESTING - 2
"""The levels a ``metadata`` value may nest: it sits in the document (1) and ``metadata`` (2)."""
OVERFLOW: Final = "Overflow"
"""MongoDB's ``codeName`` (code 15) for a write whose document would nest past ``MAX_NESTING``: an
enrichment key refused for it is counted ``keys_refused["Overflow"]``."""


def too_large(size: int) -> str:
    """``MongoActivityLogStore``'s words for a document of ``size`` bytes past the limit."""
    return f"document of {size} bytes exceeds MongoDB's {MAX_DOCUMENT_BYTES}-byte limit"


def log_document(log: ActivityLog) -> dict[str, Any]:
    """The fields of ``log``'s MongoDB document (``domain.LOG_DOCUMENT_KEYS``, in that order), values
    as they are (``_bson_size`` sizes them)."""
    actor: dict[str, Any] = {"type": log.actor.kind, "name": log.actor.name}
    if log.actor.sso_id:
        actor["id"] = log.actor.sso_id
    doc: dict[str, Any] = {
        "company_sso_id": log.company_sso_id,
        "customer_id": log.customer_id,
        "category": log.category,
        "action": log.action,
        "actor": actor,
        "attributes": [
            {"field": c.field, "label": c.label, "from": c.from_, "to": c.to} for c in log.changes
        ],
        "timestamp": log.timestamp,
    }
    if log.external_id:
        doc["external_id"] = log.external_id
    doc["source_tag"] = log.source_tag
    doc["metadata"] = log.metadata
    return doc


def log_refusal(log: ActivityLog) -> str:
    """Why ``MongoActivityLogStore`` would refuse ``log``'s document (``domain.NO_EXTERNAL_ID``,
    ``NESTS_TOO_DEEP``, ``too_large(size)``, or a value outside the value model), or ``""`` when it
    would store it."""
    if not log.external_id:
        return NO_EXTERNAL_ID  # the store refuses it before it encodes anything
    if any(nests_past(c.from_, _ATTRIBUTE_ROOM) or nests_past(c.to, _ATTRIBUTE_ROOM) for c in log.changes):
        return NESTS_TOO_DEEP
    if any(nests_past(value, METADATA_ROOM) for value in log.metadata.values()):
        return NESTS_TOO_DEEP
    try:
        size = document_bytes(log_document(log)) + ID_BYTES
    except TypeError as exc:
        return f"cannot encode the document: {exc}"
    return too_large(size) if size > MAX_DOCUMENT_BYTES else ""
