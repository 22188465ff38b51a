"""Status of an account's migration, as ops, the S2S API and the web indicator read it.

``accuracy_pct`` (S2S only) is the share of processed rows that reached a deliberate outcome —
migrated with its true actor, or skipped for a named reason — rather than failing or having its
actor degraded by a USMAN outage: ``100 × (processed − failed − actors_degraded) / processed``.
``actors_degraded`` counts those degraded actors. ``lease_owner`` / ``lease_expires_at`` tell a
live runner (a lease in the future, renewed every batch) from a dead one (an expired lease).
A sharded job (docs/scale-out.md) shows each shard's range, status, cursor, counts and lease
under ``shards`` (an empty list for an unsharded job): its runners hold the shards' leases, not
the job's. ``logs_deleted`` is how many migrated logs rollback deleted (counted chunk by chunk while
it deletes; None before any rollback); ``logs_in_unfinished_chunk``, while the job is rolling back,
how many more may be gone already in a chunk no rollback has counted yet (one in flight, or one
whose rollback was killed: the next rollback adopts and counts it), else None
(``MigrationJob.rollback_unfinished``). The two never count a log twice: once the chunk is counted
into ``logs_deleted`` it is no longer unfinished.
``not_resent_at`` (the job's, and each shard's) is when a worker's task of the job in progress
could not send itself again and handed its message back to the broker (``MigrationJob.not_resent_at``):
set while the job (shard) is in progress and no runner has taken its lease since, else None.
``enrichment`` (ops and S2S) counts what association enrichment did; it is not part of the outcome
counts and does not move the failure rate.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, NewType, Required, TypedDict

import attrs
from attrs import field, frozen

from ..enrichment_tally import EnrichmentCounts, EnrichmentTally
from ..jobs import IN_PROGRESS, NOT_STARTED, JobShard, JobStatusName, MigrationJob, status_name
from ..ports import JobStore
from ..tally import Tally

IsoTime = NewType("IsoTime", str)
"""A UTC instant as ISO 8601 text ending in ``Z`` (``2026-01-02T03:04:05Z``), as the answers write it."""


class ShardDocument(TypedDict):
    """One shard of a sharded job: its id range ``(after_id, until_id]``, status, cursor, counts and lease."""

    shard: int
    status: str
    after_id: int
    until_id: int | None
    last_audit_id: int
    records_processed: int
    records_migrated: int
    halted_reason: str | None
    lease_owner: str | None
    lease_expires_at: IsoTime | None
    not_resent_at: IsoTime | None


class StatusDocument(TypedDict, total=False):
    """Only company_sso_id and status while not_started; every other field once a job exists."""

    company_sso_id: Required[str]
    status: Required[JobStatusName]
    job_id: str | None
    tenant: str | None
    progress_pct: float
    records_processed: int
    records_migrated: int
    records_skipped: int
    records_failed: int
    skipped: dict[str, int]
    failed: dict[str, int]
    status_fallthrough: int
    actors_degraded: int
    failure_rate: float
    accuracy_pct: float
    last_audit_id: int
    created_at: IsoTime | None
    updated_at: IsoTime | None
    finished_at: IsoTime | None
    halted_reason: str | None
    lease_owner: str | None
    lease_expires_at: IsoTime | None
    logs_deleted: int | None
    logs_in_unfinished_chunk: int | None
    not_resent_at: IsoTime | None
    shards: list[ShardDocument]
    enrichment: EnrichmentCounts


@frozen
class MigrationStatus:
    """A job's progress and counts; ``status`` is ``not_started`` when the account has no job."""

    company_sso_id: str
    status: str
    progress_pct: float = 0.0
    tally: Tally = field(factory=Tally)
    last_audit_id: int = 0
    job_id: str | None = None
    tenant: str | None = None
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    halted_reason: str | None = None
    enrichment: EnrichmentTally = field(factory=EnrichmentTally)
    lease_owner: str | None = None
    lease_expires_at: dt.datetime | None = None
    logs_deleted: int | None = None
    shards: tuple[JobShard, ...] = ()
    logs_in_unfinished_chunk: int | None = None
    not_resent_at: dt.datetime | None = None

    @property
    def failure_rate(self) -> float:
        return round(self.tally.failure_rate, 6)

    @property
    def accuracy_pct(self) -> float:
        return round(100.0 * self.tally.accuracy_rate, 2)

    @classmethod
    def of(cls, job: MigrationJob) -> MigrationStatus:
        return cls(
            company_sso_id=job.company_sso_id,
            status=job.status,
            progress_pct=job.progress_pct,
            tally=job.tally,
            last_audit_id=job.last_audit_id,
            job_id=job.job_id,
            tenant=job.tenant,
            created_at=job.created_at,
            updated_at=job.updated_at,
            finished_at=job.finished_at,
            halted_reason=job.halted_reason,
            enrichment=job.enrichment,
            lease_owner=job.lease_owner,
            lease_expires_at=job.lease_expires_at,
            logs_deleted=job.logs_deleted,
            logs_in_unfinished_chunk=job.rollback_unfinished,
            # A mark left on a job that has ended since (a copy's, while another runner finished
            # it) says nothing any more.
            not_resent_at=job.not_resent_at if job.status == IN_PROGRESS else None,
            shards=tuple(
                shard
                if shard.not_resent_at is None or (job.status == IN_PROGRESS and shard.status == IN_PROGRESS)
                else attrs.evolve(shard, not_resent_at=None)
                for shard in job.shards
            ),
        )

    def as_dict(self) -> StatusDocument:
        """JSON-ready document, ``accuracy_pct`` included (the tenant-facing route sends its own subset)."""
        if self.status == NOT_STARTED:
            return {"company_sso_id": self.company_sso_id, "status": status_name(self.status)}
        doc: StatusDocument = {
            "company_sso_id": self.company_sso_id,
            "status": status_name(self.status),
            "job_id": self.job_id,
            "tenant": self.tenant,
            "progress_pct": self.progress_pct,
            "records_processed": self.tally.processed,
            "records_migrated": self.tally.migrated,
            "records_skipped": self.tally.skipped_total,
            "records_failed": self.tally.failed_total,
            "skipped": dict(self.tally.skipped),
            "failed": dict(self.tally.failed),
            "status_fallthrough": self.tally.fallthrough,
            "actors_degraded": self.tally.actors_degraded,
            "failure_rate": self.failure_rate,
            "last_audit_id": self.last_audit_id,
            "created_at": iso_time(self.created_at),
            "updated_at": iso_time(self.updated_at),
            "finished_at": iso_time(self.finished_at),
            "halted_reason": self.halted_reason,
            "lease_owner": self.lease_owner,
            "lease_expires_at": iso_time(self.lease_expires_at),
            "logs_deleted": self.logs_deleted,
            "logs_in_unfinished_chunk": self.logs_in_unfinished_chunk,
            "not_resent_at": iso_time(self.not_resent_at),
            "shards": [_shard_doc(shard) for shard in self.shards],
            "enrichment": self.enrichment.as_dict(),
            "accuracy_pct": self.accuracy_pct,
        }
        return doc


def _shard_doc(shard: JobShard) -> ShardDocument:
    return {
        "shard": shard.shard,
        "status": shard.status,
        "after_id": shard.after_id,
        "until_id": shard.until_id,
        "last_audit_id": shard.last_audit_id,
        "records_processed": shard.tally.processed,
        "records_migrated": shard.tally.migrated,
        "halted_reason": shard.halted_reason,
        "lease_owner": shard.lease_owner,
        "lease_expires_at": iso_time(shard.lease_expires_at),
        "not_resent_at": iso_time(shard.not_resent_at),
    }


def iso_time(value: dt.datetime | None) -> IsoTime | None:
    """``value`` (UTC) as the answers write it; None for None."""
    return IsoTime(value.isoformat().replace("+00:00", "Z")) if value else None


def migration_status(company_sso_id: str, jobs: JobStore) -> MigrationStatus:
    """The latest job's status, or ``not_started``."""
    job = jobs.latest(company_sso_id)
    if job is None:
        return MigrationStatus(company_sso_id=company_sso_id, status=NOT_STARTED)
    return MigrationStatus.of(job)


def report_counts(tally: Tally) -> Mapping[str, Any]:
    """The dry-run report shape: processed, migrated, skipped and failed per reason."""
    return {
        "processed": tally.processed,
        "migrated": tally.migrated,
        "skipped": dict(tally.skipped),
        "failed": dict(tally.failed),
        "actors_degraded": tally.actors_degraded,
    }
