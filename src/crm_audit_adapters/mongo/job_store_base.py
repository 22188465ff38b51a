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

CURSOR_AND_COUNTS: Final = frozenset(
    {
        "last_audit_id",
        "rows_at_cursor",
        "tally",
        "enrichment",
        "progress_pct",
        "failure_rate",
        "records_processed",
        "records_migrated",
        "records_skipped",
        "records_failed",
        "actors_degraded",
    }
)
"""The job document's cursor, its counts and the figures ``encode_job`` derives from them: what a
run's progress write (``job_leases``) and a sharded job's summary (``SUMMARY``) both send."""
SUMMARY: Final = CURSOR_AND_COUNTS | {"halt_basis"}
"""The job document's fields derived from its shards (``MigrationJob``'s own derivation, sent as
``encode_job`` writes them): the counts (``tally``, ``enrichment``, ``halt_basis`` and the
``records_*`` and rate fields), the cursor (``last_audit_id``, the shards' watermark) and
``rows_at_cursor`` (0 for a sharded job: each shard saves its own with its cursor, in its entry of
``shards``), and ``progress_pct``. Written by ``summarised``; kept as stored by an ``unleased``
transition (``jobs``), as ``ports.JobStore`` asks of every field that goes with the cursor."""
WRITES: Final = "shard_writes"
"""The job document's count of its shard writes and status changes: what a summary is of (``SUMMARY_OF``)."""
WRITE_ID: Final = "write_id"
"""Where a counted write (``write_once``) leaves its id: the job document's top level for a run's
progress and for a status change, ``shards.<n>.`` for a shard's write. A run's progress write is
retried on it: a status change since (its id over this one) sends the retry to what is stored."""
STATUS_IDS: Final = "status_write_ids"
"""The ids of the job's last ``STATUS_IDS_KEPT`` status changes (``write_once`` with this mark, the
whole replacements of ``jobs`` too), oldest first; a status change is retried on it. With one
``write_id``, a status change between a write and its retry would put its own id there: the retry of
a cancel whose answer was lost, after a resume, would meet another id and cancel the resumed job
again, and a hand-back after another hold would be read back as never written."""
STATUS_IDS_KEPT: Final = 16
"""Status changes of one job between a write and its retry (seconds, ``retry.DEFAULT_RETRY``) are
an operator's or a rollback's, a few at most: 16 ids (about 0.6 KB) keep any of them recognised."""
RELEASE_ID: Final = "release_id"
"""Where a runner's hand-back of the job's lease (``write_once``) leaves its id: beside, not over, a
status change's ``write_id``. A runner hands its lease back right after a cancel stood; over
``write_id`` it would take the cancel's id from a cancel whose answer was lost and is retried."""
SUMMARY_OF: Final = "summary_of"
_SUMMARY_EVERY: Final = 10
"""A running sharded job's stored summary is set on every ``_SUMMARY_EVERY``-th shard write."""


def write_marks(shards: int) -> list[str]:
    """What a whole replacement of the job document (``jobs``: a resume, a repair) keeps as stored:
    the ids of the counted writes before it (``STATUS_IDS``, ``RELEASE_ID`` and each shard's
    ``shards.<n>.write_id``), ``WRITES`` and ``summary_of``. A write whose answer was lost and whose
    retry comes after such a replacement must still find its own id (else it is applied a second
    time, or read as never written), and an older summary must not pass for a newer one."""
    return [STATUS_IDS, RELEASE_ID, WRITES, SUMMARY_OF, *(f"shards.{n}.{WRITE_ID}" for n in range(shards))]


FENCE_TRIES: Final = 3
"""How often a lease write (``acquire_lease``, ``acquire_shard_lease``) or an ``unleased``
transition is tried again when the lease it met was gone by the time the store looked (handed back
or expired between the two): then nothing holds it, as the in-memory store, which checks and writes
in one step, would have found."""
SUM_TRIES: Final = 10
"""How often a status change of a sharded job sums its shards again (``summed``) when a shard wrote
between its read and its write (one round trip apart). Past ten misses in a row the status is
written alone and the sums right after it (``jobs.MongoJobStore.transition``): the status write stops
the shards' saves, so the second write sums their final entries."""


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
        doc = self.read(job_id)
        return decode_job(doc) if doc is not None else None

    def read(self, job_id: str) -> Document | None:
        """The job's document as stored, or None."""
        return call_with_retry(
            lambda _: self.collection.find_one({"_id": job_id}), self.retry, "read migration job"
        )

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

        The write sets ``<at><mark>`` to an id of its own (``update`` must not set it). A retry
        (a connection dropped before the answer, a write concern not confirmed: the write may stand)
        writes only where that id is not there; where it is, the first attempt stood: the document
        as stored comes back, written once. Without the id a retry counted twice, and one whose own
        status change or lease hand-back no longer matched ``query`` answered None ("the status was
        another") or ``LeaseHeld`` for the write it had made. ``duplicate``: the words of the
        ``JobAlreadyRunning`` that a unique index's refusal is (to in progress). ``mark``: the
        id's field under ``at``: ``WRITE_ID`` (one id: another write there since sends the retry to
        what is stored), ``RELEASE_ID`` for a job's hand-back, or ``STATUS_IDS`` for a status change
        (the id added to the last ``STATUS_IDS_KEPT`` ones, and set at ``write_id`` too: a run's
        progress retried across it meets a write since)."""
        token = uuid.uuid4().hex
        write_id = f"{at}{mark}"
        marked = _marked(update, at, mark, token)

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

        Set when ``always`` (a stopping shard, a rollback's give-back or end) or on every
        ``_SUMMARY_EVERY``-th shard write of the job; otherwise the document keeps its older summary
        (one round trip less). A status change of ``jobs`` sends its summary in its own write
        (``summed``), not in this second one."""
        job = decode_job(doc)
        if not job.shards:
            return job
        written = int(doc.get(WRITES) or 0)
        if not always and written % _SUMMARY_EVERY != 0:
            return job
        summary = {k: v for k, v in encode_job(job).items() if k in SUMMARY}
        summary[SUMMARY_OF] = written
        query = {"_id": job.job_id, "$or": [{SUMMARY_OF: {"$lt": written}}, {SUMMARY_OF: None}]}
        call_with_retry(
            lambda _: self.collection.update_one(query, {"$set": summary}),
            self.retry,
            "save sharded job summary",
        )
        return job


def summed(stored: Document, fields: Document) -> tuple[Document, Document]:
    """A status change's summary of a sharded job: ``(the summary fields, the filter it stands on)``.

    The summary (``SUMMARY``, and ``summary_of`` that write's ``WRITES``) is the one of ``stored``
    with ``fields`` set over it (its new status: a completed job's ``progress_pct`` is 100), so the
    status change sends it in its own write: a reader never meets the new status beside older sums,
    and a process killed after that write leaves none behind. The filter (``WRITES`` as ``stored``
    holds it) lets the write stand only where no shard wrote since ``stored`` was read.
    """
    written = stored.get(WRITES)
    job = decode_job({**stored, **fields})
    summary = {k: v for k, v in encode_job(job).items() if k in SUMMARY}
    summary[SUMMARY_OF] = int(written or 0) + 1
    return summary, {WRITES: written}


def _marked(update: Document | list[Document], at: str, mark: str, token: str) -> Document | list[Document]:
    """``update`` with ``token`` at ``<at><mark>`` (``JobDocuments.write_once``): ``$set`` there, or,
    for ``STATUS_IDS``, pushed to the list's last ``STATUS_IDS_KEPT`` and ``$set`` at ``write_id``;
    an update pipeline gets one more ``$set`` stage that does the same."""
    field = f"{at}{mark}"
    if mark != STATUS_IDS:
        if isinstance(update, list):
            return [*update, {"$set": {field: {"$literal": token}}}]
        return {**update, "$set": {**update.get("$set", {}), field: token}}
    if isinstance(update, list):
        kept = {"$concatArrays": [{"$ifNull": [f"${field}", []]}, {"$literal": [token]}]}
        stage = {field: {"$slice": [kept, -STATUS_IDS_KEPT]}, f"{at}{WRITE_ID}": {"$literal": token}}
        return [*update, {"$set": stage}]
    assert "$push" not in update  # the one $push of a status change is its id's
    return {
        **update,
        "$set": {**update.get("$set", {}), f"{at}{WRITE_ID}": token},
        "$push": {field: {"$each": [token], "$slice": -STATUS_IDS_KEPT}},
    }
