"""The one converter between domain values and MongoDB documents.

An activity log becomes::

    {company_sso_id, customer_id, category, action,
     actor: {type, name, id?}, attributes: [{field, label, from, to}],
     timestamp, external_id?, source_tag, metadata}

The keys are the core's ``domain.LOG_DOCUMENT_KEYS`` (``ACTOR_DOCUMENT_KEYS``,
``ATTRIBUTE_DOCUMENT_KEYS``), which ``/migrate`` takes; written inline here (one dict literal per
log, the fastest build) and held to that list by tests/unit/test_log_document_keys.py.
``external_id`` is left out when empty — an explicit ``null`` is never written, as a partial index
on ``$exists`` (the plan's) would index it; ours filters on ``$type: "string"`` — and ``actor.id``
when the actor has no SSO id. Values follow the rules of ``bson_values``. A job document is the
``MigrationJob`` (with its ``Tally`` nested) under ``_id = job_id``, plus ``progress_pct``,
``failure_rate`` and ``records_*`` counts for readers that do not run this library; those derived
keys are ignored when a document is read back.

The file sink writes ``bson.json_util`` relaxed Extended JSON of exactly ``encode_activity_log``'s
dict, so a dry run's output is what this adapter would insert.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Mapping
from typing import Any, Final, cast

import attrs
import cattrs

from crm_audit_transform.bson_nesting import nests_past
from crm_audit_transform.domain import ActivityLog, Actor, ActorKind, FieldChange
from crm_audit_transform.enrichment_tally import EnrichmentTally
from crm_audit_transform.errors import JobUnreadable
from crm_audit_transform.jobs import (
    COMPLETED,
    HALTED,
    IN_PROGRESS,
    JOB_STATUSES,
    ROLLING_BACK,
    JobShard,
    MigrationJob,
)
from crm_audit_transform.tally import Tally
from crm_audit_transform.values import Value

from .bson_values import (
    BSON,
    INT64_MAX,
    INT64_MIN,
    MONGODB_MAX_NESTING,
    NESTS_PAST_MONGODB,
    ValueEncoder,
    decode_mapping,
    decode_value,
    encode_mapping,
    escape_key,
    from_bson_datetime,
    to_bson_datetime,
    unescape_key,
)
from .documents_types import Document, ReadDocument

__all__ = [
    "activity_log_document",
    "decode_activity_log",
    "decode_job",
    "encode_activity_log",
    "encode_job",
    "make_converter",
]


_SAME_EVERYWHERE: Final = frozenset({str, bool, type(None)})
"""Value types every encoder leaves as they are: most changed values skip the walk."""

_OUR_METADATA_KEYS: Final = frozenset(
    {
        "auditable_id",
        "auditable_type",
        "combined",
        "crm_audit_id",
        "crm_person_id",
        "crm_tenant",
        "linked_entity_id",
        "linked_entity_name",
        "linked_entity_type",
        "request_uuid",
        "username",
    }
)
"""The metadata keys the transformer and the run set: none needs ``escape_key``. The same keys as
``verification.RUN_METADATA_KEYS`` (a test holds them equal; not imported: a run never loads the
verification modules)."""

_LEAVES: Final = frozenset({float, int, decimal.Decimal, dt.datetime, dt.date, bytes})
"""The values ``encode_leaf`` meets that hold no other value: no nesting to check."""

# The levels a value may still nest (MongoDB's count, see ``bson_values.MONGODB_MAX_NESTING``): an
# attribute's value sits in the document (1), ``attributes`` (2) and its attribute (3); a metadata
# value in the document (1) and ``metadata`` (2).
ATTRIBUTE_ROOM: Final = MONGODB_MAX_NESTING - 3
METADATA_ROOM: Final = MONGODB_MAX_NESTING - 2


def encode_activity_log(log: ActivityLog) -> Document:
    """The ``activity_logs`` document of a log, without ``_id`` (the store adds one per insert)."""
    return activity_log_document(log, BSON)


def encode_leaf(value: Value, encoder: ValueEncoder, room: int) -> object:
    """A value that is not str, bool, None or an int64 int: finite floats as they are, else the walk.

    A list or dict is first checked against the ``room`` its place in the document leaves it:
    ``ValueError`` (``NESTS_PAST_MONGODB``) when MongoDB would refuse the document for its nesting.
    Only such values pay for the check, which stops at ``room`` levels.
    """
    if type(value) is float and value - value == 0.0:  # finite (inf - inf and NaN - NaN are NaN)
        return value
    if type(value) not in _LEAVES and nests_past(value, room):
        raise ValueError(NESTS_PAST_MONGODB)
    return encoder.value(value)


def activity_log_document(log: ActivityLog, encoder: ValueEncoder) -> Document:
    """The document's shape, its values through ``encoder`` (BSON objects, or relaxed JSON).

    Values every encoder keeps as they are — strings, booleans, None, int64 integers, finite floats
    — are put in without calling it, and our own metadata keys without escaping: the same document
    as sending every value through ``encoder`` (a property test holds the two equal), for half the
    calls. Most of a log's values are plain, and those calls were most of the encoding.
    """
    same, low, high = _SAME_EVERYWHERE, INT64_MIN, INT64_MAX
    actor = log.actor
    actor_doc: Document = {"type": actor.kind, "name": actor.name}
    if actor.sso_id:
        actor_doc["id"] = actor.sso_id
    # Loops, not comprehensions of conditional expressions: a None (most values: a create's
    # "from", a destroy's "to") is tested first and costs one comparison. Any: each value is read
    # by its exact type, which mypy does not narrow on.
    attributes: list[Document] = []
    old: Any
    new: Any
    for change in log.changes:
        old, new = change.from_, change.to
        if old is not None and (kind := type(old)) not in same and not (kind is int and low <= old <= high):
            old = encode_leaf(old, encoder, ATTRIBUTE_ROOM)
        if new is not None and (kind := type(new)) not in same and not (kind is int and low <= new <= high):
            new = encode_leaf(new, encoder, ATTRIBUTE_ROOM)
        attributes.append({"field": change.field, "label": change.label, "from": old, "to": new})
    doc: Document = {
        "company_sso_id": log.company_sso_id,
        "customer_id": log.customer_id,
        "category": log.category,
        "action": log.action,
        "actor": actor_doc,
        "attributes": attributes,
        "timestamp": encoder.datetime(log.timestamp),
    }
    if log.external_id:
        doc["external_id"] = log.external_id
    doc["source_tag"] = log.source_tag
    ours = _OUR_METADATA_KEYS
    metadata: Document = {}
    item: Any
    for key, item in log.metadata.items():
        if (
            item is not None
            and (kind := type(item)) not in same
            and not (kind is int and low <= item <= high)
        ):
            item = encode_leaf(item, encoder, METADATA_ROOM)
        metadata[key if key in ours else escape_key(key)] = item
    doc["metadata"] = metadata
    return doc


def decode_activity_log(doc: ReadDocument) -> ActivityLog:
    """A stored log back as an ``ActivityLog`` (dates come back as their ISO strings)."""
    actor = doc.get("actor") or {}
    return ActivityLog(
        company_sso_id=str(doc["company_sso_id"]),
        customer_id=str(doc.get("customer_id", "")),
        category=str(doc.get("category", "")),
        action=str(doc.get("action", "")),
        actor=Actor(
            kind=cast(ActorKind, actor.get("type", "system")),
            name=str(actor.get("name", "")),
            sso_id=actor.get("id"),
        ),
        changes=tuple(
            FieldChange(
                field=str(item.get("field", "")),
                label=str(item.get("label", "")),
                from_=decode_value(item.get("from")),
                to=decode_value(item.get("to")),
            )
            for item in doc.get("attributes") or ()
        ),
        timestamp=from_bson_datetime(doc["timestamp"]),
        external_id=str(doc.get("external_id", "")),
        source_tag=str(doc.get("source_tag", "")),
        metadata=decode_mapping(doc.get("metadata") or {}),
    )


def _unstructure_tally(tally: Tally) -> Document:
    return {
        "processed": tally.processed,
        "migrated": tally.migrated,
        "skipped": encode_mapping(tally.skipped),
        "failed": encode_mapping(tally.failed),
        "fallthrough": tally.fallthrough,
        "actors_degraded": tally.actors_degraded,
    }


def _structure_tally(doc: ReadDocument, _: object) -> Tally:
    def counts(key: str) -> dict[str, int]:
        stored: ReadDocument = doc.get(key) or {}
        return {unescape_key(k): _integer(v) for k, v in stored.items()}

    return Tally(
        processed=_integer(doc.get("processed", 0)),
        migrated=_integer(doc.get("migrated", 0)),
        skipped=counts("skipped"),
        failed=counts("failed"),
        fallthrough=_integer(doc.get("fallthrough", 0)),
        actors_degraded=_integer(doc.get("actors_degraded", 0)),
    )


def _unstructure_enrichment(tally: EnrichmentTally) -> Document:
    # A job's enrichment document keeps the five counts a job has always stored; the plan and apply
    # counts (zero on every job: a run plans and applies nothing) are written only when set.
    doc: Document = dict(tally.as_dict())
    for name in ("ignored", "planned_patches", "planned_keys", "keys_left_alone", "keys_too_large"):
        if getattr(tally, name):
            doc[name] = getattr(tally, name)
    if tally.keys_refused:
        doc["keys_refused"] = dict(tally.keys_refused)
    return doc


def _text(value: object, _: object) -> str:
    """A text field as stored: a ``str`` (a BSON string), nothing converted to one."""
    if type(value) is not str:
        raise TypeError(f"expected text, got {type(value).__name__}")
    return value


def _integer(value: object, _: object = None) -> int:
    """An integer field as stored: a BSON int32 or int64, nothing converted to one."""
    # int() takes "12", 12.7, true and "1_000" as 12, 12, 1 and 1000: a cursor or a count edited
    # into a text, a double or a boolean would be served as another number, where it is no job's.
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    return value


def make_converter() -> cattrs.Converter:
    """A cattrs converter for the MongoDB document format of this library.

    Datetimes go out aware UTC truncated to milliseconds and come back aware UTC; ``Tally`` keeps its
    reason keys escaped like every other document key; ``ActivityLog`` uses the hand-written
    encoder above (its document shape is fixed by the CDP, not by the attrs fields).
    """
    converter = cattrs.Converter()
    # Text is text and an integer an integer: cattrs' own hooks are str(value) and int(value), which
    # would serve a job_id stored as {"$x": "y"} or 5 as the text "{'$x': 'y'}" or "5" (naming no
    # job), and a cursor stored as "12" or 12.7 as 12; such a job is JOB_UNREADABLE.
    converter.register_structure_hook(str, _text)
    converter.register_structure_hook(int, _integer)
    converter.register_unstructure_hook(dt.datetime, to_bson_datetime)
    converter.register_structure_hook(dt.datetime, lambda value, _: from_bson_datetime(value))
    converter.register_unstructure_hook(Tally, _unstructure_tally)
    converter.register_unstructure_hook(EnrichmentTally, _unstructure_enrichment)
    converter.register_structure_hook(Tally, _structure_tally)
    converter.register_unstructure_hook(ActivityLog, encode_activity_log)
    converter.register_structure_hook(ActivityLog, lambda doc, _: decode_activity_log(doc))
    # A job's shards are a sub-document keyed by shard number ("0", "1", …), not an array: one
    # shard's fields are then plain dotted paths ("shards.1.lease_owner") for filters, $set and
    # update pipelines alike, and a shard's write touches nothing of another's.
    shards_type = tuple[JobShard, ...]
    converter.register_unstructure_hook_func(
        lambda t: t == shards_type,
        lambda shards: {str(s.shard): converter.unstructure(s, JobShard) for s in shards},
    )
    converter.register_structure_hook_func(
        lambda t: t == shards_type,
        lambda doc, _: tuple(converter.structure(doc[key], JobShard) for key in sorted(doc or {}, key=int)),
    )
    return converter


_CONVERTER = make_converter()


def encode_job(job: MigrationJob) -> Document:
    """The job document: every field, ``_id = job_id``, and derived figures for other readers."""
    doc: Document = {"_id": job.job_id}
    doc.update(_CONVERTER.unstructure(job))
    doc["progress_pct"] = job.progress_pct
    doc["failure_rate"] = job.failure_rate
    doc["records_processed"] = job.tally.processed
    doc["records_migrated"] = job.tally.migrated
    doc["records_skipped"] = job.tally.skipped_total
    doc["records_failed"] = job.tally.failed_total
    doc["actors_degraded"] = job.tally.actors_degraded
    del doc["rollback_unfinished"]  # derived from the rollback's own fields when read, never stored
    return doc


ROLLBACK_SENDING: Final = "rollback_sending"
"""A job's chunk in flight (``job_rollbacks``): ``{owner, ids}``, or ``{owner, ids: [], whole: n}``."""
ROLLBACKS_COUNTED: Final = "rollbacks_counted"
"""The tokens of the rollbacks whose count ``logs_deleted`` holds, or that an adopter closed."""


def _rollback_unfinished(doc: ReadDocument) -> int | None:
    """``MigrationJob.rollback_unfinished`` of a job document: the size of the chunk in flight while
    the job is ``rolling_back`` and the count of the chunk's owner is not closed (``owner`` not in
    ``rollbacks_counted``: neither its ``finish_rollback`` nor an adopter's took it)."""
    sending = doc.get(ROLLBACK_SENDING)
    if doc.get("status") != ROLLING_BACK or not isinstance(sending, Mapping):
        return None
    owner, counted = sending.get("owner"), doc.get(ROLLBACKS_COUNTED)
    if not isinstance(owner, str) or (isinstance(counted, list) and owner in counted):
        return None
    whole, ids = sending.get("whole"), sending.get("ids")
    if isinstance(whole, int) and not isinstance(whole, bool):
        return whole or None
    return (len(ids) or None) if isinstance(ids, list) else None


def encode_shard(shard: JobShard) -> Document:
    """One entry of a job's ``shards`` sub-document (the fields of ``JobShard``)."""
    doc: Document = _CONVERTER.unstructure(shard, JobShard)
    return doc


def decode_job(doc: ReadDocument) -> MigrationJob:
    """A job document back as a ``MigrationJob``; ``_id`` and the derived figures are ignored.

    ``JobUnreadable`` (naming the document's ``_id`` and account) for a document that is no job: a
    field missing or of another type, or a ``status`` (the job's or a shard's) outside those a job
    is ever given (``JOB_STATUSES``; a shard's ``SHARD_STATUSES``), which no reader may be served.
    """
    try:
        job = _CONVERTER.structure(dict(doc), MigrationJob)
    except (
        cattrs.BaseValidationError,
        KeyError,
        TypeError,
        ValueError,
        AttributeError,
        OverflowError,
    ) as exc:
        raise _unreadable(doc, "; ".join(_problems(exc))) from exc
    if job.status not in JOB_STATUSES:
        raise _unreadable(
            doc, f"status {_cut(repr(job.status))} is none of {', '.join(sorted(JOB_STATUSES))}"
        )
    for shard in job.shards:
        if shard.status not in SHARD_STATUSES:
            raise _unreadable(doc, f"shard {shard.shard}'s status {_cut(repr(shard.status))} is unknown")
    unfinished = _rollback_unfinished(doc)
    return job if job.rollback_unfinished == unfinished else attrs.evolve(job, rollback_unfinished=unfinished)


SHARD_STATUSES: Final = frozenset({IN_PROGRESS, COMPLETED, HALTED})
"""A shard's statuses (``JobShard``): a cancel or a rollback is the job's status, never a shard's."""


def _problems(exc: Exception) -> list[str]:
    """What cattrs found wrong, one short line each (``required field missing @ $.tenant``)."""
    lines = cattrs.transform_error(exc, path="$") if isinstance(exc, cattrs.BaseValidationError) else []
    return [_cut(line) for line in lines[:5]] or [_cut(f"{type(exc).__name__}: {exc}")]


def _unreadable(doc: ReadDocument, problem: str) -> JobUnreadable:
    company = doc.get("company_sso_id")
    return JobUnreadable(
        _cut(str(doc.get("_id"))), _cut(company) if isinstance(company, str) else None, problem
    )


def _cut(text: str) -> str:
    """``text`` for an error message, cut short: a hand-edited document may hold anything."""
    return text if len(text) <= 80 else f"{text[:60]}… ({len(text)} characters)"
