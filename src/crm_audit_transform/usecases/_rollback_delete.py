"""Deleting under a rollback's hold (``usecases.rollback`` takes and ends the hold): chunk by chunk,
each chunk recorded in flight before its delete is sent; and what a rollback ended by an error it
survives leaves for the next (``let_go``).

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
batch landing in between, ``usecases.rollback``'s fence gap, would be counted as deleted or make it negative).

**A whole-account delete in flight** (a store without chunks: ``delete_held``) names no logs to
send again, so the renewal before it records the account's migrated logs counted just then
(``WholeAccountDelete.before``). The rollback that adopts it counts ``before`` less what it finds
left (what the first one's delete took: all, some or none) and then deletes what is left and counts
that: ``before`` in all, exactly the count a clean rollback would have, as long as nothing but
rollbacks writes the account's migrated logs under the hold. The JSONL sink's file lock keeps every
other writer out. A store with chunks adopting one (recorded by an earlier version, whose store
with chunks fell back to one whole-account delete) counts it the same way and deletes the rest chunk
by chunk. Chosen over making the JSONL sink delete in chunks (a rewrite of the whole file per
chunk). Without that record, a ``kill -9`` right after that delete would lose its whole count.

**No whole-account delete on a store with chunks.** A chunk whose delete removes none of it is
followed by the next chunk read, never by one delete of the whole account: that delete, sent by a
process paused past its hold after its renewal (or retried late), would take the logs of a job
started after the rollback that took the hold over ended it, since a ``delete_many`` on the account
cannot be bounded by the job's lease (the lease and the logs are two collections, and no
multi-document transaction is promised). Each chunk's delete names logs read under the hold by the
store's ids, so a late one misses every log written since. A chunk removes none of itself when its
logs went meanwhile (another delete; the next read has others) or when the store cannot delete what
it gave (a read from a lagging secondary; ids its delete cannot match): the next read then gives
some of it again, and the rollback stops there, ``StoreUnavailable``, nothing more deleted, the job
left ``rolling_back`` with the hold given back (``let_go``) for ``rollback`` to be run again. Chosen
over reading that chunk again for ever, and over falling back to one whole-account delete (renewed
just before that delete, but not fenced once it is sent).

**A process frozen between the half-lease check and its delete** (past its lease, taken over
meanwhile) still sends that one delete. It is harmless: the delete names the chunk's logs by the
store's own ids (MongoDB's ``_id``), read under the hold, and a new job of the account writes its
logs with new ``_id``s, so the late delete finds only logs the rollback was deleting anyway; and
the one that took over adopted that chunk, so its count is not added twice. Fencing the delete
itself would need the log delete and the job's lease in one transaction across two collections.
A whole-account delete sent that late is not harmless that way (it would take a new job's logs):
the JSONL sink's file lock keeps a second process off the file while the frozen one lives, and a
store with chunks never sends one (above). A store without chunks other than the sink must keep
other writers out itself (``ports.MigratedLogsInChunks``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

import attrs
from attrs import define

from ..errors import LeaseHeld, RollbackHoldLost, StoreUnavailable
from ..jobs import ROLLED_BACK, ROLLING_BACK, MigrationJob, RollbackInFlight, WholeAccountDelete
from ..ports import MigratedLogs
from ..ports.log_stores import MigratedChunkDeleteOnce, MigratedLogsInChunks

if TYPE_CHECKING:
    from .rollback import RollbackPorts


def hold_lost(
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
class Progress:
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
    chunk: Sequence[object] = ()
    """The ids of the chunk recorded in flight (this rollback's own, or one it adopted); empty for a
    whole-account delete, which names no logs."""


def let_go(
    held: MigrationJob, ports: RollbackPorts, owner: str, progress: Progress, *, interrupted: bool = False
) -> None:
    """A rollback ended by an error it survives (Ctrl-C, a store gone after its retries): the chunk
    it deleted is counted and its hold cleared, the job left ``rolling_back``, so ``rollback`` run
    again goes on at once instead of meeting its own hold until it expires (only a process that
    died, ``kill -9``, needs the expiry). Best effort: the store may be what failed.

    A chunk whose delete did not return: after a Ctrl-C (``interrupted``) its delete is sent again,
    in one attempt (no retry: the operator is waiting), and all of it counted in that same write
    (``_finish_chunk``), so ``status`` shows every log the
    rollback deleted as soon as it has stopped (the ``INTERRUPTED`` line says they are counted).
    After any other error, or when that delete fails too, it stays recorded in flight, uncounted:
    the next rollback adopts it (``JobStore.adopt_rollback_chunk``) — sending it again at once
    would wait out the retries of a store that has just failed. A whole-account delete in flight
    names no logs to send again (and one still running on the server would make a count of what
    is left short): it is always the next rollback's to count."""
    jobs = ports.jobs
    if interrupted:
        _finish_chunk(held.company_sso_id, ports, progress)
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


def _finish_chunk(company_sso_id: str, ports: RollbackPorts, progress: Progress) -> None:
    """The chunk in flight (``progress.chunk``) deleted again and all of it made the count still to
    add, as an adopting rollback counts it (``delete_held``): every log of it existed when it was
    read, and each is gone after this delete, whichever delete took it; so the count is exact even
    when the first delete is still running on the server. Nothing when no chunk is in flight, when
    a renewal's answer was lost (``renewing``: it is sent again as it was, the chunk left for the
    next), or when the delete fails (left for the next, as before). Sent in one attempt when the
    store retries (``MigratedChunkDeleteOnce``), so that the abort is prompt. A process killed
    during this leaves the chunk recorded in flight, and the rollback that takes the hold over
    adopts it."""
    logs, chunk = ports.logs, progress.chunk
    if progress.renewing or not progress.in_flight or not chunk or not isinstance(logs, MigratedLogsInChunks):
        return
    try:
        # One attempt where the store retries (``MigratedChunkDeleteOnce``): the operator asked to
        # stop, and a store that has just hung would otherwise hold them through all its retries
        # before the hold is given back. A failed attempt costs nothing: the next rollback adopts it.
        if isinstance(logs, MigratedChunkDeleteOnce):
            logs.delete_migrated_chunk_once(company_sso_id, chunk)
        else:
            logs.delete_migrated_chunk(company_sso_id, chunk)
    except Exception:  # best effort, as the rest of ``let_go``: the chunk stays the next rollback's
        return
    progress.pending, progress.in_flight, progress.chunk = len(chunk), False, ()


def delete_held(
    company_sso_id: str, held: MigrationJob, ports: RollbackPorts, owner: str, progress: Progress
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
    did not adopt it, and leaves the status to the new holder). A chunk that deleted none of it is
    followed by the next; read again, it stops the rollback (``StoreUnavailable``: module
    docstring, "No whole-account delete on a store with chunks"). A store without chunks is deleted
    in one whole-account delete, recorded in flight the same way with the count before it
    (``whole``)."""
    jobs, logs, job_id = ports.jobs, ports.logs, held.job_id
    half, clock = ports.lease.total_seconds() / 2, ports.clock  # seconds, on clock.monotonic()
    total = 0

    def renew(sending: RollbackInFlight | None) -> float:
        """Renew the hold, the count before added and ``sending`` recorded; when it was sent
        (``clock.monotonic()``: a duration is measured from it)."""
        progress.renewals += 1
        sent = clock.monotonic()
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
            raise hold_lost(company_sso_id, job_id, total, stored, exc) from exc
        progress.renewing = False
        progress.pending = 0
        if sending is not None:
            progress.in_flight = isinstance(sending, WholeAccountDelete) or bool(sending)
            progress.chunk = () if isinstance(sending, WholeAccountDelete) else sending
        return sent

    def delete(chunks: MigratedLogsInChunks, chunk: Sequence[object], counted: int | None = None) -> int:
        """The chunk in flight deleted and made the count still to add (``counted``, else how many
        of its logs went); how many went. The count is set before the chunk stops being in flight:
        a Ctrl-C between the two finds it in flight and counts the chunk again in its place
        (``_finish_chunk``), never neither."""
        deleted = chunks.delete_migrated_chunk(company_sso_id, chunk)
        progress.pending = deleted if counted is None else counted
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
    chunked = logs if isinstance(logs, MigratedLogsInChunks) else None
    if isinstance(adopted, WholeAccountDelete) and chunked is not None:
        # Recorded by a store without chunks, or by a version that fell back to one delete: what
        # it took is counted now (added, and the record cleared, by the next renewal or ``let_go``;
        # a kill before either leaves it to be counted again from the same numbers), and the rest
        # goes chunk by chunk below, under the hold, never in a whole-account delete of this one's.
        progress.pending = max(adopted.before - logs.count_migrated(company_sso_id), 0)
        progress.in_flight = False
    elif isinstance(adopted, WholeAccountDelete):
        progress.in_flight = True
        deleted, progress.pending = _adopted_whole(company_sso_id, logs, adopted)
        progress.in_flight = False
        total += deleted
    elif adopted and chunked is not None:  # ids: only a store with chunks records them
        progress.in_flight, progress.chunk = True, adopted
        total += delete(chunked, adopted, len(adopted))
    if chunked is None:
        if not isinstance(adopted, WholeAccountDelete):  # an adopted one has just deleted the rest
            progress.pending = whole()
            total += progress.pending
        return total, progress.pending
    undeleted: Sequence[object] = ()
    while chunk := chunked.migrated_chunk(company_sso_id, ports.chunk):
        if undeleted and any(doc_id in undeleted for doc_id in chunk):
            raise _not_deleted(company_sso_id, job_id, undeleted)
        renewed = renew(chunk)
        while 0 < half <= clock.monotonic() - renewed:
            renewed = renew(None)  # stalled since (a frozen process): the hold may be another's by now
        deleted = delete(chunked, chunk)
        total += deleted
        # None of it went: its logs went meanwhile (the next read has others), or the store cannot
        # delete what it gave (the next read gives some again: stopped there, module docstring).
        undeleted = () if deleted else chunk
    return total, progress.pending


def _not_deleted(company_sso_id: str, job_id: str, chunk: Sequence[object]) -> StoreUnavailable:
    """What a rollback says when its store gave again a chunk whose delete removed none of it."""
    return StoreUnavailable(
        f"company {company_sso_id}'s rollback of job {job_id} stopped: the store deleted none of a "
        f"chunk of {len(chunk)} migrated logs and then gave them again. Nothing else was deleted "
        "(deleting the whole account in one delete instead could take a newer job's logs, if this "
        "process stalled past its hold); the job stays rolling_back: run rollback again"
    )


def _adopted_whole(company_sso_id: str, logs: MigratedLogs, adopted: WholeAccountDelete) -> tuple[int, int]:
    """Another rollback's whole-account delete, adopted by a store without chunks: (what this
    delete removed, the count of the two). Its delete removed ``adopted.before`` less what is left
    now (all of them, some, or none if it was never sent), and this one removes what is left: the
    count is exact while nothing but rollbacks writes the account's migrated logs under the hold
    (the JSONL sink: its file lock keeps every other writer out). A store with chunks counts the
    first part the same way and deletes the rest in chunks (``delete_held``)."""
    left = logs.count_migrated(company_sso_id)
    deleted = logs.delete_migrated(company_sso_id)
    return deleted, max(adopted.before - left, 0) + deleted
