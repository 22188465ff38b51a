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
   (``JobStore.renew_rollback``, once per chunk even when retried); a store without chunks (the
   JSONL sink, rewritten in one atomic step) is deleted in one ``delete_migrated`` after one
   renewal, which records that whole-account delete in flight with the account's count before it
   (``jobs.WholeAccountDelete``). Before its first delete it adopts the chunk (or whole-account
   delete) in flight another rollback of the job left (``JobStore.adopt_rollback_chunk``), sends
   its delete again and counts all of it;
4. it marks the job ``rolled_back``, clears its lease and adds the last chunk's count to
   ``logs_deleted`` in that same write (``JobStore.finish_rollback``): added up over repeated
   rollbacks of the same job, so a second one that finds nothing keeps the first one's count. The
   status changes only while the lease is still this rollback's own; one whose hold was taken over
   adds its count alone and ends ``RollbackHoldLost`` (below) — unless the rollback that took it
   over has already ended the job: the account is clean and the count added once, so it ends as a
   success.

**One rollback of a job at a time.** A rollback run again while the first still deletes (an
operator's retry, ``trigger --fresh``) meets the first one's live lease in step 1 and is refused
``LeaseHeld`` (exit 4), naming the holder and its expiry; nothing is deleted by it. Before, both
ran, and the first to finish made the job ``rolled_back`` while the other still deleted: a new job
of the account could then start and lose its fresh logs to that delete, without a word. A refusal
was chosen over letting both run until the last one ends: a second delete of the same logs beside
the first gains nothing, and the operator is told who holds the account and until when, as for a
runner's lease. A rollback that died (``kill -9``) leaves the account held until its lease
expires (``status`` shows it); ``rollback`` run again after that takes the hold over and finishes
it. One ended by an error it survives (Ctrl-C, a store gone after its retries) counts the chunk it
deleted and clears its hold, the job left ``rolling_back`` (``_let_go``): run again, it goes on at
once. A rollback whose lease expired while it was still deleting (a frozen process) and was taken
over finds it at its next renewal and stops, ``LeaseHeld``, before sending another delete; its last
chunk is counted once: by the one that took over, which adopted it (below), or else by its own
``finish_rollback``, which leaves the job to the one that took it. So once that
one ends the job ``rolled_back`` and a new job writes fresh logs, none of them can go to the first
one's delete (before, one ``delete_many`` of the whole account, sent once, ran on beside the other).

**Only the hold's own rollback ends the job.** The one that took over may itself let go after an
error (``_let_go``: the lease cleared, the job ``rolling_back``, logs left). A stale rollback
finishing then found a lease that was nobody's, and ``finish_rollback`` took that as its own: the
job became ``rolled_back`` over the logs still there. ``finish_rollback`` now ends the job only
under the finishing rollback's own ``rollback:<token>``; a rollback that lost its hold stops with
``RollbackHoldLost`` (a ``LeaseHeld``, exit 4, HTTP 409) saying who ends the job: the rollback
holding it now, or, when nobody holds it, ``rollback`` run again. A job left ``rolling_back`` with
no lease (one that let go; one written before rollbacks held a lease) is ended that way too: the
next rollback takes the hold (step 1) before it finishes.

**The chunk in flight: an exact count after a ``kill -9``.** A rollback killed between a chunk's
delete and the next renewal (or frozen there, or before the delete was sent) leaves that chunk
recorded in flight and uncounted. The rollback that takes the hold over adopts it: in one write
the chunk becomes its own and the first one's count is closed (a later ``finish_rollback`` of the
first adds nothing); it sends the chunk's delete again and counts every log of it. That count is
exact whichever of the two deletes took each log: every log of the chunk existed when the chunk
was read under the first one's hold, and no log is in two chunks (a chunk is read after the
delete of the one before returned, and an adopted chunk is deleted before the next is read).
Chosen over counting a chunk in the renewal before its delete (one write fewer, but a kill
before the send would count logs a later rollback deletes and counts again) and over counting
"what the store says is gone" at the end (``count_migrated`` before and after: a runner's stray
batch landing in between, the fence gap below, would be counted as deleted or make it negative).

**A whole-account delete in flight** (a store without chunks, or a chunk its store would not
delete: ``_delete_held``) names no logs to send again, so the renewal before it records the account's
migrated logs counted just then (``WholeAccountDelete.before``). The rollback that adopts it counts
``before`` less what it finds left (what the first one's delete took: all, some or none) and then
deletes what is left and counts that: ``before`` in all, exactly the count a clean rollback would
have, as long as nothing but rollbacks writes the account's migrated logs under the hold. The JSONL
sink's file lock keeps every other writer out; on MongoDB the one exception is the stray batch of
"What the fence does not cover" below, which such an adoption may leave out of the count (a chunk
never does: its ids are fixed when it is read), and the first rollback's own delete when it was
frozen, not dead, and lands after the adopter counted what was left and before it deleted it: those
logs are gone and counted by neither. Chosen over making the JSONL sink delete in chunks
(a rewrite of the whole file per chunk) and over dropping the fallback (a store whose chunk ids its
delete cannot match could then never be rolled back). Before, a ``kill -9`` right after that
delete lost its whole count.

**A process frozen between the half-lease check and its delete** (past its lease, taken over
meanwhile) still sends that one delete. It is harmless: the delete names the chunk's logs by the
store's own ids (MongoDB's ``_id``), read under the hold, and a new job of the account writes its
logs with new ``_id``s, so the late delete finds only logs the rollback was deleting anyway; and
the one that took over adopted that chunk, so its count is not added twice. Fencing the delete
itself would need the log delete and the job's lease in one transaction across two collections.
A whole-account delete sent that late is not harmless that way (it would take a new job's logs):
the JSONL sink's file lock keeps a second process off the file while the frozen one lives, and on
MongoDB only a chunk whose ids its own delete cannot match falls back to one.

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

import contextlib
import datetime as dt
import uuid
from collections.abc import Sequence

import attrs
from attrs import define, frozen

from ..errors import JobAlreadyRunning, LeaseHeld, RollbackHoldLost
from ..jobs import IN_PROGRESS, ROLLED_BACK, ROLLING_BACK, MigrationJob, RollbackInFlight, WholeAccountDelete
from ..ports import Clock, JobStore, MigratedLogs
from ..ports.log_stores import MigratedLogsInChunks
from .settings import RunSettings


@frozen
class RollbackPorts:
    """What rollback reads and writes: the job, the account's migrated logs, the time; and how long
    its hold on the job lives unless it finishes first (``lease``: the run's ``lease_seconds``)."""

    jobs: JobStore
    logs: MigratedLogs
    clock: Clock
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
    # its own to clear: a rollback cut off before then leaves it for the next (``_let_go``).
    progress = _Progress(in_flight=True)
    try:
        latest = jobs.latest(company_sso_id)
        if latest is not None and latest.job_id != job.job_id:
            jobs.give_back_rollback(attrs.evolve(held, status=job.status), owner=owner)
            raise JobAlreadyRunning(
                f"company {company_sso_id} has a newer job {latest.job_id}: its logs are not rolled back"
            )
        deleted, last = _delete_held(company_sso_id, held, ports, owner, progress)
    except (JobAlreadyRunning, LeaseHeld):
        raise  # the hold given back, or another's now
    except (Exception, KeyboardInterrupt):
        _let_go(held, ports, owner, progress)
        raise
    # Added to the count as stored at this write, never to the one read before the hold: a rollback
    # that held the job before this one took it over may have added its own since (module docstring).
    done = jobs.finish_rollback(
        attrs.evolve(held, status=ROLLED_BACK, updated_at=clock.now()), last, token=owner
    )
    if done is None or done.status != ROLLED_BACK:
        raise _hold_lost(company_sso_id, job.job_id, deleted, done, None)
    return RollbackResult(company_sso_id, deleted, job.job_id)


def _hold_lost(
    company_sso_id: str, job_id: str, deleted: int, stored: MigrationJob | None, cause: LeaseHeld | None
) -> RollbackHoldLost:
    """What a rollback whose hold was taken over says once its ``finish_rollback`` (``stored``: the
    job as that write left it) has added its count: who ends the job now. ``cause``: the renewal's
    refusal, when it stopped before a delete rather than at its end."""
    why = f" ({cause})" if cause is not None else ""
    head = f"company {company_sso_id}'s rollback lost its hold on job {job_id}{why}"
    head += f" after deleting {deleted} logs"
    if cause is not None:
        head += ": it stopped before its next delete"
    taken = stored is not None and stored.status == ROLLING_BACK and stored.lease_owner is not None
    if stored is None:
        end = "the job is no longer rolling back (given back for a newer job): its count is not on it"
    elif stored.status == ROLLED_BACK:
        end = "its count is added; the rollback that took the job over has ended it"
    elif taken:
        end = f"its count is added; the rollback holding the job now ({stored.lease_owner}) ends it"
    else:
        end = (
            "its count is added; no rollback holds the job now (the one that took it over let go "
            "after an error), so the job stays rolling_back: run rollback again to end it"
        )
    return RollbackHoldLost(f"{head}; {end}", taken=taken)


@define
class _Progress:
    """How far a held rollback has got: the count not yet added to ``logs_deleted``, the renewals
    made, and the chunk in flight (recorded by a renewal, its delete not yet returned)."""

    pending: int = 0
    renewals: int = 0
    renewing: bool = False
    """A renewal was sent and its answer not seen: it may have been applied (its marker stored)."""
    sending: RollbackInFlight | None = None
    """What the renewal in ``renewing`` records as the chunk in flight (``renew_rollback``'s ``sending``)."""
    in_flight: bool = False
    """A chunk's delete may have gone out and not returned: its count is unknown here."""


def _let_go(held: MigrationJob, ports: RollbackPorts, owner: str, progress: _Progress) -> None:
    """A rollback ended by an error it survives (Ctrl-C, a store gone after its retries): the chunk
    it deleted is counted and its hold cleared, the job left ``rolling_back``, so ``rollback`` run
    again goes on at once instead of meeting its own hold until it expires (only a process that
    died, ``kill -9``, needs the expiry). A chunk whose delete did not return stays recorded in
    flight, uncounted: the next rollback adopts it (``JobStore.adopt_rollback_chunk``). Best effort:
    the store may be what failed."""
    jobs = ports.jobs
    # A renewal cut off before its answer is sent again under its own marker, recording the same
    # chunk (counted once either way); otherwise the pending count goes under a new one, and the
    # chunk in flight is cleared when its delete returned (counted now), else left for the next.
    if progress.renewing:
        chunk, sending = progress.renewals, progress.sending
    else:
        chunk, sending = progress.renewals + 1, (None if progress.in_flight else ())
    with contextlib.suppress(Exception):
        jobs.renew_rollback(
            held.job_id, owner=owner, ttl=ports.lease, deleted=progress.pending, chunk=chunk, sending=sending
        )
    with contextlib.suppress(Exception):
        jobs.give_back_rollback(
            attrs.evolve(held, status=ROLLING_BACK, updated_at=ports.clock.now()), owner=owner
        )


def _delete_held(
    company_sso_id: str, held: MigrationJob, ports: RollbackPorts, owner: str, progress: _Progress
) -> tuple[int, int]:
    """Delete the account's migrated logs under ``owner``'s hold: (all deleted, the count still to
    add, which ``finish_rollback`` adds). First what another rollback of the job left in flight,
    adopted (``JobStore.adopt_rollback_chunk``: its delete sent again, all of it counted). Then
    chunk by chunk when the store can (``MigratedLogsInChunks``): each chunk read, the hold renewed
    with the chunk before counted and this one recorded in flight (``JobStore.renew_rollback``)
    before its delete is sent, and again when half the lease has passed since (on
    ``RollbackPorts.clock``, as the run loop's own renewal) by the time it is sent;
    ``RollbackHoldLost`` once the hold is another's: no further delete is sent, and the chunk in
    flight is the new holder's to count (``finish_rollback`` adds the pending count only where it
    did not adopt it, and leaves the status to the new holder). Otherwise (and for a chunk its store
    would not delete) in one whole-account delete, recorded in flight the same way with the count
    before it (``whole``)."""
    jobs, logs, job_id = ports.jobs, ports.logs, held.job_id
    half, clock = ports.lease / 2, ports.clock
    total = 0

    def renew(sending: RollbackInFlight | None) -> dt.datetime:
        """Renew the hold, the count before added and ``sending`` recorded; when it was sent (``clock``)."""
        progress.renewals += 1
        sent = clock.now()
        progress.renewing, progress.sending = True, sending
        try:
            jobs.renew_rollback(
                job_id,
                owner=owner,
                ttl=ports.lease,
                deleted=progress.pending,
                chunk=progress.renewals,
                sending=sending,
            )
        except LeaseHeld as exc:
            ended = attrs.evolve(held, status=ROLLED_BACK, updated_at=ports.clock.now())
            stored = jobs.finish_rollback(ended, progress.pending, token=owner)
            raise _hold_lost(company_sso_id, job_id, total, stored, exc) from exc
        progress.renewing = False
        progress.pending = 0
        if sending is not None:
            progress.in_flight = isinstance(sending, WholeAccountDelete) or bool(sending)
        return sent

    def delete(chunks: MigratedLogsInChunks, chunk: Sequence[object]) -> int:
        """The chunk in flight deleted; how many of its logs went."""
        deleted = chunks.delete_migrated_chunk(company_sso_id, chunk)
        progress.in_flight = False
        return deleted

    def whole() -> int:
        """The rest of the account in one ``delete_migrated``: counted first, and recorded in flight
        with that count, so a rollback that takes the hold over after a ``kill -9`` right after the
        delete adopts it (``_adopted_whole``); how many went."""
        renew(WholeAccountDelete(logs.count_migrated(company_sso_id)))
        deleted = logs.delete_migrated(company_sso_id)
        progress.in_flight = False
        return deleted

    # A rollback that took the hold over from one that died (or froze) after recording a chunk
    # finishes that chunk first: each of its logs existed when it was read and is gone after this
    # delete, whichever delete took it, so all of it is counted (never by the other: closed).
    adopted = jobs.adopt_rollback_chunk(job_id, owner=owner)
    if isinstance(adopted, WholeAccountDelete):
        progress.in_flight = True
        deleted, progress.pending = _adopted_whole(company_sso_id, logs, adopted)
        progress.in_flight = False
        total += deleted
    elif adopted and isinstance(logs, MigratedLogsInChunks):  # ids: only a store with chunks records them
        progress.in_flight = True
        total += delete(logs, adopted)
        progress.pending = len(adopted)
    if not isinstance(logs, MigratedLogsInChunks):
        if not isinstance(adopted, WholeAccountDelete):  # an adopted one has just deleted the rest
            progress.pending = whole()
            total += progress.pending
        return total, progress.pending
    while chunk := logs.migrated_chunk(company_sso_id, ports.chunk):
        renewed = renew(chunk)
        while dt.timedelta(0) < half <= clock.now() - renewed:
            renewed = renew(None)  # stalled since (a frozen process): the hold may be another's by now
        progress.pending = delete(logs, chunk)
        total += progress.pending
        if not progress.pending:
            # A chunk its own store would not delete: the rest in one delete, as without chunks,
            # rather than reading the same chunk for ever.
            progress.pending = whole()
            total += progress.pending
            break
    return total, progress.pending


def _adopted_whole(company_sso_id: str, logs: MigratedLogs, adopted: WholeAccountDelete) -> tuple[int, int]:
    """Another rollback's whole-account delete, adopted: (what this delete removed, the count of
    the two). Its delete removed ``adopted.before`` less what is left now (all of them, some, or
    none if it was never sent), and this one removes what is left: the count is exact while nothing
    but rollbacks writes the account's migrated logs under the hold (the JSONL sink: its file lock
    keeps every other writer out; MongoDB: all but the stray batch of a runner frozen past its
    lease, which the module docstring's "What the fence does not cover" leaves unfenced)."""
    left = logs.count_migrated(company_sso_id)
    deleted = logs.delete_migrated(company_sso_id)
    return deleted, max(adopted.before - left, 0) + deleted
