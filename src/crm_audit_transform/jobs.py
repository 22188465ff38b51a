"""The durable migration job of one account (``crm_activity_log_migration_jobs``)."""

from __future__ import annotations

import datetime as dt
from typing import Final

from attrs import field, frozen

from .enrichment_tally import EnrichmentTally
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
STOPPED: Final = frozenset({HALTED, CANCELLED})
"""Statuses a re-trigger must choose for: ``resume`` (keep what was written) or ``fresh``."""


@frozen
class MigrationJob:
    """One account's migration: the resume cursor, the counts, and who may run it now.

    ``last_audit_id`` only moves after the batch it covers is written, so a crash at any point
    resumes without a gap; the idempotent write makes the replayed batch harmless.
    """

    job_id: str
    company_sso_id: str
    tenant: str
    status: str
    cutoff: dt.datetime
    created_at: dt.datetime
    updated_at: dt.datetime
    first_audit_id: int = 0
    max_audit_id: int = 0
    last_audit_id: int = 0
    tally: Tally = field(factory=Tally)
    date_range_start: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    halted_reason: str | None = None
    lease_owner: str | None = None
    lease_expires_at: dt.datetime | None = None
    enrichment: EnrichmentTally = field(factory=EnrichmentTally)
    """What enrichment did to the association logs of the batches behind the cursor (not outcomes)."""
    halt_basis: Tally = field(factory=Tally)
    """The tally when the halt rule last started counting (the trigger, or a ``--resume``)."""

    @property
    def progress_pct(self) -> float:
        """Share of the in-scope id range behind the cursor, 0–100 (100 once completed)."""
        if self.status == COMPLETED:
            return 100.0
        span = self.max_audit_id - self.first_audit_id + 1
        if span <= 0 or self.last_audit_id < self.first_audit_id:
            return 0.0
        done = min(self.last_audit_id, self.max_audit_id) - self.first_audit_id + 1
        return round(100.0 * done / span, 2)

    @property
    def failure_rate(self) -> float:
        return self.tally.failure_rate
