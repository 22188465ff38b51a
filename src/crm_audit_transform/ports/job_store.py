"""The migration jobs' store: the whole job, and the run loop's view of one job or shard."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from typing import Protocol

from ..jobs import JobShard, MigrationJob, RollbackInFlight


class JobStore(Protocol):
    """``crm_activity_log_migration_jobs``: one document per job, at most one in progress per account.

    Lease expiries are computed on the **store's clock** (a database server's ``$$NOW``), never the
    runner's: runners on hosts whose clocks disagree still agree on whether a lease has expired.
    """

    def create(self, job: MigrationJob) -> None:
        """Insert; raises ``JobAlreadyRunning`` when the account already has an in-progress job."""
        ...

    def latest(self, company_sso_id: str) -> MigrationJob | None: ...

    def rollback_under_way(self, company_sso_id: str) -> MigrationJob | None:
        """A job of the account whose rollback has started and not finished (``rolling_back``)."""
        ...

    def save(self, job: MigrationJob) -> None:
        """Replace the job's cursor, counts, status and lease (by ``job_id``)."""
        ...

    def transition(
        self,
        job: MigrationJob,
        expected: Collection[str],
        *,
        unleased: bool = False,
        leased_to: str | None = None,
        status_only: bool = False,
        resumed: bool = False,
    ) -> MigrationJob | None:
        """Replace the stored job with ``job`` only while its stored status is one of ``expected``.

        Atomic; returns the job as stored, or None (nothing written) when its status was another.
        ``JobAlreadyRunning`` when ``job`` is in progress and the account has another such job.
        When ``expected`` holds ``in_progress``, the stored ``shards`` are kept as they are (live
        shards own their entries while the job runs; a cancel must not undo their progress). A
        sharded job's counts, cursor and ``progress_pct`` are then its shards' sums as they stand at
        that write, a shard's batch saved since ``job`` was read included; a store that keeps them
        beside the status writes them in the same write, and may answer ``LeaseHeld`` (nothing
        written: try again) when shards wrote under each of its tries.

        ``unleased``: also only while neither the job nor any of its shards holds a lease that is
        live on the **store's clock** — in the same atomic write, so no lease taken between a check
        and the change is missed (the rollback's hold); ``LeaseHeld`` (nothing written, naming the
        holder) when the status matched and a lease was live; the lease fields (the job's and its
        shards', and so the shards) and the counts and cursor (``tally``, ``enrichment``,
        ``halt_basis``, ``last_audit_id``, ``rows_at_cursor``) then stay as stored, whatever ``job``
        holds: the hold changes the status, never what a runner or a repair saved since ``job`` was
        read (nor ``logs_deleted``, which a rollback beside it may have added to: ``finish_rollback``).
        ``leased_to``: also only while the job's lease is ``leased_to``'s (expired or not) and no
        shard's lease is another's (but a completed shard's: no runner writes it again); the whole
        document is written,
        ``shards`` included, even from ``in_progress`` (``verify --repair``, which holds every
        lease); None when it is not. ``status_only``: only ``job``'s ``status``, ``updated_at``,
        ``finished_at`` and ``halted_reason`` are written; every other field (cursor, counts,
        ``enrichment``, ``halt_basis``, lease fields, shards) stays as stored, in the same atomic
        write (``cancel``: a runner's progress saved since ``job`` was read is not undone).
        ``resumed`` (with ``unleased``: ``trigger --resume``): the whole
        ``job`` is written under that fence, its shards and lease fields included — the fence says, in
        the same write, that none of the stored leases is live, so clearing them takes no runner's —
        and only while the stored counts and cursors (``tally``, ``enrichment``, ``last_audit_id``;
        a sharded job's, each shard's) are ``job``'s: None (nothing written) when they moved since
        ``job`` was read (a repair saved its count), so the resume's halt basis is never a stale read.
        """
        ...

    def hold_rollback(
        self, job: MigrationJob, expected: Collection[str], *, owner: str, ttl: dt.timedelta
    ) -> MigrationJob | None:
        """The rollback's hold: ``transition(job, expected, unleased=True)`` that also gives the
        job's lease to ``owner`` until the store's now + ``ttl``, in the same atomic write.

        A second rollback of the job meets that lease while it is live and is ``LeaseHeld``
        (``unleased``), so one rollback at a time deletes and ends the job; one that died leaves a
        lease that expires, and the next rollback takes the hold over. None when the status was
        none of ``expected`` (nothing written).
        """
        ...

    def give_back_rollback(self, job: MigrationJob, *, owner: str) -> MigrationJob | None:
        """The hold undone (a newer job appeared): ``job``'s ``status`` and ``updated_at``, and the
        job's lease cleared — one atomic write, only while the stored job is ``rolling_back`` and
        ``owner`` holds its lease (expired or not); nothing else written. The job as stored, or
        None (nothing written)."""
        ...

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
        """The rollback's hold renewed before its next chunk: the job's lease ``owner``'s until the
        store's now + ``ttl``, ``deleted`` (the chunk before) added to ``logs_deleted``, and
        ``sending`` (the log store's ids of the chunk whose delete this renewal lets go out, or a
        ``jobs.WholeAccountDelete``: a delete of the whole account, with the count before it)
        recorded as ``owner``'s *chunk in flight*, in place of the one before — one atomic write,
        only while the job is ``rolling_back`` and ``owner`` holds its lease (expired or not: nobody
        took it over). ``sending=None`` leaves the chunk in flight as stored; ``()`` records none.

        ``chunk`` (the count's number within this rollback, from 1) makes the write idempotent: a
        retry after a lost acknowledgement finds ``owner``'s ``chunk`` counted and renews (and
        records ``sending``) only. ``LeaseHeld`` (nothing written) when the lease is another's or
        nobody's, or the job is no longer ``rolling_back``: the hold is lost and the rollback sends
        no further delete. ``JobNotFound`` if the job was never created. The job as stored.
        """
        ...

    def adopt_rollback_chunk(self, job_id: str, *, owner: str) -> RollbackInFlight:
        """The chunk in flight of another rollback of the job (its last ``renew_rollback``'s
        ``sending``, ids or a ``WholeAccountDelete`` as recorded: its delete sent or not, its count
        not yet in ``logs_deleted``) made ``owner``'s, which holds the job now, and that rollback's
        count closed (its ``finish_rollback`` then adds nothing) — one atomic write. ``owner`` sends
        that chunk's delete again and counts every log of it as deleted, by whichever of the two
        deletes took it: each existed when the chunk was read, and every later delete of it (the
        other's, if it was only frozen) finds it gone (a whole-account delete: ``before`` less what
        is left, and what its own delete removes).

        Empty (nothing written) when there is none, it holds no id (nor a whole-account delete),
        the other rollback's count is in already (its ``finish_rollback`` ran), or the job is not
        ``rolling_back`` under ``owner``'s lease. A retry after a lost acknowledgement finds the
        chunk ``owner``'s and returns it. ``JobNotFound`` if the job was never created.
        """
        ...

    def finish_rollback(self, job: MigrationJob, deleted: int, *, token: str) -> MigrationJob | None:
        """The rollback's end: ``deleted`` added to the stored ``logs_deleted`` (None counting as 0)
        and, while the job's lease is ``token``'s (the owner its ``hold_rollback`` took, expired or
        not), ``status`` ``rolled_back``, ``updated_at`` ``job``'s and the lease cleared — one
        atomic write, only while the stored status is ``rolling_back`` or ``rolled_back``, and
        nothing else written.

        A rollback whose hold expired (it was slow, or stopped) and was taken over by another adds
        its count and leaves the status to that one: the job is ``rolled_back`` only when the
        rollback holding it finishes, never while one that holds it still deletes. A lease that is
        nobody's does not end the job either: the one that took over may have let go after an error
        (``give_back_rollback`` after its count), with logs left, and a stale rollback finishing
        then would mark the job ``rolled_back`` over them. A job left ``rolling_back`` with no lease
        (one that let go; a job written before rollbacks held a lease) is ended by the next
        ``rollback``, which takes the hold (``hold_rollback``) before it finishes. ``token`` also
        makes the write idempotent: retried after a lost acknowledgement, it finds its token
        counted and adds nothing again; so does a rollback whose chunk in flight the one that took
        its hold over adopted (``adopt_rollback_chunk``, which counted that chunk). The job as
        stored; None (nothing written) when its status is neither.
        """
        ...

    def acquire_shard_lease(self, job_id: str, shard: int, owner: str, ttl: dt.timedelta) -> MigrationJob:
        """``acquire_lease`` for one shard of a sharded job: that shard's lease only; the whole job.

        A completed shard's lease is never taken: the job comes back as stored, that lease as it is.
        Only while the job's status is ``jobs.LEASABLE``, checked in the same atomic write: a
        cancelled, rolling-back or rolled-back job is ``JobNotRunnable`` (``jobs.shard_not_leasable``),
        nothing written — no shard runner takes it up after a cancel or during a rollback. Taking
        it clears the shard's ``not_resent_at`` in the same write, as ``acquire_lease`` the job's.
        """
        ...

    def save_shard_progress(
        self, job_id: str, shard: JobShard, owner: str, ttl: dt.timedelta | None
    ) -> MigrationJob:
        """``save_progress`` for one shard: the run's fields of ``shards[shard.shard]`` alone
        (``last_audit_id``, ``rows_at_cursor``, ``status``, ``tally``, ``enrichment``,
        ``halted_reason``, ``finished_at``; its range and ``halt_basis`` stay as stored), lease renewed.

        One atomic write, only while ``owner`` holds that shard's lease and the job is in progress;
        else the stored job when ``owner`` still holds the shard (the job was cancelled, halted or
        completed meanwhile: nothing written but the release of that lease — the runner stops),
        ``LeaseHeld`` when another runner took the shard over.
        Returns the whole job as stored.
        """
        ...

    def acquire_lease(self, job_id: str, owner: str, ttl: dt.timedelta) -> MigrationJob:
        """Take the lease if free, expired or already ours, until the store's now + ``ttl``; else
        raise ``LeaseHeld``. Atomic. Only while the job's status is ``jobs.LEASABLE`` (in progress,
        halted, completed): a cancelled, rolling-back or rolled-back job comes back as stored, its
        lease untouched, so no runner takes it up after a cancel or a rollback. Taking it clears
        the job's ``not_resent_at`` in the same write: its task's message has come back (or another
        was sent), and a runner has it now."""
        ...

    def save_progress(self, job: MigrationJob, owner: str, ttl: dt.timedelta | None) -> MigrationJob:
        """Save the run's fields of ``job``, its lease renewed to ``owner`` until the store's now + ttl.

        The run's fields are what a run changes: ``last_audit_id``, ``rows_at_cursor``, ``tally``,
        ``enrichment``, ``updated_at``, ``status``, ``finished_at`` and ``halted_reason``; the job's
        identity, scope, ``halt_basis``, ``source_mark`` and shards stay as stored (``trigger``'s,
        through ``save`` and ``transition``; the mark grown by ``grow_source_mark``).
        ``ttl=None`` hands the lease back in the same write (a run's finish). One atomic write, only
        while ``owner`` still holds the lease (expired or not) and the stored job is in progress:
        a runner whose lease was taken over — even if since released — gets ``LeaseHeld`` and writes
        nothing; a job cancelled meanwhile is returned as stored (``cancelled``); a job ended
        otherwise while the lease was still ``owner``'s (rolled back once it had expired) is
        ``JobNotRunnable``. In those two cases nothing is written but the hand-back of ``owner``'s
        lease: the runner stops there, so a rollback need not wait for the lease to expire. A job
        whose expired lease a rollback's hold took (``hold_rollback``: rolling back or rolled back,
        the lease another's) is ``JobNotRunnable`` too (``jobs.rolled_back_under``), nothing written.
        ``JobNotFound`` if the job was never created.
        """
        ...

    def grow_source_mark(
        self, job_id: str, owner: str, mark: str, *, previous: str, shard: int | None = None
    ) -> MigrationJob:
        """Set the job's ``source_mark`` to ``mark`` (the source's ``grown_mark`` of ``previous``:
        rows appended to a file since, which the run is about to hand over). Returns the job as
        stored.

        One atomic write, only while ``owner`` holds the job's lease (``shard``: that shard's), the
        job is in progress and its mark is still ``previous``; else nothing is written and the job
        comes back as stored: another mark (another shard's run grew it first: grow that one), or
        another status (cancelled, halted, completed meanwhile: the runner stops). ``LeaseHeld``
        when another runner took the lease over (``jobs.rolled_back_under``'s ``JobNotRunnable``
        when a rollback's hold did); ``JobNotFound`` if the job (or shard) does not exist. A retry
        after a lost acknowledgement finds the mark written: the job as stored, with it.
        """
        ...

    def note_not_resent(self, company_sso_id: str, shard: int | None = None) -> MigrationJob | None:
        """Record that a worker's task of the account's job in progress (``shard``: of that shard,
        not completed) could not send itself again: ``not_resent_at`` (the job's, or the shard's)
        set to the store's now, in one atomic write of that field alone. Returns the job as stored;
        None, nothing written, when the account has no job in progress (or no such unfinished
        shard). A retry writes the same field again, harmlessly. Cleared by the next
        ``acquire_lease`` (``acquire_shard_lease``) that takes the lease (docs/scale-out.md, "A
        re-send the broker does not take").
        """
        ...


class RunJobStore(Protocol):
    """What the run loop asks of the job store: a ``JobStore``, or one shard's view of it
    (``usecases.shards.ShardJobs``), whose jobs are that shard's cursor, counts and lease."""

    def latest(self, company_sso_id: str) -> MigrationJob | None: ...

    def rollback_under_way(self, company_sso_id: str) -> MigrationJob | None: ...

    def save(self, job: MigrationJob) -> None: ...

    def acquire_lease(self, job_id: str, owner: str, ttl: dt.timedelta) -> MigrationJob: ...

    def save_progress(self, job: MigrationJob, owner: str, ttl: dt.timedelta | None) -> MigrationJob: ...

    def grow_source_mark(self, job_id: str, owner: str, mark: str, *, previous: str) -> MigrationJob: ...
