"""The job store's lease writes: take a job's or a shard's lease, save a run's progress under it,
hand it back (``jobs`` says the contract: one atomic write each, expiries on the server's clock).
"""

from __future__ import annotations

import datetime as dt
from typing import Final

from pymongo import ReturnDocument

from crm_audit_transform.errors import JobNotFound, JobNotRunnable, LeaseHeld
from crm_audit_transform.jobs import (
    CANCELLED,
    COMPLETED,
    IN_PROGRESS,
    LEASABLE,
    ROLLED_BACK,
    ROLLING_BACK,
    JobShard,
    MigrationJob,
    rolled_back_under,
    shard_not_leasable,
)

from .bson_values import to_bson_datetime
from .documents import decode_job, encode_job, encode_shard
from .documents_types import Document
from .job_store_base import CURSOR_AND_COUNTS, FENCE_TRIES, RELEASE_ID, WRITES, JobDocuments
from .leases import not_live
from .retry import call_with_retry

_PROGRESS: Final = CURSOR_AND_COUNTS | {"updated_at", "status", "finished_at", "halted_reason"}
"""What a run changes in its job (``save_progress``): cursor, counts, status, end, derived figures."""
_SHARD_PROGRESS: Final = frozenset(
    {"last_audit_id", "rows_at_cursor", "status", "tally", "enrichment", "halted_reason", "finished_at"}
)
"""What a run changes in its shard's entry (``save_shard_progress``); range and basis are the trigger's."""


class JobLeases:
    """The lease writes of ``MongoJobStore``: ``acquire_lease``, ``save_progress`` and their shard
    forms, over the store's ``JobDocuments``."""

    __slots__ = ("_docs",)

    def __init__(self, docs: JobDocuments) -> None:
        self._docs = docs

    def save_progress(self, job: MigrationJob, owner: str, ttl: dt.timedelta | None) -> MigrationJob:
        """Save the run's fields with the lease renewed, where ``owner`` holds it and it is in
        progress — one write; the job as stored after it.

        Only what a run changes is sent (``_PROGRESS``: cursor, counts, status, end, the derived
        figures); the job's identity, scope and halt basis stay as stored: half the fields, and for
        mongoeco, which evaluates every ``$literal`` of the pipeline, half the write's CPU.
        ``LeaseHeld`` (nothing written) when another runner took the lease over, even if it has
        released it since; the stored job when it was cancelled meanwhile; ``JobNotRunnable`` when
        it was ended otherwise under the runner's lease — in both cases nothing written but the
        hand-back of ``owner``'s lease (the runner stops: a rollback need not wait for it to expire);
        ``JobNotFound`` if the job was never created. A retry after a lost acknowledgement or an
        unconfirmed write concern writes the same fields where its first attempt did not stand, and
        reads the job back where it did (``JobDocuments.write_once``): the run's last write, which
        ends the job and hands the lease back, is answered as stored, not ``LeaseHeld``.
        """
        fields = {k: v for k, v in encode_job(job).items() if k in _PROGRESS}
        if ttl is None:
            fields.update(lease_owner=None, lease_expires_at=None)
            update: Document | list[Document] = {"$set": fields}
        elif self._docs.clock is not None:
            fields.update(lease_owner=owner, lease_expires_at=to_bson_datetime(self._docs.clock.now() + ttl))
            update = {"$set": fields}
        else:
            # Every value is a literal (a string starting with "$" must not read as a field path);
            # only the expiry is an expression, on the server's clock.
            literal = {key: {"$literal": value} for key, value in fields.items()}
            literal["lease_owner"] = {"$literal": owner}
            literal["lease_expires_at"] = {"$add": ["$$NOW", _millis(ttl)]}
            update = [{"$set": literal}]

        stored = self._docs.write_once(
            {"_id": job.job_id, "lease_owner": owner, "status": IN_PROGRESS},
            update,
            "",
            "save migration job progress",
            duplicate=f"company {job.company_sso_id} already has another job in progress",
        )
        if stored is not None:
            return decode_job(stored)
        current = self._docs.get(job.job_id)
        if current is None:
            raise JobNotFound(f"no job {job.job_id}")
        if current.lease_owner == owner and current.status != IN_PROGRESS:
            # The runner stops here: its lease is handed back now, so a rollback need not wait for it.
            released = self._release(job.job_id, owner) or current
            if current.status == CANCELLED:
                return released
            # Still ours: the job was ended under this runner.
            raise JobNotRunnable(
                f"job {job.job_id} is {current.status}: it was ended while {owner} ran it (its lease had "
                "expired: a rollback, or another runner that finished it); nothing written"
            )
        if current.status in (ROLLING_BACK, ROLLED_BACK):
            raise rolled_back_under(current, owner)  # the rollback's hold took the expired lease
        raise LeaseHeld.lost(f"job {job.job_id}", owner, current.lease_owner, current.lease_expires_at)

    def _release(self, job_id: str, owner: str) -> MigrationJob | None:
        """Clear ``owner``'s lease on a job no longer in progress: the job as stored, None if not ours.

        Written once (``JobDocuments.write_once``, its id at ``RELEASE_ID``): a retry after a lost
        answer no longer matches the lease it handed back and reads the job as it stored it, where a
        plain retry answered None and its caller returned the job as read before, lease and all."""
        doc = self._docs.write_once(
            {"_id": job_id, "lease_owner": owner, "status": {"$ne": IN_PROGRESS}},
            {"$set": {"lease_owner": None, "lease_expires_at": None}},
            "",
            "release job lease",
            mark=RELEASE_ID,
        )
        return None if doc is None else decode_job(doc)

    def acquire_lease(self, job_id: str, owner: str, ttl: dt.timedelta) -> MigrationJob:
        """Take the lease when it is free, expired or already ``owner``'s and the job's status is
        ``LEASABLE`` — in one atomic update; a job in another status comes back as stored, untouched.
        ``LeaseHeld`` naming the holder while another's lease is live; one handed back or expired
        between the write and the store's read of the job is taken (``FENCE_TRIES``)."""
        for _ in range(FENCE_TRIES):
            doc = self._take_lease(job_id, "", owner, ttl, {}, "acquire job lease")
            if doc is not None:
                return decode_job(doc)
            current = self._docs.get(job_id)
            if current is None:
                raise JobNotFound(f"no job {job_id}")
            if current.status not in LEASABLE:
                return current
            live = self._docs.with_a_live_lease(job_id, [""])
            if live is not None:
                raise LeaseHeld(f"job {job_id} is held by {live.lease_owner} until {live.lease_expires_at}")
            # Handed back or expired since the write looked: nothing holds it, so it is taken again.
        raise LeaseHeld(
            f"job {job_id}: its lease changed under each of {FENCE_TRIES} tries to take it; try again"
        )

    def _take_lease(
        self, job_id: str, at: str, owner: str, ttl: dt.timedelta, where: Document, what: str
    ) -> Document | None:
        """One atomic write that gives the lease at ``at`` (``""``, ``"shards.N."``) to ``owner`` until
        the store's now + ``ttl``, where the job is ``LEASABLE``, ``where`` holds and that lease is
        ``owner``'s or not live; the job as stored after it, None when the filter did not match.
        "Now" is read at each call (a retry's too): ``$$NOW``, or the store's clock."""

        def take(_: int) -> Document | None:
            now = self._docs.now()
            update: Document | list[Document]
            # The lease taken clears the mark of a re-send not taken (``note_not_resent``): a runner has it.
            if now is not None:
                expiry = to_bson_datetime(now + ttl)
                update = {
                    "$set": {
                        f"{at}lease_owner": owner,
                        f"{at}lease_expires_at": expiry,
                        f"{at}not_resent_at": None,
                    }
                }
            else:
                expires = {"$add": ["$$NOW", _millis(ttl)]}
                update = [
                    {
                        "$set": {
                            f"{at}lease_owner": {"$literal": owner},
                            f"{at}lease_expires_at": expires,
                            f"{at}not_resent_at": None,
                        }
                    }
                ]
            query = {
                "_id": job_id,
                "status": {"$in": sorted(LEASABLE)},
                **where,
                "$or": [{f"{at}lease_owner": owner}, not_live(at, now)],
            }
            return self._docs.collection.find_one_and_update(
                query, update, return_document=ReturnDocument.AFTER
            )

        return call_with_retry(take, self._docs.retry, what)

    def note_not_resent(self, company_sso_id: str, shard: int | None = None) -> MigrationJob | None:
        """``not_resent_at`` (the job's, or ``shards.<shard>``'s while that shard is not completed) set
        to the store's now on the account's job in progress: one ``find_one_and_update`` of that
        field alone; the job as stored, None when no such job (or shard) matched."""
        at = "" if shard is None else f"shards.{shard}."
        query: Document = {"company_sso_id": company_sso_id, "status": IN_PROGRESS}
        if shard is not None:
            query.update({f"{at}shard": shard, f"{at}status": {"$ne": COMPLETED}})

        def note(_: int) -> Document | None:
            now = self._docs.now()
            update: Document | list[Document] = (
                [{"$set": {f"{at}not_resent_at": "$$NOW"}}]
                if now is None
                else {"$set": {f"{at}not_resent_at": to_bson_datetime(now)}}
            )
            return self._docs.collection.find_one_and_update(
                query, update, return_document=ReturnDocument.AFTER
            )

        doc = call_with_retry(note, self._docs.retry, "note a task not re-sent")
        return None if doc is None else decode_job(doc)

    def acquire_shard_lease(self, job_id: str, shard: int, owner: str, ttl: dt.timedelta) -> MigrationJob:
        """``acquire_lease`` on ``shards.<shard>``'s lease: one atomic update of that entry only, with
        the job's status ``LEASABLE`` in the same filter.

        A completed shard's lease is never taken (no runner has anything left to write there): the
        job as stored comes back with that lease as it is. A job cancelled, rolling back or rolled
        back is ``JobNotRunnable``, nothing written.
        """
        at = f"shards.{shard}"
        where = {f"{at}.shard": shard, f"{at}.status": {"$ne": COMPLETED}}
        for _ in range(FENCE_TRIES):
            doc = self._take_lease(job_id, f"{at}.", owner, ttl, where, "acquire shard lease")
            if doc is not None:
                return decode_job(doc)
            current = self._docs.get(job_id)
            if current is None or not 0 <= shard < len(current.shards):
                raise JobNotFound(f"no job {job_id} with a shard {shard}")
            if current.status not in LEASABLE:
                raise shard_not_leasable(current, shard)
            if current.shards[shard].status == COMPLETED:
                return current
            live = self._docs.with_a_live_lease(job_id, [f"{at}."])
            if live is not None:
                held = live.shards[shard]
                raise LeaseHeld(
                    f"shard {shard} of job {job_id} is held by {held.lease_owner} "
                    f"until {held.lease_expires_at}"
                )
            # Handed back or expired since the write looked: nothing holds it, so it is taken again.
        raise LeaseHeld(
            f"shard {shard} of job {job_id}: its lease changed under each of {FENCE_TRIES} tries to "
            "take it; try again"
        )

    def save_shard_progress(
        self, job_id: str, shard: JobShard, owner: str, ttl: dt.timedelta | None
    ) -> MigrationJob:
        """``save_progress`` of one shard: ``$set`` of ``shards.<n>``'s run fields (``_SHARD_PROGRESS``:
        its range and halt basis stay as stored), guarded on its lease."""
        at = f"shards.{shard.shard}"
        fields = {f"{at}.{k}": v for k, v in encode_shard(shard).items() if k in _SHARD_PROGRESS}
        count = {"$inc": {WRITES: 1}}
        if ttl is None:
            fields.update({f"{at}.lease_owner": None, f"{at}.lease_expires_at": None})
            update: Document | list[Document] = {"$set": fields, **count}
        elif self._docs.clock is not None:
            fields.update(
                {
                    f"{at}.lease_owner": owner,
                    f"{at}.lease_expires_at": to_bson_datetime(self._docs.clock.now() + ttl),
                }
            )
            update = {"$set": fields, **count}
        else:
            literal: Document = {key: {"$literal": value} for key, value in fields.items()}
            literal[f"{at}.lease_owner"] = {"$literal": owner}
            literal[f"{at}.lease_expires_at"] = {"$add": ["$$NOW", _millis(ttl)]}
            literal[WRITES] = {"$add": [{"$ifNull": [f"${WRITES}", 0]}, 1]}
            update = [{"$set": literal}]

        query = {"_id": job_id, f"{at}.lease_owner": owner, "status": IN_PROGRESS}
        stored = self._docs.write_once(query, update, f"{at}.", "save shard progress")
        if stored is not None:
            # A shard that stops (completed, halted, handed back) may be the last write for a while.
            return self._docs.summarised(stored, always=ttl is None or shard.status != IN_PROGRESS)
        current = self._docs.get(job_id)
        if current is None or not 0 <= shard.shard < len(current.shards):
            raise JobNotFound(f"no job {job_id} with a shard {shard.shard}")
        held = current.shards[shard.shard]
        if current.status != IN_PROGRESS and held.lease_owner == owner:
            # Cancelled, halted or completed meanwhile: nothing written, the runner stops, and its
            # lease is handed back now, else it blocks a rollback or a repair until it expires.
            return self._release_shard(job_id, shard.shard, owner) or current
        raise LeaseHeld.lost(
            f"shard {shard.shard} of job {job_id}", owner, held.lease_owner, held.lease_expires_at
        )

    def grow_source_mark(
        self, job_id: str, owner: str, mark: str, *, previous: str, shard: int | None = None
    ) -> MigrationJob:
        """``$set`` of ``source_mark`` where it is still ``previous``, the job in progress and the
        lease (the job's, or ``shards.<shard>``'s) ``owner``'s: one atomic write. Else nothing
        written and the job as stored (another mark, another status), ``LeaseHeld`` (or a
        rollback's ``JobNotRunnable``) when the lease is another's. A retry after a lost
        acknowledgement no longer matches ``previous`` and reads the job back, the mark written."""
        at = "" if shard is None else f"shards.{shard}."

        def write(_: int) -> Document | None:
            return self._docs.collection.find_one_and_update(
                {"_id": job_id, f"{at}lease_owner": owner, "status": IN_PROGRESS, "source_mark": previous},
                {"$set": {"source_mark": mark}},
                return_document=ReturnDocument.AFTER,
            )

        stored = call_with_retry(write, self._docs.retry, "grow the job's source mark")
        if stored is not None:
            return decode_job(stored)
        current = self._docs.get(job_id)
        if current is None or (shard is not None and not 0 <= shard < len(current.shards)):
            raise JobNotFound(f"no job {job_id}" + ("" if shard is None else f" with a shard {shard}"))
        if shard is None and current.lease_owner != owner:
            if current.status in (ROLLING_BACK, ROLLED_BACK):
                raise rolled_back_under(current, owner)  # the rollback's hold took the expired lease
            raise LeaseHeld.lost(f"job {job_id}", owner, current.lease_owner, current.lease_expires_at)
        if shard is not None and current.shards[shard].lease_owner != owner:
            held = current.shards[shard]
            raise LeaseHeld.lost(
                f"shard {shard} of job {job_id}", owner, held.lease_owner, held.lease_expires_at
            )
        return current

    def _release_shard(self, job_id: str, shard: int, owner: str) -> MigrationJob | None:
        """Clear ``owner``'s lease on ``shards.<shard>`` alone; the job as stored, None if not ``owner``'s.
        Written once, as ``_release`` (its id at ``shards.<shard>.write_id``: only that shard's
        runner writes there)."""
        at = f"shards.{shard}"
        doc = self._docs.write_once(
            {"_id": job_id, f"{at}.lease_owner": owner},
            {"$set": {f"{at}.lease_owner": None, f"{at}.lease_expires_at": None}},
            f"{at}.",
            "release shard lease",
        )
        return None if doc is None else decode_job(doc)


def _millis(ttl: dt.timedelta) -> int:
    return round(ttl.total_seconds() * 1000)
