"""The updates of a job's status change (``jobs.MongoJobStore.transition``): an ``unleased`` one with
its optional hold, a whole replacement that keeps the ids of the writes before it, and a resume's
fence on the counts and cursors it read.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Final

from .bson_values import to_bson_datetime
from .documents_types import Document
from .job_store_base import SUMMARY_OF, WRITES, write_marks


def unleased_update(
    fields: Document, hold: tuple[str, dt.timedelta] | None, now: dt.datetime | None
) -> Document | list[Document]:
    """The update of an ``unleased`` status change: ``$set`` of ``fields``; with ``hold``
    (``hold_rollback``) the job's lease too, until ``now`` + its ttl, or on the server's ``$$NOW``
    (an update pipeline, every other value a literal) when ``now`` is None."""
    if hold is None:
        return {"$set": fields, "$inc": {WRITES: 1}}
    owner, ttl = hold
    if now is not None:
        lease = {"lease_owner": owner, "lease_expires_at": to_bson_datetime(now + ttl)}
        return {"$set": {**fields, **lease}, "$inc": {WRITES: 1}}
    literal: Document = {key: {"$literal": value} for key, value in fields.items()}
    literal["lease_owner"] = {"$literal": owner}
    literal["lease_expires_at"] = {"$add": ["$$NOW", round(ttl.total_seconds() * 1000)]}
    literal[WRITES] = {"$add": [{"$ifNull": [f"${WRITES}", 0]}, 1]}
    return [{"$set": literal}]


def replacement(doc: Document, shards: int) -> list[Document]:
    """The update pipeline that writes ``doc`` whole over the stored job but for ``write_marks``
    (kept as stored; ``WRITES`` counted one up, as every status change counts it, and a sharded
    job's ``SUMMARY_OF`` set to it: ``doc``'s figures are its shards' sums). Each shard's
    entry is set field by field (``shards.<n>.<field>``), so its ``write_id`` stays beside them; every
    value is a literal (a string starting with ``$`` must not read as a field path)."""
    literal: Document = {}
    for key, value in doc.items():
        if key == "_id":
            continue
        if key == "shards" and value:
            for n, entry in value.items():
                literal.update({f"shards.{n}.{k}": {"$literal": v} for k, v in entry.items()})
        else:
            literal[key] = {"$literal": value}
    literal[WRITES] = {"$add": [{"$ifNull": [f"${WRITES}", 0]}, 1]}
    if shards:
        literal[SUMMARY_OF] = literal[WRITES]
    return [{"$project": dict.fromkeys(write_marks(shards), 1)}, {"$set": literal}]


FENCED: Final = ("last_audit_id", "tally.processed", "tally.migrated")
"""What a resume fences on: the cursor and the processed and migrated counts. A runner's saved batch
moves the first two, a ``verify --repair`` count the last two; each only grows. Scalars, matched by
their dotted paths: a whole ``tally`` or ``enrichment`` sub-document matches only one of exactly the
stored keys in the stored order, so a job stored by an older version (a ``tally`` without
``actors_degraded``) could never be resumed."""


def counts_of(doc: Document, shards: int) -> Document:
    """A resume's fence (``MongoJobStore.transition(..., resumed=True)``): ``FENCED`` of ``doc`` as equality
    filters — a sharded job's shard by shard (its top-level sums may lag its shards)."""

    def at(entry: Document, path: str) -> Any:
        for key in path.split("."):
            entry = entry[key]
        return entry

    if shards:
        return {f"shards.{n}.{k}": at(doc["shards"][str(n)], k) for n in range(shards) for k in FENCED}
    return {k: at(doc, k) for k in FENCED}
