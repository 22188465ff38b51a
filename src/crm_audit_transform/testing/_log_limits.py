"""Why MongoDB would refuse a log's document: nested past 100 levels, or past 16 MiB.

The in-memory stores refuse a log as ``MongoActivityLogStore`` does, with its words, so a test that
passes on them does not fail on MongoDB (tests/contract/test_contract_activity_log_store.py runs the
same cases on every store). The document is the one ``crm_audit_adapters.mongo.documents`` builds:
``company_sso_id``, ``customer_id``, ``category``, ``action``, ``actor`` (``type``, ``name``, ``id``
when set), ``attributes`` (``field``, ``label``, ``from``, ``to`` per change), ``timestamp``,
``external_id`` when set, ``source_tag`` and ``metadata``; sized by ``_bson_size`` with the ObjectId
``_id`` the store adds (``log_bytes``, without building it; ``log_document`` builds it, and
tests/property/test_in_memory_log_limits.py holds the two sizes equal).

Nesting is counted as MongoDB counts it (its "Nested Depth for BSON Documents" limit, 100): the
document is level 1, each non-empty embedded document or array one more, an empty one none. A change's
value sits at level 3 (the document, ``attributes``, its change), a metadata value at level 2.
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
from typing import Any, Final

from ..bson_nesting import nests_past
from ..domain import NO_EXTERNAL_ID, ActivityLog
from ._bson_size import ID_BYTES, MAX_DOCUMENT_BYTES, key_bytes, value_bytes

__all__ = [
    "MAX_NESTING",
    "METADATA_ROOM",
    "NESTS_TOO_DEEP",
    "OVERFLOW",
    "log_bytes",
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

# The value model's types that hold no other value: ``nests_past`` never looks into them, so
# ``log_refusal`` does not call it for one (most changes and metadata values).
_SCALARS: Final = frozenset({str, bool, int, float, type(None), decimal.Decimal, dt.datetime, dt.date, bytes})

# The keys' bytes of the document ``log_document`` builds, added once per log by ``log_bytes``.
_TOP_FIELDS: Final = ("company_sso_id", "customer_id", "category", "action", "actor", "attributes")
_TOP_KEYS: Final = sum(map(key_bytes, (*_TOP_FIELDS, "timestamp", "external_id", "source_tag", "metadata")))
_ACTOR_KEYS: Final = key_bytes("type") + key_bytes("name")
_ACTOR_ID_KEY: Final = key_bytes("id")
_CHANGE_KEYS: Final = sum(map(key_bytes, ("field", "label", "from", "to")))


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


def log_bytes(log: ActivityLog) -> int:
    """``document_bytes(log_document(log))`` for a log with an ``external_id``, without building the
    document: its keys are the same every time, its values are sized in the document's order (so
    the first value outside the value model is the one named). ``TypeError`` as ``document_bytes``.

    The in-memory stores size every log they insert: building the document and walking its keys
    took about 3 × the CPU (benchmarks/bench_in_memory_helpers.py).
    """
    actor = log.actor
    size = (
        5
        + _TOP_KEYS
        + value_bytes(log.company_sso_id)
        + value_bytes(log.customer_id)
        + value_bytes(log.category)
        + value_bytes(log.action)
        + 5
        + _ACTOR_KEYS
        + value_bytes(actor.kind)
        + value_bytes(actor.name)
    )
    if actor.sso_id:
        size += _ACTOR_ID_KEY + value_bytes(actor.sso_id)
    size += 5  # the attributes array; each change an element keyed by its index
    for index, change in enumerate(log.changes):
        size += (
            _index_bytes(index)
            + 5
            + _CHANGE_KEYS
            + value_bytes(change.field)
            + value_bytes(change.label)
            + value_bytes(change.from_)
            + value_bytes(change.to)
        )
    return (
        size
        + value_bytes(log.timestamp)
        + value_bytes(log.external_id)
        + value_bytes(log.source_tag)
        + value_bytes(log.metadata)
    )


@functools.lru_cache(maxsize=1024)
def _index_bytes(index: int) -> int:
    """An array element's type byte, its key (the index's digits) and NUL."""
    return 2 + len(str(index))


def log_refusal(log: ActivityLog) -> str:
    """Why ``MongoActivityLogStore`` would refuse ``log``'s document (``domain.NO_EXTERNAL_ID``,
    ``NESTS_TOO_DEEP``, ``too_large(size)``, or a value outside the value model), or ``""`` when it
    would store it."""
    if not log.external_id:
        return NO_EXTERNAL_ID  # the store refuses it before it encodes anything
    scalars = _SCALARS
    for change in log.changes:  # a loop, not any() of a generator: the stores check every log
        before, after = change.from_, change.to
        if (type(before) not in scalars and nests_past(before, _ATTRIBUTE_ROOM)) or (
            type(after) not in scalars and nests_past(after, _ATTRIBUTE_ROOM)
        ):
            return NESTS_TOO_DEEP
    for value in log.metadata.values():
        if type(value) not in scalars and nests_past(value, METADATA_ROOM):
            return NESTS_TOO_DEEP
    try:
        size = log_bytes(log) + ID_BYTES
    except TypeError as exc:
        return f"cannot encode the document: {exc}"
    return too_large(size) if size > MAX_DOCUMENT_BYTES else ""
