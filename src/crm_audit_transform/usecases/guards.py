"""Trigger: the guards that decide whether an account's migration may start, then the job row.

Guards run in a fixed order and the first refusal wins: migration 035's indexes missing →
``INDEXES_MISSING`` (nothing is written without them); flag off → ``FLAG_DISABLED``; Phase-A
coverage below the threshold → ``contacts_not_migrated`` (no job row is written); a job in
progress (or a rollback under way) → ``JOB_ALREADY_RUNNING``; a completed job →
``ALREADY_COMPLETED``. A rolled-back job does not block a new one.

**Re-triggering after a halt or a cancel is an explicit choice** (``restart``): without one the
trigger refuses ``RESUME_OR_FRESH``. ``resume`` puts the stopped job back in progress, keeping its
cursor, counts and the logs it wrote; the halt rule counts afresh from there (``halt_basis``).
``fresh`` rolls the account back first (``rollback``), then creates a new job — so logs written
under an old mapping are written again under the fixed one. ``fresh`` also re-migrates a completed
account.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Final

import attrs
from attrs import frozen

from ..domain import ANY_TIME, ScopeBounds
from ..errors import (
    AlreadyCompleted,
    ContactsNotMigrated,
    FlagDisabled,
    JobAlreadyRunning,
    JobNotFound,
    LeaseHeld,
    MappingChanged,
    ResumeOrFresh,
    TenantMismatch,
)
from ..jobs import COMPLETED, IN_PROGRESS, ROLLING_BACK, STOPPED, JobShard, MigrationJob
from ..ports import (
    AuditEnds,
    AuditSource,
    AuditSplitter,
    Clock,
    ContactDirectory,
    FeatureFlags,
    IndexState,
    JobStore,
    MigratedLogs,
    PeopleCounter,
    SourceMarks,
)
from .rollback import RollbackPorts, rollback
from .safety import require_indexes
from .settings import RunSettings
from .shards import split_shards

RESUME: Final = "resume"
FRESH: Final = "fresh"

DEFAULT_COVERAGE_THRESHOLD: Final = 0.99


@frozen
class TriggerPorts:
    """What the trigger reads and writes."""

    flags: FeatureFlags
    contacts: ContactDirectory
    people: PeopleCounter
    jobs: JobStore
    source: AuditSource
    clock: Clock
    indexes: IndexState
    migrated: MigratedLogs | None = None
    """Needed by ``restart="fresh"`` only: the rollback it starts with."""
    rollback_lease: dt.timedelta = RunSettings().lease_ttl
    """How long that rollback's hold on the job lives unless it finishes (``RollbackPorts.lease``)."""


COVERAGE_PAGE: Final = 1000
"""People ids per contact lookup when the coverage guard counts covered people."""


def contact_coverage(
    company_sso_id: str, tenant: str, contacts: ContactDirectory, people: PeopleCounter
) -> float:
    """Share of the CRM's people that already have a CDP contact with ``crm_data.id`` (1.0 if none).

    Counted person by person — the tenant's people ids in keyset pages of ``COVERAGE_PAGE``, each
    page one batched contact lookup — not as contacts over people: contacts of people since deleted
    from the CRM (or duplicated) would otherwise cover for people who have none, and the run would
    then skip their rows as ``contact_not_found``.
    """
    total = people.count_people(tenant)
    if total <= 0:
        return 1.0
    covered, after_id = 0, -(2**63)
    while True:
        page = people.person_ids(tenant, after_id=after_id, limit=COVERAGE_PAGE)
        if not page:
            break
        covered += len(contacts.contacts_by_crm_ids(company_sso_id, page))
        after_id = page[-1]
        if len(page) < COVERAGE_PAGE:
            break
    return min(1.0, covered / total)


def check_guards(
    company_sso_id: str,
    tenant: str,
    ports: TriggerPorts,
    *,
    coverage_threshold: float = DEFAULT_COVERAGE_THRESHOLD,
    restart: str | None = None,
) -> MigrationJob | None:
    """Raise the first guard that refuses; else return the job a ``restart`` acts on (or None)."""
    require_indexes(ports.indexes)
    if not ports.flags.is_enabled(company_sso_id):
        raise FlagDisabled(f"the CRM audit migration is not enabled for company {company_sso_id}")
    coverage = contact_coverage(company_sso_id, tenant, ports.contacts, ports.people)
    if coverage < coverage_threshold:
        raise ContactsNotMigrated(
            f"only {coverage:.2%} of tenant {tenant}'s people have a CDP contact "
            f"(at least {coverage_threshold:.2%} needed): finish the contact backfill first"
        )
    if restart not in (None, RESUME, FRESH):
        raise ValueError(f"restart must be None, {RESUME!r} or {FRESH!r}, not {restart!r}")
    latest = ports.jobs.latest(company_sso_id)
    if latest is None:
        if restart == RESUME:
            raise JobNotFound(f"company {company_sso_id} has no job to resume")
        return None
    if latest.status == IN_PROGRESS:
        raise JobAlreadyRunning(f"company {company_sso_id} already has job {latest.job_id} in progress")
    if latest.status == ROLLING_BACK:
        raise JobAlreadyRunning(
            f"company {company_sso_id} is being rolled back (job {latest.job_id}): run rollback again "
            "to finish it if it ended (one killed holds the job until its hold expires: status shows it)"
        )
    if latest.status == COMPLETED and restart != FRESH:
        raise AlreadyCompleted(f"company {company_sso_id} was already migrated by job {latest.job_id}")
    if latest.status in STOPPED and restart is None:
        raise ResumeOrFresh(
            f"company {company_sso_id}'s job {latest.job_id} is {latest.status}: re-trigger with --resume "
            "(keep what was written, carry on from the cursor) or --fresh (roll back, then start over)"
        )
    if restart == RESUME and latest.status not in STOPPED:
        raise JobNotFound(
            f"company {company_sso_id}'s job {latest.job_id} is {latest.status}: nothing to resume"
        )
    if restart == RESUME and latest.tenant != tenant:
        raise TenantMismatch(f"job {latest.job_id} migrates tenant {latest.tenant!r}, not {tenant!r}")
    return latest if restart is not None else None


def new_job(
    company_sso_id: str,
    tenant: str,
    *,
    source: AuditSource,
    scope: Sequence[str],
    now: dt.datetime,
    date_range_start: dt.datetime | None = None,
    shards: int = 1,
    every_row: bool = False,
    mapping_mark: str | None = None,
) -> MigrationJob:
    """An in-progress job whose cutoff is ``date_range_start`` or the oldest in-scope audit.

    ``shards`` > 1 splits the in-scope ids into that many shards (``split_shards``), balanced by
    row count when ``source`` is an ``AuditSplitter``; an account with no in-scope rows, or too
    few distinct ids, gets fewer (none below two: an unsharded job).

    ``every_row`` (the dry run's job, unsharded, with no ``date_range_start``): when the source is
    an ``AuditEnds`` that can tell its first and last in-scope ids, they are all it is asked, and
    the cutoff is ``ANY_TIME`` instead of the oldest audit. The pages are the same — no in-scope
    row is older than the oldest — and the source is not read end to end before the run.

    A source that can mark what it holds (``ports.SourceMarks``: an export file) is marked first,
    and the job keeps the mark (``source_mark``), which every run checks before it reads a row: a
    file rewritten between two runs in different processes is ``SourceChanged``, never read on
    from the cursor as the same file. Not the ``every_row`` job: the dry run runs it in the process
    that made it, and its source is not read end to end before the run.

    ``mapping_mark`` (the rules' ``Transformer.mapping_mark``) is kept as the job's: each run, shard
    run and verify refuses rules from another mapping (``MappingChanged``).

    ``date_range_start`` is taken to its millisecond (floored): a job store keeps its cutoff as a
    BSON date, whole milliseconds, and the run (from the scope's first id) and verify (from the
    stored cutoff) must read the same rows. A row earlier in that millisecond is in scope.
    """
    mark = source.source_mark() if not every_row and isinstance(source, SourceMarks) else None
    if date_range_start is not None:
        micros = date_range_start.microsecond
        date_range_start = date_range_start.replace(microsecond=micros - micros % 1000)
    ends = (
        source.scope_ends(tenant, scope)
        if every_row and date_range_start is None and shards == 1 and isinstance(source, AuditEnds)
        else None
    )
    if ends is not None:
        bounds: ScopeBounds | None = ScopeBounds(ends[0], ends[1], ANY_TIME)
        cutoff = ANY_TIME
    else:
        bounds = source.scope_bounds(tenant, scope, date_range_start)
        cutoff = date_range_start or (bounds.oldest_created_at if bounds else now)
    first, last = (bounds.min_id, bounds.max_id) if bounds else (0, 0)
    parts: tuple[JobShard, ...] = ()
    if shards > 1 and bounds is not None:
        cuts = (
            source.id_quantiles(tenant, scope, date_range_start, shards)
            if isinstance(source, AuditSplitter)
            else None
        )
        parts = split_shards(bounds, shards, cuts)
        if len(parts) < 2:
            parts = ()
    return MigrationJob(
        job_id=f"crm-migration:{company_sso_id}:{now:%Y%m%dT%H%M%S%fZ}",
        company_sso_id=company_sso_id,
        tenant=tenant,
        status=IN_PROGRESS,
        cutoff=cutoff,
        created_at=now,
        updated_at=now,
        first_audit_id=first,
        max_audit_id=last,
        # The cursor starts just before the first in-scope row, below zero too: an audit id <= 0
        # is a row like any other (restored or hand-written data), migrated and counted.
        last_audit_id=first - 1 if bounds else 0,
        date_range_start=date_range_start,
        shards=parts,
        source_mark=mark,
        mapping_mark=mapping_mark,
    )


def trigger(
    company_sso_id: str,
    tenant: str,
    ports: TriggerPorts,
    *,
    scope: Sequence[str],
    date_range_start: dt.datetime | None = None,
    coverage_threshold: float = DEFAULT_COVERAGE_THRESHOLD,
    restart: str | None = None,
    shards: int = 1,
    mapping_mark: str | None = None,
) -> MigrationJob:
    """Run the guards, then create the job (or resume or start afresh, see ``restart``).

    ``shards`` > 1 splits a new job into id ranges (``new_job``); a resumed job keeps its own.
    ``mapping_mark`` (the rules' ``Transformer.mapping_mark``) is kept by a new job (a fresh one
    too); a resume keeps the job's and refuses another (``MappingChanged``, nothing written): its
    run would refuse it anyway.
    A race with another trigger ends in ``JOB_ALREADY_RUNNING``.

    ``ValueError`` (nothing read or written) for a ``date_range_start`` after ``ports.clock.now()``:
    no row would be in scope, so the job would complete at once with none migrated and leave the
    account ``ALREADY_COMPLETED``; the CLI's option and the HTTP route refuse it first.
    """
    if date_range_start is not None and date_range_start > ports.clock.now():
        raise ValueError(f"date_range_start {date_range_start.isoformat()} is in the future")
    previous = check_guards(
        company_sso_id, tenant, ports, coverage_threshold=coverage_threshold, restart=restart
    )
    if previous is not None and restart == RESUME:
        if previous.mapping_mark not in (None, mapping_mark) and mapping_mark is not None:
            raise MappingChanged(previous.job_id, previous.mapping_mark, mapping_mark)
        return _resume(previous, ports)
    if previous is not None and restart == FRESH:
        if ports.migrated is None:
            raise ValueError("restart='fresh' needs TriggerPorts.migrated to roll the account back")
        rollback(company_sso_id, RollbackPorts(ports.jobs, ports.migrated, ports.clock, ports.rollback_lease))
    job = new_job(
        company_sso_id,
        tenant,
        source=ports.source,
        scope=scope,
        now=ports.clock.now(),
        date_range_start=date_range_start,
        shards=shards,
        mapping_mark=mapping_mark,
    )
    ports.jobs.create(job)
    return job


def _resume(job: MigrationJob, ports: TriggerPorts) -> MigrationJob:
    """The stopped job back in progress: cursor and counts kept, the halt rule counting from here.

    Refused (``LeaseHeld``, nothing written) while the job or one of its shards holds a lease live
    on the store's clock: a cancelled runner keeps its lease until its next progress write, after
    inserting the batch in flight. Clearing that lease would hide the runner from rollback's fence
    (its batch would land after the delete) and let a second runner start beside it. The check is
    part of the write itself (``JobStore.transition(..., unleased=True, resumed=True)``).

    The halt basis is the counts the job holds *at that write*: the store writes the resumed job only
    while its counts and cursors (the job's, every shard's) are still the ones read here, so a
    repair's count saved between the read and the write is neither undone nor counted as the resumed
    run's rows. When they moved, the job is read again and the resume built anew (three tries).
    """
    for _ in range(3):
        resumed = attrs.evolve(
            job,
            status=IN_PROGRESS,
            updated_at=ports.clock.now(),
            finished_at=None,
            halted_reason=None,
            lease_owner=None,
            lease_expires_at=None,
            not_resent_at=None,  # a task's, before the stop: this job awaits a new run, not that message
            halt_basis=job.tally,
            shards=tuple(_resumed_shard(shard) for shard in job.shards),
        )
        try:
            stored = ports.jobs.transition(resumed, STOPPED, unleased=True, resumed=True)
        except LeaseHeld as exc:
            raise LeaseHeld(
                f"job {job.job_id} is {job.status}, but its runner has not stopped yet: its lease is live "
                f"({exc}). A runner stops at its next batch and hands its lease back (one that died leaves "
                "it to expire, lease_seconds at most): resume once status shows no lease"
            ) from exc
        if stored is not None:
            return stored
        again = ports.jobs.latest(job.company_sso_id)
        if again is None or again.job_id != job.job_id or again.status not in STOPPED:
            break
        job = again  # the same stopped job, its counts moved since the read (a repair): resume that
    raise JobAlreadyRunning(f"job {job.job_id} changed meanwhile: look at its status and try again")


def _resumed_shard(shard: JobShard) -> JobShard:
    """A shard back to work after its job's resume; a completed shard stays completed."""
    if shard.status == COMPLETED:
        return shard
    return attrs.evolve(
        shard,
        status=IN_PROGRESS,
        halted_reason=None,
        finished_at=None,
        lease_owner=None,
        lease_expires_at=None,
        not_resent_at=None,
        halt_basis=shard.tally,
    )
