"""The durable migration job of one account (``crm_activity_log_migration_jobs``), and its shards.

A *sharded* job splits the account's in-scope ids into disjoint ranges at trigger time; each
``JobShard`` has its own cursor, counts, status and lease inside the one job document, so the
one-in-progress-job index, ``status`` and ``cancel`` keep seeing one job per account
(docs/scale-out.md). A sharded job's top-level counts and cursor are derived from its shards.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Final, Literal, TypeAlias, cast

from attrs import field, frozen

from ._arguments import aware_time, typed
from .enrichment_tally import EnrichmentTally
from .errors import JobNotRunnable
from .tally import Tally

IN_PROGRESS: Final = "in_progress"
HALTED: Final = "halted"
COMPLETED: Final = "completed"
CANCELLED: Final = "cancelled"
"""Set by ``cancel``: the cursor is kept; a live runner stops at its next batch."""
ROLLING_BACK: Final = "rolling_back"
"""Set by rollback while it deletes: the account is held (no trigger, no run) until it is done."""
ROLLED_BACK: Final = "rolled_back"
"""Set by rollback once the account's migrated logs are deleted; the account may be triggered again."""
NOT_STARTED: Final = "not_started"
"""Reported by status when an account has no job; never stored."""

JOB_STATUSES: Final = frozenset({IN_PROGRESS, HALTED, COMPLETED, CANCELLED, ROLLING_BACK, ROLLED_BACK})
JobStatusName: TypeAlias = Literal[
    "not_started", "in_progress", "halted", "completed", "cancelled", "rolling_back", "rolled_back"
]
"""The statuses an account's status answer names: ``JOB_STATUSES`` and ``NOT_STARTED`` (a test keeps
them equal); the HTTP document's enum is read from it."""


def status_name(status: str) -> JobStatusName:
    """A job's ``status`` typed for the answers: jobs are created and moved only to ``JOB_STATUSES``."""
    return cast(JobStatusName, status)


STOPPED: Final = frozenset({HALTED, CANCELLED})
"""Statuses a re-trigger must choose for: ``resume`` (keep what was written) or ``fresh``."""

LEASABLE: Final = frozenset({IN_PROGRESS, HALTED, COMPLETED})
"""Statuses a job's lease may be taken in (``JobStore.acquire_lease``): a run's (in progress) and a
repair's (``verify --repair`` also serves halted and completed jobs). A cancelled, rolling-back or
rolled-back job's lease is never taken: its account must not be written again."""


def shard_not_leasable(job: MigrationJob, shard: int) -> JobNotRunnable:
    """The error of ``JobStore.acquire_shard_lease`` on a job whose status is not ``LEASABLE``: the
    run path's ``JobNotRunnable`` (a shard's runner never writes a cancelled or rolled-back job)."""
    return JobNotRunnable(
        f"job {job.job_id} is {job.status}: shard {shard}'s lease is not taken, nothing is written to "
        "its account"
    )


def rolled_back_under(job: MigrationJob, owner: str) -> JobNotRunnable:
    """The error of ``JobStore.save_progress`` for a runner whose expired lease a rollback's hold
    took (``JobStore.hold_rollback``): the job was rolled back under it, nothing is written."""
    return JobNotRunnable(
        f"job {job.job_id} is {job.status}: it was rolled back while {owner} ran it (its lease had "
        "expired); nothing written"
    )


def lease_is_live(owner: str | None, expires_at: dt.datetime | None, now: dt.datetime) -> bool:
    """The one rule of a live lease: an owner **and** an expiry after ``now``, the store's clock (a
    database server's ``$$NOW``, never a runner's). An owner without an expiry, or an expiry without
    an owner, holds nothing. Every store applies it, and ``indexes down``; the MongoDB adapter's
    filters spell the same rule (``crm_audit_adapters.mongo.leases``)."""
    return owner is not None and expires_at is not None and expires_at > now


def last_lease(job: MigrationJob) -> tuple[str, dt.datetime] | None:
    """``(owner, expiry)`` of the lease on ``job`` or one of its shards that expires last, live or
    not; None when none has both an owner and an expiry.

    Some lease of the job is live at ``now`` exactly when this one is (its expiry is the latest), so
    it names the holder a refusal reports (``live_lease``).
    """
    leases = [(job.lease_owner, job.lease_expires_at)]
    leases.extend((shard.lease_owner, shard.lease_expires_at) for shard in job.shards)
    held = [(until, owner) for owner, until in leases if owner is not None and until is not None]
    if not held:
        return None
    until, owner = max(held)
    return owner, until


def live_lease(job: MigrationJob, now: dt.datetime) -> tuple[str, dt.datetime] | None:
    """``(owner, expiry)`` of a lease on ``job`` or one of its shards live at ``now``
    (``lease_is_live``), the one that expires last; None when no lease of the job is live."""
    last = last_lease(job)
    return last if last is not None and lease_is_live(*last, now) else None


@frozen
class WholeAccountDelete:
    """A rollback's delete of the whole account in flight (``JobStore.renew_rollback``'s
    ``sending``, as a chunk's ids are): no ids to send again, so the account's migrated logs
    counted just before the renewal that lets it go out (``before``). The rollback that adopts it
    (``JobStore.adopt_rollback_chunk``) counts ``before`` less what is left, then deletes what is
    left and counts that too (``usecases.rollback``)."""

    before: int


RollbackInFlight: TypeAlias = "Sequence[object] | WholeAccountDelete"
"""What a rollback records as in flight: a chunk's ids (its store's, opaque), or a whole-account delete."""


@frozen
class JobShard:
    """One id range ``(after_id, until_id]`` of a sharded job, run by one runner at a time.

    ``until_id`` None is open-ended: the last shard also takes rows written after the trigger,
    as an unsharded run does. ``status`` is ``in_progress``, ``completed`` or ``halted``; a
    cancel is the job's status, never a shard's. ``halt_basis`` is the shard's tally when the halt
    rule last started counting (the trigger or a ``--resume``). ``rows_at_cursor`` is the shard's
    own (``MigrationJob.rows_at_cursor``: 0 but over a source that may repeat an id).

    Checked as ``MigrationJob``'s: counts that are no ``Tally`` / ``EnrichmentTally`` are a
    ``TypeError``, times as ``MigrationJob``'s, each naming the field (``JobShard.tally``).
    """

    shard: int
    after_id: int
    until_id: int | None
    last_audit_id: int
    status: str = IN_PROGRESS
    tally: Tally = field(factory=Tally, validator=typed(Tally))
    enrichment: EnrichmentTally = field(factory=EnrichmentTally, validator=typed(EnrichmentTally))
    halt_basis: Tally = field(factory=Tally, validator=typed(Tally))
    halted_reason: str | None = None
    finished_at: dt.datetime | None = field(default=None, validator=aware_time(optional=True))
    lease_owner: str | None = None
    lease_expires_at: dt.datetime | None = field(default=None, validator=aware_time(optional=True))
    rows_at_cursor: int = 0
    not_resent_at: dt.datetime | None = field(default=None, validator=aware_time(optional=True))
    """When a task of this shard could not send itself again (``MigrationJob.not_resent_at``)."""

    def rows_span(self, max_audit_id: int) -> tuple[int, int]:
        """(ids behind the cursor, ids in the range), the range capped at the job's ``max_audit_id``."""
        top = max_audit_id if self.until_id is None else min(self.until_id, max_audit_id)
        span = max(0, top - self.after_id)
        if self.status == COMPLETED:
            return span, span
        return max(0, min(self.last_audit_id, top) - self.after_id), span


@frozen
class MigrationJob:
    """One account's migration: the resume cursor, the counts, and who may run it now.

    ``last_audit_id`` only moves after the batch it covers is written, so a crash at any point
    resumes without a gap; the idempotent write makes the replayed batch harmless.

    Built by a caller, it is checked where a wrong value would fail later and far away: ``tally``
    and ``halt_basis`` must be a ``Tally`` and ``enrichment`` an ``EnrichmentTally`` (``TypeError``);
    ``cutoff``, ``created_at``, ``updated_at``, ``date_range_start``, ``finished_at`` and
    ``lease_expires_at`` timezone-aware datetimes (``TypeError`` for another type, ``ValueError``
    for a naive one: its zone is unknown, and taking it as UTC would move the cutoff, so the rows in
    scope, by the caller's offset); ``shards`` ``JobShard`` values. Each error names the field
    (``MigrationJob.cutoff``). An aware time of another offset is kept as given (the same instant).
    """

    job_id: str
    company_sso_id: str
    tenant: str
    status: str
    cutoff: dt.datetime = field(validator=aware_time())
    created_at: dt.datetime = field(validator=aware_time())
    updated_at: dt.datetime = field(validator=aware_time())
    first_audit_id: int = 0
    max_audit_id: int = 0
    last_audit_id: int = 0
    tally: Tally = field(factory=Tally, validator=typed(Tally))
    date_range_start: dt.datetime | None = field(default=None, validator=aware_time(optional=True))
    finished_at: dt.datetime | None = field(default=None, validator=aware_time(optional=True))
    halted_reason: str | None = None
    lease_owner: str | None = None
    lease_expires_at: dt.datetime | None = field(default=None, validator=aware_time(optional=True))
    enrichment: EnrichmentTally = field(factory=EnrichmentTally, validator=typed(EnrichmentTally))
    """What enrichment did to the association logs of the batches behind the cursor (not outcomes)."""
    halt_basis: Tally = field(factory=Tally, validator=typed(Tally))
    """The tally when the halt rule last started counting (the trigger, or a ``--resume``)."""
    shards: tuple[JobShard, ...] = ()
    """Empty for an unsharded job; else ordered by ``shard``, their ranges disjoint and contiguous."""
    logs_deleted: int | None = None
    """How many migrated logs rollback deleted for this job: counted chunk by chunk while a rollback
    deletes (``JobStore.renew_rollback``), None before any rollback."""
    rollback_unfinished: int | None = None
    """While the job is ``rolling_back``: the size of the chunk a rollback recorded in flight and no
    rollback has counted yet (``JobStore.renew_rollback``'s ``sending``; for a whole-account delete,
    the account's migrated logs counted before it). Up to that many logs may be gone beyond
    ``logs_deleted``: a rollback ``kill -9``-ed mid-chunk leaves it so until the next one adopts and
    counts the chunk. None when no chunk is in flight uncounted. Derived by the store from what it
    holds each time it reads the job, never written by a caller (a store ignores it on a save)."""
    rows_at_cursor: int = 0
    """How many rows of the id ``last_audit_id`` are counted, where a source may hand one id more
    than once (a file's repeats, ``ports.RowsSetAside``): a step may end among them, and a resume
    reads that id again and passes over this many of its rows. 0 for every other source (ids are
    unique: the cursor covers its id), for a job stored before the field (the cursor then covered
    all of its id's rows), and for a sharded job, whose shards keep their own
    (``JobShard.rows_at_cursor``): its cursor is their watermark."""
    source_mark: str | None = None
    """What the source held when the job was made (``ports.SourceMarks``: an export file's size and
    digest), checked by each run before it reads a row, its shards' runs too: a source rewritten
    since is ``SourceChanged``, not read on from the cursor. Set by ``new_job``; grown by a run over
    rows added since before it hands one over (``JobStore.grow_source_mark``), else never changed.
    None for a source that keeps none (a database), a dry run's job (run in the process that made
    it), and a job stored before the field (not checked)."""
    mapping_mark: str | None = None
    """The mark of the mapping its trigger ran under (``config.mapping_mark``: a digest of the parsed
    ``CRM_AUDIT_MAPPING_CONFIG``, or of the bundled default), checked by each run, shard run and
    verify before anything is written: rules from another mapping are ``MappingChanged``, so one
    account's logs are never written under two mappings. Set by ``new_job`` (``trigger``; ``--fresh``
    takes a new one); never changed by a run or a resume. None for a job stored before the field
    (not checked)."""
    not_resent_at: dt.datetime | None = field(default=None, validator=aware_time(optional=True))
    """When, on the store's clock, a worker's task of this job found the broker would not take its
    re-send (a retry, a wait for a lease, a hand-back: Celery's ``task_not_resent``), recorded by the
    task (``JobStore.note_not_resent``) as it hands its message back unacknowledged; cleared when a
    runner next takes the job's lease (a shard's own: ``JobShard.not_resent_at``). While it is set and
    no lease is held, the job waits for that message to come back, or for ``enqueue`` should the broker
    have lost it (docs/scale-out.md). None for a job stored before the field."""

    def __attrs_post_init__(self) -> None:
        if not self.shards:
            return
        strays = [type(shard).__name__ for shard in self.shards if not isinstance(shard, JobShard)]
        if strays:
            raise TypeError(f"a job's shards must be JobShard values, got {', '.join(strays)}")
        # A sharded job's counts and cursor are its shards': derived here, so no reader and no
        # store can see them disagree (whatever the top-level fields were built with).
        tally, enrichment, basis = Tally(), EnrichmentTally(), Tally()
        for shard in self.shards:
            tally, enrichment, basis = (
                tally + shard.tally,
                enrichment + shard.enrichment,
                basis + shard.halt_basis,
            )
        object.__setattr__(self, "tally", tally)
        object.__setattr__(self, "enrichment", enrichment)
        object.__setattr__(self, "halt_basis", basis)
        object.__setattr__(self, "last_audit_id", _watermark(self.shards))
        object.__setattr__(self, "rows_at_cursor", 0)

    def is_behind(self, audit_id: int) -> bool:
        """Whether the run has passed ``audit_id``: at or below ``last_audit_id`` (every id of an
        unsharded job up to its cursor, every id of a sharded one up to its first unfinished shard's
        cursor), or, in a sharded job, behind its own shard's cursor (``after_id < id <=
        last_audit_id``): a halted or unfinished shard's rows past the watermark were run too. Of a
        file's id repeated at a cursor (the job's or a shard's), only the first ``rows_at_cursor``
        rows were counted: this tells ids, not rows (verify tells them apart: ``usecases._verify_cursor``)."""
        if audit_id <= self.last_audit_id:
            return True
        return any(shard.after_id < audit_id <= shard.last_audit_id for shard in self.shards)

    @property
    def progress_pct(self) -> float:
        """Share of the in-scope id range behind the cursor(s), 0–100 (100 once completed).

        A sharded job sums its shards: the ids behind every shard's cursor over the whole range.
        """
        if self.status == COMPLETED:
            return 100.0
        if self.shards:
            done = total = 0
            for shard in self.shards:
                behind, span = shard.rows_span(self.max_audit_id)
                done, total = done + behind, total + span
            return round(100.0 * done / total, 2) if total > 0 else 0.0
        span = self.max_audit_id - self.first_audit_id + 1
        if span <= 0 or self.last_audit_id < self.first_audit_id:
            return 0.0
        done = min(self.last_audit_id, self.max_audit_id) - self.first_audit_id + 1
        return round(100.0 * done / span, 2)

    @property
    def failure_rate(self) -> float:
        return self.tally.failure_rate


def _watermark(shards: tuple[JobShard, ...]) -> int:
    """Every in-scope id up to this one is behind a cursor: the first unfinished shard's cursor."""
    for shard in shards:
        if shard.status != COMPLETED:
            return shard.last_audit_id
    last = shards[-1]
    return last.last_audit_id if last.until_id is None else max(last.last_audit_id, last.until_id)
