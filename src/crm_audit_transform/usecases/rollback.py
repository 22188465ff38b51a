"""Rollback: delete this account's migrated logs (``source_tag = crm_migration``) and nothing else.

Native logs carry no ``external_id`` and another source tag, so they are never touched. Running
it twice deletes nothing the second time. It is refused while a job is in progress, because the
runner would write behind it; afterwards the job is marked ``rolled_back`` so it can be triggered
again.
"""

from __future__ import annotations

import attrs
from attrs import frozen

from ..errors import JobAlreadyRunning
from ..jobs import IN_PROGRESS, ROLLED_BACK
from ..ports import ActivityLogStore, Clock, JobStore


@frozen
class RollbackResult:
    company_sso_id: str
    deleted: int
    job_id: str | None = None


def rollback(company_sso_id: str, *, jobs: JobStore, logs: ActivityLogStore, clock: Clock) -> RollbackResult:
    """Delete the account's migrated logs; raise ``JobAlreadyRunning`` while a job is in progress."""
    job = jobs.latest(company_sso_id)
    if job is not None and job.status == IN_PROGRESS:
        raise JobAlreadyRunning(
            f"company {company_sso_id} has job {job.job_id} in progress: stop it before rolling back"
        )
    deleted = logs.delete_migrated(company_sso_id)
    if job is not None and job.status != ROLLED_BACK:
        jobs.save(attrs.evolve(job, status=ROLLED_BACK, updated_at=clock.now()))
    return RollbackResult(company_sso_id, deleted, job.job_id if job else None)
