"""The S2S write route (``/migrate``) against a rollback: refused before, undone after.

``run`` is fenced by its lease; ``/migrate`` holds none — its callers post many batches at once,
alongside a run, and an exclusive lease would refuse all but one. So the route keeps a rollback's
promise ("the account's migrated logs are gone") in two steps instead:

1. **Before the write** (``refuse_rolled_back``): refused while the account's latest job is
   ``rolling_back`` (``JobAlreadyRunning``, as ``trigger`` and ``run`` refuse) or ``rolled_back``
   (``JobNotRunnable``, as ``run`` refuses a rolled-back job; a new ``trigger`` opens it again).
2. **After the write** (``settle_after_write``): the check and the insert are not one atomic step,
   so a batch that passed step 1 just before a rollback's hold may land after its delete. When the
   batch inserted anything, the latest job is read again: if it is now ``rolling_back`` or
   ``rolled_back``, the batch deletes **its own** logs — the ones it inserted, by external id, and
   no other — and is refused (``JobNotRunnable``): nothing of it is kept, whether the rollback's
   delete had reached them or not. A batch whose second read finds the job as before was inserted
   before any hold, so the rollback's delete, which comes after its hold, removes it.

**A bounded answer.** Step 2 is two reads of the job and one delete of at most a batch of logs: it
never waits for the rollback to finish and never runs one (a rollback deletes a whole account, for
as long as that takes). ``logs_deleted`` counts what the rollback deleted; a batch's own logs
deleted by the batch are not in it (they were never kept).

**A newer job.** A new job can only be triggered once the rollback has finished. If the job read
after the delete is newer than the rolled-back one, it was triggered between the two reads, and
its run may have met one of this batch's external ids before the delete (it then counts that log as
its own, and the delete took it): the refusal says so, and ``verify`` reports such a log missing
(``verify --repair`` writes it). A batch whose *first* read already finds a newer job is kept: it
landed after the new trigger, and that job's run counts its logs as its own (the same records).

Not covered: an account without any job (a rollback deletes without a hold; there is no job to read
it from), and a service whose migrated-log store cannot delete logs by id (``MigratedLogsById``):
the batch is then refused naming what to do (``rollback`` again once it is done), and ``verify``
reports any log left behind the ``rolled_back`` job (docs/verify.md).
"""

from __future__ import annotations

from collections.abc import Collection

from ..errors import JobAlreadyRunning, JobNotRunnable
from ..jobs import ROLLED_BACK, ROLLING_BACK
from ..ports import JobStore
from ..ports.log_stores import MigratedLogsById


def refuse_rolled_back(company_sso_id: str, jobs: JobStore) -> None:
    """Step 1: ``JobAlreadyRunning`` while the account's latest job is ``rolling_back``,
    ``JobNotRunnable`` when it is ``rolled_back``; nothing otherwise (no job, or any other status)."""
    latest = jobs.latest(company_sso_id)
    if latest is None:
        return
    if latest.status == ROLLING_BACK:
        raise JobAlreadyRunning(
            f"company {company_sso_id} is being rolled back (job {latest.job_id}): nothing was written"
        )
    if latest.status == ROLLED_BACK:
        raise JobNotRunnable(
            f"company {company_sso_id}'s job {latest.job_id} was rolled back: nothing was written "
            "(trigger a new job first, as for run)"
        )


def settle_after_write(
    company_sso_id: str,
    jobs: JobStore,
    inserted: Collection[str],
    logs: MigratedLogsById | None,
) -> None:
    """Step 2, after a batch inserted the logs of ``inserted`` (their external ids) for the account:
    nothing when the latest job is neither ``rolling_back`` nor ``rolled_back``; else delete those
    logs (``logs``: None when the service cannot) and raise ``JobNotRunnable`` — or
    ``JobAlreadyRunning`` naming ``rollback`` as the remedy when they could not be deleted here.

    Two job reads and one delete at most: no wait, whatever the rollback under way does.
    """
    if not inserted:
        return
    seen = jobs.latest(company_sso_id)
    if seen is None or seen.status not in (ROLLING_BACK, ROLLED_BACK):
        return
    state = "being rolled back" if seen.status == ROLLING_BACK else "rolled back"
    if logs is None:
        raise JobAlreadyRunning(
            f"company {company_sso_id}'s job {seen.job_id} was {state} while this batch was written, "
            "and this batch's logs may have landed after the delete: run rollback again once it is "
            "done (verify reports them)"
        )
    logs.delete_migrated_ids(company_sso_id, inserted)
    after = jobs.latest(company_sso_id)
    newer = (
        f"; job {after.job_id}, triggered meanwhile, may have counted some of them as its own "
        "(verify reports them missing, verify --repair writes them)"
        if after is not None and after.job_id != seen.job_id
        else ""
    )
    raise JobNotRunnable(
        f"company {company_sso_id}'s job {seen.job_id} was {state} while this batch was written: "
        f"its {len(inserted)} inserted logs were deleted, nothing of it was kept{newer} (trigger a "
        "new job first, as for run)"
    )
