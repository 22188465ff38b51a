"""Rollback: delete this account's migrated logs (``source_tag = crm_migration``) and nothing else.

Native logs carry no ``external_id`` and another source tag, so they are never touched. Running
it twice deletes nothing the second time. It is refused while a job is in progress, because the
runner would write behind it; afterwards the job is marked ``rolled_back`` so it can be triggered
again.

**Fenced against a new job.** Migrated external ids are deterministic, so a new job of the
account writes the very ids a rollback deletes: a rollback racing a new job would delete the new
job's logs, and the new job would count them as migrated. So the rollback *holds* the account:

1. it moves the latest job to ``rolling_back`` and takes the job's lease (owner
   ``rollback:<token>``, for ``RollbackPorts.lease``, on the store's clock) in one compare-and-set
   on its status (``JobStore.hold_rollback``);
2. it reads the latest job again: if a newer job exists, it gives the status back and clears its
   lease (``JobStore.give_back_rollback``) and refuses (``JobAlreadyRunning``) — nothing deleted;
3. it deletes in chunks of at most ``RollbackPorts.chunk`` logs (``ports.MigratedLogsInChunks``:
   by ``_id``, the account's migrated logs only), renewing its hold before each chunk's delete is
   sent — and again when half the lease has passed by then — with the chunk before added to
   ``logs_deleted`` and this chunk recorded as its *chunk in flight* in that same write
   (``JobStore.renew_rollback``, once per chunk even when retried). A store with chunks never
   gets a delete of the whole account, which a process paused past its hold could send after a
   newer job's logs were written: a chunk that deleted none of it is followed by the next, and
   one given again stops the rollback (``StoreUnavailable``, ``_rollback_delete``). A store
   without chunks (the JSONL sink, rewritten in one atomic step under its file lock) is deleted
   in one ``delete_migrated`` after one renewal, which records that whole-account delete in
   flight with the account's count before it (``jobs.WholeAccountDelete``). Before its first
   delete it adopts the chunk (or whole-account delete) in flight another rollback of the job left
   (``JobStore.adopt_rollback_chunk``), sends its delete again (a store with chunks: deletes what
   is left in chunks) and counts all of it;
4. it marks the job ``rolled_back``, clears its lease and adds the last chunk's count to
   ``logs_deleted`` in that same write (``JobStore.finish_rollback``): added up over repeated
   rollbacks of the same job, so a second one that finds nothing keeps the first one's count. The
   status changes only while the lease is still this rollback's own; one whose hold was taken over
   adds its count alone and ends ``RollbackHoldLost`` (below) — unless the rollback that took it
   over has already ended the job: the account is clean and the count added once, so it ends as a
   success.

**One rollback of a job at a time.** A rollback run again while the first still deletes (an
operator's retry, ``trigger --fresh``) meets the first one's live lease in step 1 and is refused
``LeaseHeld`` (exit 4), naming the holder and its expiry; nothing is deleted by it. Were both to
run, the first to finish would make the job ``rolled_back`` while the other still deleted: a new job
of the account could then start and lose its fresh logs to that delete, without a word. A refusal
is chosen over letting both run until the last one ends: a second delete of the same logs beside
the first gains nothing, and the operator is told who holds the account and until when, as for a
runner's lease. A rollback that died (``kill -9``) leaves the account held until its lease expires
(``status`` shows it); ``rollback`` run again after that takes the hold over and finishes it. One
ended by an error it survives (Ctrl-C, a store gone after its retries) counts the chunk it deleted
and clears its hold, the job left ``rolling_back`` (``let_go``): run again, it goes on at once.
Stopped by Ctrl-C in the middle of a chunk's delete, it sends that delete again and counts the chunk
too, so ``logs_deleted`` holds every log it deleted once it has stopped. A
rollback whose lease expired while it was still deleting (a frozen process) and was taken over finds
it at its next renewal and stops, ``LeaseHeld``, before sending another delete; its last chunk is
counted once: by the one that took over, which adopted it (``_rollback_delete``), or else by its own
``finish_rollback``, which leaves the job to the one that took it. So once that one ends the job
``rolled_back`` and a new job writes fresh logs, none of them can go to the first one's delete
(one ``delete_many`` of the whole account, sent once, would run on beside the other).

**Only the hold's own rollback ends the job.** The one that took over may itself let go after an
error (``let_go``: the lease cleared, the job ``rolling_back``, logs left). A stale rollback
finishing then finds a lease that is nobody's; were ``finish_rollback`` to take that as its own, the
job would become ``rolled_back`` over the logs still there. So ``finish_rollback`` ends the job only
under the finishing rollback's own ``rollback:<token>``; a rollback that lost its hold stops with
``RollbackHoldLost`` (a ``LeaseHeld``, exit 4, HTTP 409) saying who ends the job: the rollback
holding it now, or, when nobody holds it, ``rollback`` run again. A job left ``rolling_back`` with
no lease (one that let go; one written before rollbacks held a lease) is ended that way too: the
next rollback takes the hold (step 1) before it finishes.

**Deleting under the hold** (``_rollback_delete``): chunk by chunk, each recorded in flight before
its delete is sent, so a rollback that takes the hold over after a ``kill -9`` counts it exactly;
a store without chunks in one whole-account delete, recorded the same way; and what one ended by
an error it survives leaves for the next (``let_go``).

While a job is ``rolling_back``, ``trigger`` refuses and ``run_job`` refuses
(``JobStore.rollback_under_way``). A runner that passed that check did so before step 1, so its job
existed before step 2 and the rollback refuses.

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
whose lookups hang, a pause) renews it before inserting (``run.py``: when half the lease has passed
since its last renewal was sent) and so finds the job cancelled or rolled back first: it inserts
nothing. A batch therefore goes out with at least half the lease left; it lands after the lease
expired only when its insert is *applied* more than that later (the process frozen between the
check and the send, the request held up in the network or queued by the server, a retried attempt
applied late). If a rollback deleted the account's logs meanwhile, that batch lands after the
delete. Its next progress write is refused (``JobNotRunnable``: the job is no longer in progress),
so it writes at most that one batch; those logs then sit behind a ``rolled_back`` job, which
``verify`` reports as the mismatch ``migrated_logs`` (not clean, docs/verify.md) and a second
``rollback`` deletes. Refusing that batch itself would need the log insert and the job's lease
generation in one atomic write across two collections (a multi-document transaction, which the
CDP's deployment does not promise). Undoing it after the refused write is not exactly-once: the
same refusal comes when a resumed runner took over and counted that batch's logs as migrated, and
the undo can be late in the same way. So neither is attempted (docs/runner.md, "Not fenced: one
batch, in one window").
"""

from __future__ import annotations

import datetime as dt
import uuid

import attrs
from attrs import field, frozen

from .._arguments import port_of
from ..errors import JobAlreadyRunning, LeaseHeld
from ..jobs import IN_PROGRESS, ROLLED_BACK, ROLLING_BACK
from ..ports import Clock, JobStore, MigratedLogs
from ..ports.guards import CLOCK_METHODS
from ._rollback_delete import Progress, delete_held, hold_lost, let_go
from .settings import RunSettings


@frozen
class RollbackPorts:
    """What rollback reads and writes: the job, the account's migrated logs, the time; and how long
    its hold on the job lives unless it finishes first (``lease``: the run's ``lease_seconds``)."""

    jobs: JobStore
    logs: MigratedLogs
    clock: Clock = field(validator=port_of("Clock", CLOCK_METHODS))
    lease: dt.timedelta = RunSettings().lease_ttl
    chunk: int = 1000
    """How many logs one delete removes at most, when the store deletes in chunks."""


@frozen
class RollbackResult:
    """What a rollback did: the account, how many of its migrated logs it deleted, and its job if any."""

    company_sso_id: str
    deleted: int
    job_id: str | None = None


def rollback(company_sso_id: str, ports: RollbackPorts) -> RollbackResult:
    """Delete the account's migrated logs under a hold; ``JobAlreadyRunning`` while a job runs,
    ``LeaseHeld`` while a runner's, a repair's or another rollback's lease on the job is live."""
    jobs, logs, clock = ports.jobs, ports.logs, ports.clock
    job = jobs.latest(company_sso_id)
    if job is None:
        return RollbackResult(company_sso_id, logs.delete_migrated(company_sso_id))
    if job.status == IN_PROGRESS:
        raise JobAlreadyRunning(
            f"company {company_sso_id} has job {job.job_id} in progress: cancel it before rolling back"
        )
    owner = f"rollback:{uuid.uuid4().hex}"
    try:
        # The hold: a compare-and-set on the status *and* on "no live lease, on the store's clock",
        # taking the job's lease for this rollback in the same write.
        held = jobs.hold_rollback(
            attrs.evolve(job, status=ROLLING_BACK, updated_at=clock.now()),
            {job.status},
            owner=owner,
            ttl=ports.lease,
        )
    except LeaseHeld as exc:
        if job.status == ROLLING_BACK:
            raise LeaseHeld(
                f"company {company_sso_id}'s job {job.job_id} is being rolled back ({exc}): that "
                "rollback is still deleting; if it died, run rollback again once its hold has expired "
                "(status shows it)",
                by_rollback=True,
            ) from exc
        raise LeaseHeld(
            f"company {company_sso_id}'s job {job.job_id} is {job.status}, but its lease is live ({exc}): "
            "a batch its holder is writing would land after the delete; roll back once that lease is "
            "handed back or has expired (status shows it)"
        ) from exc
    if held is None:
        raise JobAlreadyRunning(f"company {company_sso_id}'s job {job.job_id} changed meanwhile: try again")
    # Until this rollback has read (and adopted) the chunk another left in flight, that record is not
    # its own to clear: a rollback cut off before then leaves it for the next (``let_go``).
    progress = Progress(in_flight=True)
    try:
        latest = jobs.latest(company_sso_id)
        if latest is not None and latest.job_id != job.job_id:
            jobs.give_back_rollback(attrs.evolve(held, status=job.status), owner=owner)
            raise JobAlreadyRunning(
                f"company {company_sso_id} has a newer job {latest.job_id}: its logs are not rolled back"
            )
        deleted, last = delete_held(company_sso_id, held, ports, owner, progress)
    except (JobAlreadyRunning, LeaseHeld):
        raise  # the hold given back, or another's now
    except (Exception, KeyboardInterrupt) as error:
        let_go(held, ports, owner, progress, interrupted=isinstance(error, KeyboardInterrupt))
        raise
    # Added to the count as stored at this write, never to the one read before the hold: a rollback
    # that held the job before this one took it over may have added its own since (module docstring).
    done = jobs.finish_rollback(
        attrs.evolve(held, status=ROLLED_BACK, updated_at=clock.now()), last, token=owner
    )
    if done is None or done.status != ROLLED_BACK:
        raise hold_lost(company_sso_id, job.job_id, deleted, done, None)
    return RollbackResult(company_sso_id, deleted, job.job_id)
