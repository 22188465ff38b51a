"""``crm_activity_log_migration_jobs``: durable job documents, one in progress per account.

The database enforces the "one in progress" rule through the partial unique index
``idx_company_status``; this store only translates its duplicate-key error into
``JobAlreadyRunning``. Leases are taken with one conditional ``find_one_and_update``, so two runners
can never both hold one. The run loop's per-batch ``save_progress`` is one ``find_one_and_update``
guarded on the lease owner and on ``status: in_progress``: it renews the lease and saves the
progress in one round trip; a runner whose lease was taken over overwrites nothing, and one whose
job was cancelled gets the cancelled job back. ``save`` is last-writer-wins; ``transition`` is a
compare-and-set on the stored status (cancel, resume, the rollback's hold).

**A sharded job's top-level figures** (``records_*``, ``progress_pct``, ``failure_rate``, ``tally``,
``last_audit_id``) are the sums of its shards, for readers of the document that are not this
store (dashboards, the CDP's own status). Shards write their own entries concurrently, so every
shard write (and every status change) counts ``shard_writes`` up; every 10th shard write and a
shard's completion or hand-back then set the summary of the document they got back, guarded on
``summary_of`` being older. A status change sends the summary in its own write
(``job_store_base.summed``): summed from a read of the stored shards just before it, with the new
status, and guarded on ``shard_writes`` still being the count read (a shard that wrote in between:
read and summed again); a resume or a repair, which write the shards too, sends their sums. So no
reader meets an ended job beside older sums, and no crash between two writes leaves one so. Shards
that write under each of ``SUM_TRIES`` tries (a cancel of a job whose shards save batches faster
than a read and a write take) do not hold the change back: the status is then written alone, which
stops every shard's saves (they are guarded on ``in_progress``), and the sums of their final entries
right after it; only a crash between those two writes leaves that ended job's figures behind. The
stored summary is always that of the newest summarising write, never an older one; while shards
run it is at most 9 writes behind the shards' entries (a crash between a shard's write and its
summary: until the next summarising write), and it is exact once the job has ended. A summary on
every batch cost one more CDP round trip per batch for a figure nobody reads at that rate.

**Leases on the database's clock.** Expiries are computed by the server: both lease writes are
update *pipelines* that set ``lease_expires_at: {$add: ["$$NOW", ttl_ms]}`` and compare an
existing lease with ``$$NOW`` — so runners on hosts whose clocks disagree still agree on whether a
lease has expired. Every "is a lease live" of this store is ``leases``' filter of the core's rule
(``jobs.lease_is_live``). mongomock does not evaluate ``$$NOW`` (it leaves the field unset), so a store
built with ``clock=`` (what the composition root does for ``mongomock://``) computes expiries on
that clock instead, with the same filters; a real server, or the wire-protocol test server, takes
the ``$$NOW`` path.

``MongoJobStore`` is five modules: this one (create, read, save and the status changes:
``transition``, ``hold_rollback``), ``job_status_updates`` (the updates those status changes send),
``job_leases`` (``JobLeases``: the lease writes and a run's progress under a lease),
``job_rollbacks`` (``JobRollbacks``: a rollback's writes after its hold) and ``job_store_base``
(``JobDocuments``: the collection, the reads those writes share, the summary). The store holds
one ``JobDocuments`` and a ``JobLeases`` and a ``JobRollbacks`` over it, and hands the lease and
rollback writes to those.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection as Statuses
from typing import Any, Final

from pymongo import DESCENDING
from pymongo.errors import DuplicateKeyError

from crm_audit_transform.errors import (
    JobAlreadyRunning,
    JobNotFound,
    JobUnreadable,
    LeaseHeld,
)
from crm_audit_transform.jobs import (
    COMPLETED,
    IN_PROGRESS,
    JobShard,
    MigrationJob,
    RollbackInFlight,
    last_lease,
)
from crm_audit_transform.ports import Clock

from .bson_values import to_bson_datetime
from .documents import decode_job, encode_job
from .documents_types import Document, MongoCollection, MongoDatabase
from .job_leases import JobLeases
from .job_rollbacks import JobRollbacks
from .job_status_updates import counts_of, replacement, unleased_update
from .job_store_base import (
    FENCE_TRIES,
    STATUS_IDS,
    SUM_TRIES,
    SUMMARY,
    WRITES,
    JobDocuments,
    summed,
)
from .leases import job_prefixes, none_live
from .names import CollectionNames
from .retry import RetryPolicy, call_with_retry

__all__ = ["MongoJobStore"]

_CHANGE_STATUS: Final = "change migration job status"
_STATUS: Final = frozenset({"status", "updated_at", "finished_at", "halted_reason"})
"""What a ``status_only`` transition writes (``cancel``); the run's fields and the leases stay as stored."""


class MongoJobStore:
    """``ports.JobStore`` over a pymongo (or mongomock) collection."""

    __slots__ = ("_docs", "_leases", "_rollbacks")

    def __init__(
        self, collection: MongoCollection, *, retry: RetryPolicy | None = None, clock: Clock | None = None
    ) -> None:
        """``clock=None`` (production): lease expiries on the server's ``$$NOW``; a ``Clock``: on it."""
        self._docs = JobDocuments(collection, retry=retry, clock=clock)
        self._leases = JobLeases(self._docs)
        self._rollbacks = JobRollbacks(self._docs)

    def get(self, job_id: str) -> MigrationJob | None:
        return self._docs.get(job_id)

    def acquire_lease(self, job_id: str, owner: str, ttl: dt.timedelta) -> MigrationJob:
        return self._leases.acquire_lease(job_id, owner, ttl)

    def save_progress(self, job: MigrationJob, owner: str, ttl: dt.timedelta | None) -> MigrationJob:
        return self._leases.save_progress(job, owner, ttl)

    def acquire_shard_lease(self, job_id: str, shard: int, owner: str, ttl: dt.timedelta) -> MigrationJob:
        return self._leases.acquire_shard_lease(job_id, shard, owner, ttl)

    def note_not_resent(self, company_sso_id: str, shard: int | None = None) -> MigrationJob | None:
        return self._leases.note_not_resent(company_sso_id, shard)

    def save_shard_progress(
        self, job_id: str, shard: JobShard, owner: str, ttl: dt.timedelta | None
    ) -> MigrationJob:
        return self._leases.save_shard_progress(job_id, shard, owner, ttl)

    def grow_source_mark(
        self, job_id: str, owner: str, mark: str, *, previous: str, shard: int | None = None
    ) -> MigrationJob:
        return self._leases.grow_source_mark(job_id, owner, mark, previous=previous, shard=shard)

    def rollback_under_way(self, company_sso_id: str) -> MigrationJob | None:
        return self._rollbacks.rollback_under_way(company_sso_id)

    def give_back_rollback(self, job: MigrationJob, *, owner: str) -> MigrationJob | None:
        return self._rollbacks.give_back_rollback(job, owner=owner)

    def renew_rollback(
        self,
        job_id: str,
        *,
        owner: str,
        ttl: dt.timedelta,
        deleted: int,
        chunk: int,
        sending: RollbackInFlight | None = None,
    ) -> MigrationJob:
        return self._rollbacks.renew_rollback(
            job_id, owner=owner, ttl=ttl, deleted=deleted, chunk=chunk, sending=sending
        )

    def adopt_rollback_chunk(self, job_id: str, *, owner: str) -> RollbackInFlight:
        return self._rollbacks.adopt_rollback_chunk(job_id, owner=owner)

    def finish_rollback(self, job: MigrationJob, deleted: int, *, token: str) -> MigrationJob | None:
        return self._rollbacks.finish_rollback(job, deleted, token=token)

    @classmethod
    def in_database(
        cls,
        db: MongoDatabase,
        names: CollectionNames | None = None,
        *,
        retry: RetryPolicy | None = None,
        clock: Clock | None = None,
    ) -> MongoJobStore:
        return cls(db[(names or CollectionNames()).jobs], retry=retry, clock=clock)

    def create(self, job: MigrationJob) -> None:
        """Insert the job; ``JobAlreadyRunning`` when the account has one in progress.

        A retry after a lost acknowledgement meets its own document (same ``_id``, same account and
        creation time) and accepts it instead of refusing the job it just created.
        """
        doc = encode_job(job)

        def insert(attempt: int) -> None:
            try:
                self._docs.collection.insert_one(dict(doc))
            except DuplicateKeyError as exc:
                if attempt > 1 and self._is_stored(doc):
                    return
                raise JobAlreadyRunning(
                    f"company {job.company_sso_id} already has a job in progress (or job {job.job_id} exists)"
                ) from exc

        call_with_retry(insert, self._docs.retry, "create migration job")

    def _is_stored(self, doc: Document) -> bool:
        stored = self._docs.collection.find_one({"_id": doc["_id"]}, {"company_sso_id": 1, "created_at": 1})
        return (
            stored is not None
            and stored.get("company_sso_id") == doc["company_sso_id"]
            and stored.get("created_at") is not None
            and to_bson_datetime(stored["created_at"]) == doc["created_at"]
        )

    def latest(self, company_sso_id: str) -> MigrationJob | None:
        """The account's newest job by ``created_at`` (``_id`` breaks ties), or None."""

        def find(_: int) -> Document | None:
            return self._docs.collection.find_one(
                {"company_sso_id": company_sso_id}, sort=[("created_at", DESCENDING), ("_id", DESCENDING)]
            )

        doc = call_with_retry(find, self._docs.retry, "read latest migration job")
        return decode_job(doc) if doc is not None else None

    def latest_per_account(self) -> list[MigrationJob | JobUnreadable]:
        """Every account's newest job (as ``latest``), ordered by ``company_sso_id``: ``status --all``.

        An account whose newest document cannot be read as a job is its ``JobUnreadable`` (naming the
        document), so one bad document hides no other account; documents with no text
        ``company_sso_id`` come last, one each.
        """

        def find(_: int) -> list[Document]:
            cursor = self._docs.collection.find({}, sort=[("created_at", DESCENDING), ("_id", DESCENDING)])
            return list(cursor)

        newest: dict[tuple[int, str], MigrationJob | JobUnreadable] = {}
        for doc in call_with_retry(find, self._docs.retry, "read migration jobs"):
            company = doc.get("company_sso_id")
            key = (0, company) if isinstance(company, str) else (1, str(doc.get("_id")))
            if key in newest:
                continue
            try:
                newest[key] = decode_job(doc)
            except JobUnreadable as exc:
                newest[key] = exc
        return [newest[key] for key in sorted(newest)]

    def save(self, job: MigrationJob) -> None:
        """Replace the job document; ``JobNotFound`` if it was never created.

        Turning a job back to ``in_progress`` while the account has another one in progress is
        refused by the index, like ``create``.
        """
        doc = encode_job(job)

        def replace(_: int) -> int:
            try:
                return self._docs.collection.replace_one({"_id": job.job_id}, doc).matched_count
            except DuplicateKeyError as exc:
                raise JobAlreadyRunning(
                    f"company {job.company_sso_id} already has another job in progress"
                ) from exc

        if call_with_retry(replace, self._docs.retry, "save migration job") == 0:
            raise JobNotFound(f"no job {job.job_id}")

    def hold_rollback(
        self, job: MigrationJob, expected: Statuses[str], *, owner: str, ttl: dt.timedelta
    ) -> MigrationJob | None:
        """``transition(job, expected, unleased=True)`` that also gives the job's lease to ``owner``
        until the store's now + ``ttl`` in the same write (the rollback's hold: a second rollback
        meets a live lease and is ``LeaseHeld``)."""
        return self._transition(job, expected, unleased=True, hold=(owner, ttl))

    def transition(
        self,
        job: MigrationJob,
        expected: Statuses[str],
        *,
        unleased: bool = False,
        leased_to: str | None = None,
        status_only: bool = False,
        resumed: bool = False,
    ) -> MigrationJob | None:
        """Replace the job where its stored status is one of ``expected``; None when it was another.

        From ``in_progress`` a sharded job's ``shards`` are left as stored (``$set`` of the other
        fields): its live shards own their entries, and a cancel must not undo their last batch —
        unless ``leased_to`` holds them all (``verify --repair``): the whole document is replaced.
        ``unleased`` adds "no lease of the job or of a shard live on the server's ``$$NOW``" to the
        same filter (``leases.none_live``): ``LeaseHeld`` when the status matched and a lease is still
        live; when the lease it met was handed back or expired before the store looked, the write is
        tried again (``FENCE_TRIES``), as the in-memory store, which checks and writes in one step,
        would have written. Both fences name ``job``'s shards one by one: a job's shards are fixed
        when it is triggered. ``status_only`` (cancel) ``$set``s the status and its end alone
        (``_STATUS``): a runner's progress saved since ``job`` was read is not written back over.
        ``resumed`` (``trigger --resume``) replaces the whole document (but for the ids of the
        writes before it, ``job_store_base.write_marks``) under the ``unleased`` filter: no lease
        being live there, clearing the lease fields takes nobody's; and under the counts and
        cursors ``job`` holds (``job_status_updates.counts_of``): None when they moved.
        """
        return self._transition(
            job, expected, unleased=unleased, leased_to=leased_to, status_only=status_only, resumed=resumed
        )

    def _transition(
        self,
        job: MigrationJob,
        expected: Statuses[str],
        *,
        unleased: bool = False,
        leased_to: str | None = None,
        status_only: bool = False,
        resumed: bool = False,
        hold: tuple[str, dt.timedelta] | None = None,
    ) -> MigrationJob | None:
        """``transition``; ``hold`` (``hold_rollback``, with ``unleased``): the job's lease given to
        its owner until the store's now + its ttl, in the same write."""
        doc = encode_job(job)
        query: Document = {"_id": job.job_id, "status": {"$in": list(expected)}}
        fences: list[Document] = []
        if leased_to is not None:
            query["lease_owner"] = leased_to
            # A completed shard is never written by a runner again: a lease left on it does not count.
            fences.extend(
                {
                    "$or": [
                        {f"shards.{n}.lease_owner": {"$in": [None, leased_to]}},
                        {f"shards.{n}.status": COMPLETED},
                    ]
                }
                for n in range(len(job.shards))
            )
        if resumed:
            # Only while the counts and cursors are the ones the resume read: its halt basis is them.
            query.update(counts_of(doc, len(job.shards)))
        if fences:
            query["$and"] = fences

        def fenced() -> Document:
            """The filter of one try: "no live lease" on the store's now at this try (a clock that
            moved between tries must be read again), beside the fences that do not change."""
            if not unleased:
                return query
            return {**query, "$and": [none_live(job_prefixes(len(job.shards)), self._docs.now()), *fences]}

        running = f"company {job.company_sso_id} already has another job in progress"
        # A sharded job's summary goes in the status change's own write. Where the shards stay as
        # stored, it is summed from a read of them just before, and stands only if no shard wrote since.
        from_stored = bool(job.shards) and (
            status_only or (unleased and not resumed) or (IN_PROGRESS in expected and leased_to is None)
        )
        # False once shards wrote under ``SUM_TRIES`` tries: the status is then written alone, and the
        # sums after it (``summarised``): a shard saves only while the job is in progress
        # (``job_leases``), so no shard entry moves once that write stands, and a cancel of a job
        # whose shards write faster than a read and a write take still stops them.
        summing = from_stored

        def replace() -> tuple[Document | None, Any]:
            """One try: the document after the write (None: the filter missed) and the ``WRITES``
            the summary was summed at (None when it was not summed from a read)."""
            where = fenced()
            if status_only:
                # The run's fields, the leases and the shards as stored: the runner's, not this copy's.
                fields = {k: v for k, v in doc.items() if k in _STATUS}
            elif unleased and not resumed:
                # The lease fields (the job's and its shards') stay as stored: no live one, and
                # an expired one or a hand-back since the job was read must not be written back.
                keep = {"_id", "shards", "lease_owner", "lease_expires_at", "logs_deleted", *SUMMARY}
                fields = {k: v for k, v in doc.items() if k not in keep}
            elif from_stored:
                # The shards' entries and their sums as stored: this job was read before them.
                fields = {k: v for k, v in doc.items() if k not in {"_id", "shards", *SUMMARY}}
            else:
                # The whole document, as a replacement would write it, but for the ids of the
                # counted writes before it (``write_marks``): the retry of one of those after this
                # write must still find its own. A retry of this one that no longer matches because
                # the first attempt stood (a resume's in_progress) reads the job it wrote.
                return self._docs.write_once(
                    where,
                    replacement(doc, len(job.shards)),
                    "",
                    _CHANGE_STATUS,
                    duplicate=running,
                    mark=STATUS_IDS,
                ), None
            seen = None
            if summing:
                stored = self._docs.read(job.job_id)
                if stored is None:
                    return None, None
                summary, unmoved = summed(stored, fields)
                fields, where, seen = {**fields, **summary}, {**where, **unmoved}, unmoved[WRITES]
            if unleased and not resumed:
                update = unleased_update(fields, hold, self._docs.now())
            else:
                update = {"$set": fields, "$inc": {WRITES: 1}}
            written = self._docs.write_once(
                where, update, "", _CHANGE_STATUS, duplicate=running, mark=STATUS_IDS
            )
            return written, seen

        fence_tries = sum_tries = 0
        while True:
            stored, seen = replace()
            if stored is not None:
                if from_stored and not summing:
                    return self._docs.summarised(stored, always=True)
                return decode_job(stored)
            raw = self._docs.read(job.job_id)
            if raw is None:
                raise JobNotFound(f"no job {job.job_id}")
            current = decode_job(raw)
            if current.status not in expected:
                return None
            if summing and raw.get(WRITES) != seen:
                # A shard wrote between the summary's read and the write: sum its entries again, or,
                # past ``SUM_TRIES``, write the status alone and the sums after it.
                sum_tries += 1
                summing = sum_tries < SUM_TRIES
                continue
            if not unleased:
                return None
            if resumed and counts_of(encode_job(current), len(job.shards)) != counts_of(doc, len(job.shards)):
                return None  # a repair saved its count since the resume read the job
            live = self._docs.with_a_live_lease(job.job_id, job_prefixes(len(job.shards)), expected)
            if live is not None:
                # Live on the store's clock: the lease that expires last is a live one (jobs.last_lease).
                held = last_lease(live)
                assert held is not None  # a live lease has an owner and an expiry
                raise LeaseHeld(f"job {job.job_id} is held by {held[0]} until {held[1].isoformat()}")
            # The status matches and no lease is live any more: handed back or expired since the
            # write looked. Nothing holds the job, so the write is tried again.
            fence_tries += 1
            if fence_tries >= FENCE_TRIES:
                raise LeaseHeld(
                    f"job {job.job_id}: its leases changed under each of {FENCE_TRIES} tries to change "
                    "its status; try again"
                )
