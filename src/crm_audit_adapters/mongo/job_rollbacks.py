"""The job store's rollback writes: find a rollback under way, give its hold back, renew it with a
chunk counted and the next recorded, adopt another's chunk in flight, finish it
(``usecases.rollback`` says the protocol; ``hold_rollback``, a status change, stays with
``MongoJobStore.transition``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Final

from pymongo import ReturnDocument

from crm_audit_transform.errors import JobNotFound, LeaseHeld
from crm_audit_transform.jobs import (
    ROLLED_BACK,
    ROLLING_BACK,
    MigrationJob,
    RollbackInFlight,
    WholeAccountDelete,
)

from .bson_values import to_bson_datetime
from .documents import ROLLBACK_SENDING, ROLLBACKS_COUNTED, decode_job
from .documents_types import Document
from .job_store_base import STATUS_IDS, WRITES, JobDocuments
from .retry import call_with_retry

_COUNTED: Final = ROLLBACKS_COUNTED
"""The tokens of the rollbacks whose deleted logs ``logs_deleted`` holds (``finish_rollback``)."""
_CHUNK: Final = "rollback_chunk"
"""``owner#n``: the last chunk whose deleted logs ``renew_rollback`` added to ``logs_deleted``."""
_SENDING: Final = ROLLBACK_SENDING
"""``{owner, ids}``: the chunk in flight (``renew_rollback``'s ``sending``: at most ``chunk`` ids,
about 17 KB for 1000 ObjectIds), ``adopt_rollback_chunk``'s to take over; ``{owner, ids: [], whole:
n}`` for a ``WholeAccountDelete`` of ``n`` logs counted before it."""


class JobRollbacks:
    """The rollback writes of ``MongoJobStore``: ``rollback_under_way``, ``give_back_rollback``,
    ``renew_rollback`` and ``finish_rollback``, over the store's ``JobDocuments``."""

    __slots__ = ("_docs",)

    def __init__(self, docs: JobDocuments) -> None:
        self._docs = docs

    def rollback_under_way(self, company_sso_id: str) -> MigrationJob | None:
        doc = call_with_retry(
            lambda _: self._docs.collection.find_one(
                {"company_sso_id": company_sso_id, "status": ROLLING_BACK}
            ),
            self._docs.retry,
            "read rolling-back migration job",
        )
        return decode_job(doc) if doc is not None else None

    def give_back_rollback(self, job: MigrationJob, *, owner: str) -> MigrationJob | None:
        """The hold undone: ``job``'s status and ``updated_at`` and the lease cleared, where the job
        is ``rolling_back`` and ``owner`` holds its lease (expired or not); nothing else written.
        None when it is not (nothing written)."""
        doc = self._docs.write_once(
            {"_id": job.job_id, "status": ROLLING_BACK, "lease_owner": owner},
            {
                "$set": {
                    "status": job.status,
                    "updated_at": to_bson_datetime(job.updated_at),
                    "lease_owner": None,
                    "lease_expires_at": None,
                },
                "$inc": {WRITES: 1},
            },
            "",
            "give back a rollback's hold",
            mark=STATUS_IDS,
        )
        return None if doc is None else self._docs.summarised(doc, always=True)

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
        """The hold renewed and the chunk before counted, where the job is ``rolling_back`` and
        ``owner`` holds its lease: one ``find_one_and_update`` that ``$add``s ``deleted`` to
        ``logs_deleted``, sets ``rollback_chunk`` to ``owner#chunk`` where it is another and
        ``rollback_sending`` to ``{owner, ids: sending}`` (``{owner, ids: [], whole: before}`` for a
        ``WholeAccountDelete``) unless ``sending`` is None; a retry that
        finds its own marker (a lost acknowledgement) renews the lease (and sets ``rollback_sending``)
        alone. The expiry on ``$$NOW`` (an update pipeline), or on the store's clock. ``LeaseHeld``
        when neither matched."""
        marker = f"{owner}#{chunk}"
        held: Document = {"_id": job_id, "status": ROLLING_BACK, "lease_owner": owner}
        in_flight: Document | None = None
        if isinstance(sending, WholeAccountDelete):
            in_flight = {"owner": owner, "ids": [], "whole": sending.before}
        elif sending is not None:
            in_flight = {"owner": owner, "ids": list(sending)}

        def write(counted: bool) -> Document | list[Document]:
            now = self._docs.now()
            if now is not None:
                fields: Document = {"lease_expires_at": to_bson_datetime(now + ttl), _CHUNK: marker}
                if in_flight is not None:
                    fields[_SENDING] = in_flight
                return {"$set": fields} if counted else {"$set": fields, "$inc": {"logs_deleted": deleted}}
            update: Document = {
                "lease_expires_at": {"$add": ["$$NOW", round(ttl.total_seconds() * 1000)]},
                _CHUNK: {"$literal": marker},
            }
            if in_flight is not None:
                update[_SENDING] = {"$literal": in_flight}
            if not counted:
                update["logs_deleted"] = {"$add": [{"$ifNull": ["$logs_deleted", 0]}, deleted]}
            return [{"$set": update}]

        def count(_: int) -> Document | None:
            if self._docs.now() is not None:  # $inc refuses a null: the same number, as 0
                self._docs.collection.update_one(
                    {**held, "logs_deleted": None}, {"$set": {"logs_deleted": 0}}
                )
            return self._docs.collection.find_one_and_update(
                {**held, _CHUNK: {"$ne": marker}}, write(False), return_document=ReturnDocument.AFTER
            )

        def renew(_: int) -> Document | None:
            return self._docs.collection.find_one_and_update(
                {**held, _CHUNK: marker}, write(True), return_document=ReturnDocument.AFTER
            )

        stored = call_with_retry(count, self._docs.retry, "renew a rollback's hold")
        if stored is None:
            stored = call_with_retry(renew, self._docs.retry, "renew a rollback's hold")
        if stored is not None:
            return decode_job(stored)
        current = self._docs.get(job_id)
        if current is None:
            raise JobNotFound(f"no job {job_id}")
        raise LeaseHeld.lost(f"job {job_id}", owner, current.lease_owner, current.lease_expires_at)

    def adopt_rollback_chunk(self, job_id: str, *, owner: str) -> RollbackInFlight:
        """Another rollback's ``rollback_sending`` made ``owner``'s (``ports.JobStore``): one
        ``find_one_and_update`` where the job is ``rolling_back`` under ``owner``'s lease, the chunk
        in flight is still the other's (the owner read just before) with an id or ``whole``, and that owner is
        not in ``rollbacks_counted``; it sets the chunk's owner to ``owner`` and pushes the other's
        token to ``rollbacks_counted``. A write that did not match is read again: the chunk found
        ``owner``'s was adopted by a try whose answer was lost."""
        doc = call_with_retry(
            lambda _: self._docs.collection.find_one({"_id": job_id}, {_SENDING: 1}),
            self._docs.retry,
            "read a rollback's chunk in flight",
        )
        if doc is None:
            raise JobNotFound(f"no job {job_id}")
        sending = doc.get(_SENDING)
        previous = sending.get("owner") if isinstance(sending, Mapping) else None
        if not isinstance(previous, str):
            return []
        held: Document = {"_id": job_id, "status": ROLLING_BACK, "lease_owner": owner}
        adopted: Document | None = None
        if previous != owner:
            adopted = call_with_retry(
                lambda _: self._docs.collection.find_one_and_update(
                    {
                        **held,
                        f"{_SENDING}.owner": previous,
                        "$or": [
                            {f"{_SENDING}.ids.0": {"$exists": True}},
                            {f"{_SENDING}.whole": {"$exists": True}},
                        ],
                        _COUNTED: {"$ne": previous},
                    },
                    {"$set": {f"{_SENDING}.owner": owner}, "$push": {_COUNTED: previous}},
                    return_document=ReturnDocument.AFTER,
                ),
                self._docs.retry,
                "adopt a rollback's chunk in flight",
            )
        if adopted is None:
            adopted = call_with_retry(
                lambda _: self._docs.collection.find_one({**held, f"{_SENDING}.owner": owner}, {_SENDING: 1}),
                self._docs.retry,
                "read a rollback's chunk in flight",
            )
        if adopted is None:
            return []
        whole = adopted[_SENDING].get("whole")
        return WholeAccountDelete(int(whole)) if whole is not None else list(adopted[_SENDING]["ids"])

    def finish_rollback(self, job: MigrationJob, deleted: int, *, token: str) -> MigrationJob | None:
        """``deleted`` added to ``logs_deleted`` (``$inc``) where the job is ``rolling_back`` or
        ``rolled_back`` and ``token`` is not yet in ``rollbacks_counted``, which the same write
        pushes it to: a retry after a lost acknowledgement adds nothing twice. In that same write,
        where the job's lease is ``token``'s (expired or not), the job becomes ``rolled_back`` and
        the lease is cleared; where it is not (another rollback took the hold over once this one's
        had expired, and may have let go since), the count alone is added: the status is the
        holder's to end, or the next rollback's.

        ``$inc`` refuses a null, so a ``logs_deleted`` still None is first set to 0 (no count is
        lost by that: it is the same number). None when the status is neither (nothing written).
        A sharded job's summary of its shards (``JobDocuments.summarised``) is set by the answer
        and by a retry's read-back alike.
        """
        counted = {"_id": job.job_id, "status": {"$in": [ROLLING_BACK, ROLLED_BACK]}}
        count: Document = {"$inc": {"logs_deleted": deleted, WRITES: 1}, "$push": {_COUNTED: token}}
        ended = {
            "status": ROLLED_BACK,
            "updated_at": to_bson_datetime(job.updated_at),
            "lease_owner": None,
            "lease_expires_at": None,
        }

        def zero(_: int) -> None:
            self._docs.collection.update_one({**counted, "logs_deleted": None}, {"$set": {"logs_deleted": 0}})

        def end(_: int) -> Document | None:
            return self._docs.collection.find_one_and_update(
                {**counted, _COUNTED: {"$ne": token}, "lease_owner": token},
                {**count, "$set": ended},
                return_document=ReturnDocument.AFTER,
            )

        def add(_: int) -> Document | None:
            return self._docs.collection.find_one_and_update(
                {**counted, _COUNTED: {"$ne": token}}, count, return_document=ReturnDocument.AFTER
            )

        call_with_retry(zero, self._docs.retry, "count rolled-back logs")
        stored = call_with_retry(end, self._docs.retry, "finish rollback")
        if stored is None:
            stored = call_with_retry(add, self._docs.retry, "count a rollback taken over")
        if stored is not None:
            return self._docs.summarised(stored, always=True)
        current = call_with_retry(
            lambda _: self._docs.collection.find_one({**counted, _COUNTED: token}),
            self._docs.retry,
            "read rollback",
        )
        if current is None:
            return None  # the status is neither: nothing written
        # Counted by an earlier try whose answer was lost: that try counted ``shard_writes`` up but
        # never set the summary, so a sharded job's stored figures would stay the ones from before.
        return self._docs.summarised(current, always=True)
