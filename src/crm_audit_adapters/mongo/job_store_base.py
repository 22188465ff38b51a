"""The job store's state and what its writes share: the reads of a job and its leases, the summary of
a sharded job's shards, and the fields each kind of write sends (``jobs`` says the contract).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Collection as Statuses
from typing import Final

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from crm_audit_transform.errors import JobAlreadyRunning
from crm_audit_transform.jobs import MigrationJob
from crm_audit_transform.ports import Clock

from .documents import decode_job, encode_job
from .documents_types import Document, MongoCollection
from .leases import any_live
from .primary import on_primary
from .retry import DEFAULT_RETRY, RetryPolicy, call_with_retry

SUMMARY: Final = frozenset(
    {
        "tally",
        "enrichment",
        "halt_basis",
        "last_audit_id",
        "rows_at_cursor",
        "progress_pct",
        "failure_rate",
        "records_processed",
        "records_migrated",
        "records_skipped",
        "records_failed",
        "actors_degraded",
    }
)
"""The job document's fields derived from its shards (``MigrationJob``'s own derivation, sent as
``encode_job`` writes them): the counts (``tally``, ``enrichment``, ``halt_basis`` and the
``records_*`` and rate fields), the cursor (``last_audit_id``, the shards' watermark) and
``rows_at_cursor`` (0 for a sharded job: each shard saves its own with its cursor, in its entry of
``shards``), and ``progress_pct``. Written by ``summarised``; kept as stored by an ``unleased``
transition (``jobs``), as ``ports.JobStore`` asks of every field that goes with the cursor."""
WRITES: Final = "shard_writes"
"""The job document's count of its shard writes and status changes: what a summary is of (``_SUMMARY_OF``)."""
WRITE_ID: Final = "write_id"
"""Where a counted write (``write_once``) leaves its id: the job document's top level for a status
change, ``shards.<n>.`` for a shard's write. Only the write's retry reads it."""
RELEASE_ID: Final = "release_id"
"""Where a runner's hand-back of the job's lease (``write_once``) leaves its id: beside, not over, a
status change's ``write_id``. A runner hands its lease back right after a cancel stood; over
``write_id`` it would take the cancel's id from a cancel whose answer was lost and is retried."""
_SUMMARY_OF: Final = "summary_of"
_SUMMARY_EVERY: Final = 10
"""A running sharded job's stored summary is set on every ``_SUMMARY_EVERY``-th shard write."""
FENCE_TRIES: Final = 3
"""How often a lease write (``acquire_lease``, ``acquire_shard_lease``) or an ``unleased``
transition is tried again when the lease it met was gone by the time the store looked (handed back
or expired between the two): then nothing holds it, as the in-memory store, which checks and writes
in one step, would have found."""


class JobDocuments:
    """The job documents' collection, retry policy and clock, and the reads the job store's writes
    share: one instance, held by ``MongoJobStore`` and by its ``JobLeases``."""

    __slots__ = ("clock", "collection", "retry")

    def __init__(
        self, collection: MongoCollection, *, retry: RetryPolicy | None = None, clock: Clock | None = None
    ) -> None:
        """``clock=None`` (production): lease expiries on the server's ``$$NOW``; a ``Clock``: on it."""
        self.collection = on_primary(collection)  # a job is read back to decide the next step
        self.retry = retry or DEFAULT_RETRY
        self.clock = clock

    def get(self, job_id: str) -> MigrationJob | None:
        doc = call_with_retry(
            lambda _: self.collection.find_one({"_id": job_id}), self.retry, "read migration job"
        )
        return decode_job(doc) if doc is not None else None

    def now(self) -> dt.datetime | None:
        """The store's clock when it has one (mongomock); None: the server's ``$$NOW``."""
        return None if self.clock is None else self.clock.now()

    def with_a_live_lease(
        self, job_id: str, prefixes: list[str], expected: Statuses[str] | None = None
    ) -> MigrationJob | None:
        """The job as stored while one of the leases at ``prefixes`` (``leases``) is live on the
        store's clock — and its status is one of ``expected``, when given; else None. A lease write
        that missed asks it: a lease handed back or expired since is no refusal."""
        found: Document = {"_id": job_id}
        if expected is not None:
            found["status"] = {"$in": list(expected)}
        query = {"$and": [found, any_live(prefixes, self.now())]}
        doc = call_with_retry(
            lambda _: self.collection.find_one(query), self.retry, "read migration job's leases"
        )
        return None if doc is None else decode_job(doc)

    def write_once(
        self,
        query: Document,
        update: Document | list[Document],
        at: str,
        what: str,
        *,
        duplicate: str | None = None,
        mark: str = WRITE_ID,
    ) -> Document | None:
        """``find_one_and_update(query, update)`` (the document after it), whose retry tells its
        own earlier attempt: a write that counts ``WRITES`` up counts once, and one that changes
        what ``query`` matches (its status, its lease handed back) is answered as it stood.

        The write sets ``<at>write_id`` to an id of its own (``update`` must not set it). A retry
        (a connection dropped before the answer, a write concern not confirmed: the write may stand)
        writes only where that id is another; where it is this write's, the first attempt stood:
        the document as stored comes back, written once. Without the id a retry counted twice, and
        one whose own status change or lease hand-back no longer matched ``query`` answered None
        ("the status was another") or ``LeaseHeld`` for the write it had made. ``duplicate``: the
        words of the ``JobAlreadyRunning`` that a unique index's refusal is (to in progress).
        ``mark``: the id's field under ``at`` (``WRITE_ID``; ``RELEASE_ID`` for a job's hand-back)."""
        write_id = f"{at}{mark}"
        token = uuid.uuid4().hex
        if isinstance(update, list):
            marked: Document | list[Document] = [*update, {"$set": {write_id: {"$literal": token}}}]
        else:
            marked = {**update, "$set": {**update.get("$set", {}), write_id: token}}

        def write(attempt: int) -> Document | None:
            where = query if attempt == 1 else {**query, write_id: {"$ne": token}}
            try:
                stored = self.collection.find_one_and_update(
                    where, marked, return_document=ReturnDocument.AFTER
                )
            except DuplicateKeyError as exc:
                if duplicate is None:
                    raise
                raise JobAlreadyRunning(duplicate) from exc
            if stored is None and attempt > 1:
                stored = self.collection.find_one({"_id": query["_id"], write_id: token})
            return stored

        return call_with_retry(write, self.retry, what)

    def summarised(self, doc: Document, *, always: bool) -> MigrationJob:
        """The job of ``doc``; a sharded one's summary of its shards set, unless a newer one is.

        Set when ``always`` (a status change, a stopping shard) or on every ``_SUMMARY_EVERY``-th
        shard write of the job; otherwise the document keeps its older summary (one round trip less).
        """
        job = decode_job(doc)
        if not job.shards:
            return job
        written = int(doc.get(WRITES) or 0)
        if not always and written % _SUMMARY_EVERY != 0:
            return job
        summary = {k: v for k, v in encode_job(job).items() if k in SUMMARY}
        summary[_SUMMARY_OF] = written
        query = {"_id": job.job_id, "$or": [{_SUMMARY_OF: {"$lt": written}}, {_SUMMARY_OF: None}]}
        call_with_retry(
            lambda _: self.collection.update_one(query, {"$set": summary}),
            self.retry,
            "save sharded job summary",
        )
        return job
