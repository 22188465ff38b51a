"""The S2S write route (``/migrate``) against a rollback: refused before, cleaned up after.

``run`` is fenced by its lease; ``/migrate`` holds none — its callers post many batches at once,
alongside a run, and an exclusive lease would refuse all but one. So the route keeps a rollback's
promise ("the account's migrated logs are gone") in two steps instead:

1. **Before the write** (``refuse_rolled_back``): refused while the account's latest job is
   ``rolling_back`` (``JobAlreadyRunning``, as ``trigger`` and ``run`` refuse) or ``rolled_back``
   (``JobNotRunnable``, as ``run`` refuses a rolled-back job; a new ``trigger`` opens it again).
2. **After the write** (``settle_after_write``): the check and the insert are not one atomic step,
   so a batch that passed step 1 just before a rollback's hold may land after its delete. When the
   batch inserted anything, the latest job is read again: if it is now ``rolling_back`` or
   ``rolled_back``, the batch may sit behind the rollback, so — once that rollback has finished —
   the account is rolled back once more (``rollback``: the same hold, fenced against a newer job,
   its ``logs_deleted`` added up) and the batch is refused (``JobNotRunnable``): nothing of it is
   kept. A batch whose second read finds the job as before was inserted before any hold, so the
   rollback's delete, which comes after its hold, removes it.

Not covered: a rollback of an account without any job (it deletes without a hold; there is no job
to read a rollback from), and a second rollback that cannot run here (the service has no
``MigratedLogs``, or the first rollback is still under way after ``ROLLBACK_WAIT_SECONDS``): the
batch is then refused naming what to do (``rollback`` again), and ``verify`` reports any log left
behind the ``rolled_back`` job (docs/verify.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

from ..errors import JobAlreadyRunning, JobNotRunnable
from ..jobs import ROLLED_BACK, ROLLING_BACK
from ..ports import JobStore
from .rollback import RollbackPorts, rollback

ROLLBACK_WAIT_SECONDS: Final = 30.0
"""How long a batch that met a rollback under way waits for it to finish before cleaning up."""
ROLLBACK_POLL_SECONDS: Final = 0.25
"""How often the job is read again meanwhile."""


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
    ports: RollbackPorts | None,
    *,
    sleep: Callable[[float], None] = time.sleep,
    wait_seconds: float = ROLLBACK_WAIT_SECONDS,
) -> None:
    """Step 2, after a batch that inserted logs: nothing when the latest job is neither
    ``rolling_back`` nor ``rolled_back``; else roll the account back again once the rollback under
    way has finished (``ports``: the rollback's own, None when the service has none) and raise
    ``JobNotRunnable`` (the batch's logs were deleted with the rest) — or ``JobAlreadyRunning`` when
    that could not be done here, naming ``rollback`` as the remedy.

    ``sleep`` waits between reads, ``ROLLBACK_POLL_SECONDS`` each, ``wait_seconds`` in all.
    """
    waited = 0.0
    while True:
        latest = jobs.latest(company_sso_id)
        if latest is None or latest.status not in (ROLLING_BACK, ROLLED_BACK):
            return
        if latest.status == ROLLED_BACK and ports is not None:
            try:
                rollback(company_sso_id, ports)
            except JobAlreadyRunning:
                pass  # another batch (or an operator) holds the account right now, or a newer job exists
            else:
                raise JobNotRunnable(
                    f"company {company_sso_id}'s job {latest.job_id} was rolled back while this batch "
                    "was written: its logs were deleted with the rest, nothing was kept (trigger a new "
                    "job first, as for run)"
                )
        if waited >= wait_seconds:
            raise JobAlreadyRunning(
                f"company {company_sso_id}'s job {latest.job_id} was being rolled back while this batch "
                "was written, and this batch's logs may have landed after the delete: run rollback "
                "again once it is done (verify reports them)"
            )
        sleep(ROLLBACK_POLL_SECONDS)
        waited += ROLLBACK_POLL_SECONDS
