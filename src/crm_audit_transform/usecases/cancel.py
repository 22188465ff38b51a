"""Cancel: an in-progress job becomes ``cancelled``, its cursor kept; a live runner stops at its next batch.

The status changes by compare-and-set (``JobStore.transition`` from ``in_progress``), and the
runner's per-batch progress write only lands while the job is in progress, so a live runner finds
the job cancelled at its next batch and stops; that batch's logs are written but its cursor is
not, and a later ``--resume`` replays it harmlessly (the counting rule of ``run.py``). The lease
holder and expiry are kept, so ``status`` still tells whether that runner is alive.

Only the status and its end are written (``transition(..., status_only=True)``): cursor, counts,
enrichment, halt basis and lease stay as stored in that same write, so a runner's progress saved
between the cancel's read and its write is kept, never moved back to the copy the cancel read.
"""

from __future__ import annotations

import attrs

from ..errors import JobNotFound
from ..jobs import CANCELLED, IN_PROGRESS, MigrationJob
from ..ports import Clock, JobStore


def cancel(company_sso_id: str, *, jobs: JobStore, clock: Clock, reason: str | None = None) -> MigrationJob:
    """Cancel the account's in-progress job and return it; ``JobNotFound`` when none is in progress.

    ``reason`` is stored as the job's ``halted_reason`` (``status`` shows it): a run that finds the
    account's feature flag off cancels with ``"flag_disabled"``; an operator's cancel gives none.
    """
    for _ in range(3):
        job = jobs.latest(company_sso_id)
        if job is None or job.status != IN_PROGRESS:
            state = "no job" if job is None else f"job {job.job_id} is {job.status}"
            raise JobNotFound(f"company {company_sso_id} has no job in progress to cancel ({state})")
        now = clock.now()
        cancelled = jobs.transition(
            attrs.evolve(job, status=CANCELLED, updated_at=now, finished_at=now, halted_reason=reason),
            {IN_PROGRESS},
            status_only=True,
        )
        if cancelled is not None:
            return cancelled
        # The job finished or halted between the read and the write: look again.
    raise JobNotFound(f"company {company_sso_id}'s job kept changing status: nothing cancelled")
