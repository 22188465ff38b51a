"""Trigger: the guards that decide whether an account's migration may start, then the job row.

Guards run in a fixed order and the first refusal wins: migration 035's indexes missing →
``INDEXES_MISSING`` (nothing is written without them); flag off → ``FLAG_DISABLED``; Phase-A
coverage below the threshold → ``contacts_not_migrated`` (no job row is written); a job in
progress → ``JOB_ALREADY_RUNNING``; a completed job → ``ALREADY_COMPLETED``. A halted or
rolled-back job does not block a new one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Final

from attrs import frozen

from ..errors import AlreadyCompleted, ContactsNotMigrated, FlagDisabled, JobAlreadyRunning
from ..jobs import COMPLETED, IN_PROGRESS, MigrationJob
from ..ports import AuditSource, Clock, ContactDirectory, FeatureFlags, IndexState, JobStore, PeopleCounter
from .safety import require_indexes

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


def contact_coverage(
    company_sso_id: str, tenant: str, contacts: ContactDirectory, people: PeopleCounter
) -> float:
    """Share of the CRM's people that already have a CDP contact with ``crm_data.id`` (1.0 if none)."""
    total = people.count_people(tenant)
    if total <= 0:
        return 1.0
    return min(1.0, contacts.count_with_crm_id(company_sso_id) / total)


def check_guards(
    company_sso_id: str,
    tenant: str,
    ports: TriggerPorts,
    *,
    coverage_threshold: float = DEFAULT_COVERAGE_THRESHOLD,
) -> None:
    """Raise the first guard that refuses; return quietly when a job may start."""
    require_indexes(ports.indexes)
    if not ports.flags.is_enabled(company_sso_id):
        raise FlagDisabled(f"the CRM audit migration is not enabled for company {company_sso_id}")
    coverage = contact_coverage(company_sso_id, tenant, ports.contacts, ports.people)
    if coverage < coverage_threshold:
        raise ContactsNotMigrated(
            f"only {coverage:.2%} of tenant {tenant}'s people have a CDP contact "
            f"(at least {coverage_threshold:.2%} needed): finish the contact backfill first"
        )
    latest = ports.jobs.latest(company_sso_id)
    if latest is not None and latest.status == IN_PROGRESS:
        raise JobAlreadyRunning(f"company {company_sso_id} already has job {latest.job_id} in progress")
    if latest is not None and latest.status == COMPLETED:
        raise AlreadyCompleted(f"company {company_sso_id} was already migrated by job {latest.job_id}")


def new_job(
    company_sso_id: str,
    tenant: str,
    *,
    source: AuditSource,
    scope: Sequence[str],
    now: dt.datetime,
    date_range_start: dt.datetime | None = None,
) -> MigrationJob:
    """An in-progress job whose cutoff is ``date_range_start`` or the oldest in-scope audit."""
    bounds = source.scope_bounds(tenant, scope, date_range_start)
    cutoff = date_range_start or (bounds.oldest_created_at if bounds else now)
    first, last = (bounds.min_id, bounds.max_id) if bounds else (0, 0)
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
    )


def trigger(
    company_sso_id: str,
    tenant: str,
    ports: TriggerPorts,
    *,
    scope: Sequence[str],
    date_range_start: dt.datetime | None = None,
    coverage_threshold: float = DEFAULT_COVERAGE_THRESHOLD,
) -> MigrationJob:
    """Run the guards, then create the job; a race with another trigger ends in ``JOB_ALREADY_RUNNING``."""
    check_guards(company_sso_id, tenant, ports, coverage_threshold=coverage_threshold)
    job = new_job(
        company_sso_id,
        tenant,
        source=ports.source,
        scope=scope,
        now=ports.clock.now(),
        date_range_start=date_range_start,
    )
    ports.jobs.create(job)
    return job
