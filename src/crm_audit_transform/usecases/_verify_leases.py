"""Repair's leases: every shard's and the job's, taken together and handed back together.

``verify --repair`` saves the whole job document (``usecases.verify``), which is safe only while
no shard runner may write its entry: hence every lease at once.
"""

from __future__ import annotations

import contextlib
import datetime as dt

import attrs

from ..errors import CrmAuditError, JobNotRunnable, LeaseHeld
from ..jobs import COMPLETED, LEASABLE, JobShard, MigrationJob
from ..ports import JobStore


def hold_every_lease(jobs: JobStore, job: MigrationJob, owner: str, ttl: dt.timedelta) -> MigrationJob:
    """Take (or renew) every shard's lease, then the job's: the job as stored, all of it ``owner``'s.

    Repair saves the whole job document; a shard runner writes its entry under its own lease, so
    only with every shard's lease held may the document be saved whole. A completed shard's
    lease is never taken (``JobStore.acquire_shard_lease``): no runner writes that entry again.
    ``LeaseHeld`` (with the leases taken here handed back) while another runner holds one: a
    running shard is never overwritten, the repair waits until the shards are done.
    ``JobNotRunnable`` (a ``JobNotFound``: the job exists) when the job was cancelled or rolled back
    meanwhile (its lease is not ``LEASABLE``), the leases taken here handed back.
    """
    job_id = job.job_id
    taken: list[JobShard] = []
    try:
        for shard in job.shards:  # a job's shards are fixed when it is triggered
            held = jobs.acquire_shard_lease(job_id, shard.shard, owner, ttl)
            if held.shards[shard.shard].lease_owner == owner:
                taken.append(held.shards[shard.shard])
        held = jobs.acquire_lease(job_id, owner, ttl)
    except LeaseHeld as exc:
        _hand_back(jobs, job_id, taken, owner)
        raise LeaseHeld(
            f"verify --repair writes job {job_id} whole, so it waits while a runner holds it: {exc}"
        ) from exc
    except JobNotRunnable:
        # Cancelled or rolled back before a shard's lease was taken: the ones taken go back.
        _hand_back(jobs, job_id, taken, owner)
        raise
    if held.status not in LEASABLE:
        # Cancelled or rolled back since it was read: its account is never written again.
        _hand_back(jobs, job_id, taken, owner)
        raise JobNotRunnable(
            f"job {job_id} is {held.status} (cancelled or rolled back since repair read it): repair stops "
            "here and writes nothing more"
        )
    return held


def _hand_back(jobs: JobStore, job_id: str, taken: list[JobShard], owner: str) -> None:
    for shard in taken:
        with contextlib.suppress(CrmAuditError):
            jobs.save_shard_progress(job_id, shard, owner, None)


def release_every_lease(jobs: JobStore, stored: MigrationJob, owner: str) -> None:
    """Hand back ``owner``'s leases on ``stored``: the whole document only when every lease is ours,
    and only while it is still in ``stored``'s status (``save_job_as``)."""
    if stored.lease_owner == owner and all(_ours(s, owner) for s in stored.shards):
        save_job_as(
            jobs,
            attrs.evolve(stored, lease_owner=None, lease_expires_at=None, shards=unleased(stored.shards)),
            stored.status,
            owner,
        )
        return
    for shard in stored.shards:
        if shard.lease_owner == owner:
            jobs.save_shard_progress(stored.job_id, shard, owner, None)


def save_job_as(jobs: JobStore, job: MigrationJob, status: str, owner: str) -> None:
    """Save repair's whole ``job`` document over the stored one while that is still in ``status``
    and still under ``owner``'s leases: one compare-and-set (``JobStore.transition`` with
    ``leased_to``), never a plain save.

    An ended job (halted, completed) that a rollback moved to ``rolling_back`` or ``rolled_back``
    meanwhile — once repair's lease had expired — is never undone by repair's copy, which would
    leave the account held or its logs uncounted; an in-progress job that was cancelled meanwhile
    (or whose lease another runner took over once it had expired) is not turned back either. In
    both cases ``JobNotRunnable`` (the job exists; a ``JobNotFound`` all the same), nothing
    written. From ``in_progress`` the whole document is written, shards included: repair holds
    every shard's lease, and its count goes into a shard's entry.
    """
    if jobs.transition(job, {status}, leased_to=owner) is None:
        raise JobNotRunnable(
            f"job {job.job_id} is no longer {status} under {owner}'s lease (cancelled, rolled back or taken "
            "over meanwhile): the missing logs are written, repair's counts are not; see status"
        )


def _ours(shard: JobShard, owner: str) -> bool:
    """Whether repair may write ``shard``'s entry: its lease is ``owner``'s, or it is completed."""
    return shard.lease_owner == owner or shard.status == COMPLETED


def unleased(shards: tuple[JobShard, ...]) -> tuple[JobShard, ...]:
    """``shards`` with no lease on any of them."""
    return tuple(attrs.evolve(s, lease_owner=None, lease_expires_at=None) for s in shards)
