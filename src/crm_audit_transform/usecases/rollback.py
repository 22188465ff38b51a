"""Rollback: delete this account's migrated logs (``source_tag = crm_migration``) and nothing else.

Native logs carry no ``external_id`` and another source tag, so they are never touched. Running
it twice deletes nothing the second time. It is refused while a job is in progress, because the
runner would write behind it; afterwards the job is marked ``rolled_back`` so it can be triggered
again.

**Fenced against a new job.** Migrated external ids are deterministic, so a new job of the
account writes the very ids a rollback deletes: a rollback racing a new job would delete the new
job's logs, and the new job would count them as migrated. So the rollback *holds* the account:

1. it moves the latest job to ``rolling_back`` (a compare-and-set on its status);
2. it reads the latest job again: if a newer job exists, it gives the status back and refuses
   (``JobAlreadyRunning``) — nothing deleted;
3. it deletes, then marks the job ``rolled_back`` and adds the number of logs it deleted to
   ``logs_deleted`` in that same write (``JobStore.finish_rollback``): added up over repeated
   rollbacks of the same job, so a second one that finds nothing keeps the first one's count.

**Two rollbacks alive at once.** A rollback run again while the first is still deleting (an
operator's retry, a ``/migrate`` batch settling, ``trigger --fresh``) holds the job too — a job
left ``rolling_back`` is how a rollback that died is finished, and the store cannot tell a dead one
from a slow one. Both delete (each log once: a delete removes it for the other) and each adds its
own count as it finishes, to the count as stored then, never a total read before the other's
write: ``logs_deleted`` ends as every log the two deleted, whichever finishes first. The job is
``rolled_back`` from the first finish on.

While a job is ``rolling_back``, ``trigger`` refuses and ``run_job`` refuses
(``JobStore.rollback_under_way``). A runner that passed that check did so before step 1, so its job
existed before step 2 and the rollback refuses. A rollback that died mid-way leaves the account
held; running ``rollback`` again finishes it.

**Fenced against a runner still writing.** A cancel only changes the status: a live runner finds
it at its next progress write, *after* inserting the batch in flight, and hands its lease back in
that write. ``verify --repair`` writes under the leases of a halted or completed job. So the
rollback is refused (``LeaseHeld``) while the job or one of its shards holds a live lease: deleting
then would leave that batch's logs behind a ``rolled_back`` job. "Live" is decided on the **store's
clock** (the database's ``$$NOW``), never this host's, and inside step 1's compare-and-set itself
(``JobStore.transition(..., unleased=True)``): a repair that takes the lease just before the hold
makes the hold fail; one that comes just after finds the job ``rolling_back``, which is never leased
(``jobs.LEASABLE``) and which a run refuses. ``trigger --resume`` is fenced the same way in its own
write: it never clears a live lease, so a cancelled runner stays visible to this fence.

**What the fence does not cover.** A runner that stalls past its lease *before* a batch (a page
whose lookups hang, a pause) renews it before inserting (``run.py``: when half the lease has passed)
and so finds the job cancelled or rolled back first: it inserts nothing. One whose lease expires
*between* that renewal and its insert (a process frozen or cut off from the job store in that
instant) is not fenced: its batch may land after the delete. Its next progress write is refused
(``JobNotRunnable``: the job is no longer in progress), so it writes at most that one batch; those
logs then sit behind a ``rolled_back`` job, which ``verify`` reports as not clean (docs/verify.md)
and a second ``rollback`` deletes. Refusing that batch itself would need the log insert and the
job's lease generation in one atomic write across two collections (a multi-document transaction,
which the CDP's deployment does not promise), so it is not attempted.
"""

from __future__ import annotations

import uuid

import attrs
from attrs import frozen

from ..errors import JobAlreadyRunning, LeaseHeld
from ..jobs import IN_PROGRESS, ROLLED_BACK, ROLLING_BACK
from ..ports import Clock, JobStore, MigratedLogs


@frozen
class RollbackPorts:
    """What rollback reads and writes: the job, the account's migrated logs, the time."""

    jobs: JobStore
    logs: MigratedLogs
    clock: Clock


@frozen
class RollbackResult:
    """What a rollback did: the account, how many of its migrated logs it deleted, and its job if any."""

    company_sso_id: str
    deleted: int
    job_id: str | None = None


def rollback(company_sso_id: str, ports: RollbackPorts) -> RollbackResult:
    """Delete the account's migrated logs under a hold; ``JobAlreadyRunning`` while a job runs,
    ``LeaseHeld`` while a runner's (or a repair's) lease on the job is live."""
    jobs, logs, clock = ports.jobs, ports.logs, ports.clock
    job = jobs.latest(company_sso_id)
    if job is None:
        return RollbackResult(company_sso_id, logs.delete_migrated(company_sso_id))
    if job.status == IN_PROGRESS:
        raise JobAlreadyRunning(
            f"company {company_sso_id} has job {job.job_id} in progress: cancel it before rolling back"
        )
    try:
        # The hold: a compare-and-set on the status *and* on "no live lease, on the store's clock".
        held = jobs.transition(
            attrs.evolve(job, status=ROLLING_BACK, updated_at=clock.now()), {job.status}, unleased=True
        )
    except LeaseHeld as exc:
        raise LeaseHeld(
            f"company {company_sso_id}'s job {job.job_id} is {job.status}, but its lease is live ({exc}): "
            "a batch its holder is writing would land after the delete; roll back once that lease is "
            "handed back or has expired (status shows it)"
        ) from exc
    if held is None:
        raise JobAlreadyRunning(f"company {company_sso_id}'s job {job.job_id} changed meanwhile: try again")
    latest = jobs.latest(company_sso_id)
    if latest is not None and latest.job_id != job.job_id:
        jobs.transition(attrs.evolve(held, status=job.status), {ROLLING_BACK}, status_only=True)
        raise JobAlreadyRunning(
            f"company {company_sso_id} has a newer job {latest.job_id}: its logs are not rolled back"
        )
    deleted = logs.delete_migrated(company_sso_id)
    # Added to the count as stored at this write, never to the one read before the hold: a rollback
    # alive beside this one may have added its own since (module docstring).
    jobs.finish_rollback(
        attrs.evolve(held, status=ROLLED_BACK, updated_at=clock.now()), deleted, token=uuid.uuid4().hex
    )
    return RollbackResult(company_sso_id, deleted, job.job_id)
