"""The run loop's progress hook turned into metrics and structured log lines.

``JobObserver`` is handed to ``run_job(on_progress=...)``: after each batch it receives the job as
stored, counts the rows the batch added by outcome and reason, and writes one log line; when the
job's status changes it writes one more line and moves the job-state gauge. Log lines carry
``company_sso_id``, ``job_id`` and ``shard`` and nothing from the settings, so no secret.

With ``shard`` it watches one shard's view of a sharded job: its lines are the shard's, and the
account's job-state gauge is left to whoever settles the whole job (a shard's "completed" is not
the account's).
"""

from __future__ import annotations

from structlog.typing import FilteringBoundLogger

from crm_audit_transform.jobs import MigrationJob
from crm_audit_transform.tally import Tally

from .metrics import MigrationMetrics, process_metrics


class JobObserver:
    """Called with the job after every durable write of a run (``on_progress``)."""

    __slots__ = ("_last", "_log", "_metrics", "_shard", "_started")

    def __init__(
        self, log: FilteringBoundLogger, *, metrics: MigrationMetrics | None = None, shard: int | None = None
    ) -> None:
        self._log = log
        self._metrics = metrics or process_metrics()
        self._shard = shard
        self._last: MigrationJob | None = None
        self._started: MigrationJob | None = None

    def started(self, job: MigrationJob) -> None:
        """The job as the run found it: later batches are counted from here.

        ``job_started`` is not logged yet: the run may still have to wait for the job's lease (a
        task whose account another process holds retries later and never starts). It is logged with
        the run's first durable write — made under the lease — with the cursor the run started from.
        """
        self._last = job
        self._started = job
        if self._shard is None:
            self._metrics.set_job_state(job.company_sso_id, job.status)

    def __call__(self, job: MigrationJob) -> None:
        if self._started is not None:
            found, self._started = self._started, None
            self._bound(job).info("job_started", status=found.status, last_audit_id=found.last_audit_id)
        before = self._last.tally if self._last is not None else Tally()
        added = _difference(job.tally, before)
        self._count(added)
        log = self._bound(job)
        if added.processed:
            log.info(
                "batch",
                last_audit_id=job.last_audit_id,
                processed=added.processed,
                migrated=added.migrated,
                skipped=added.skipped_total,
                failed=added.failed_total,
                progress_pct=job.progress_pct,
            )
        previous = self._last.status if self._last is not None else None
        if job.status != previous:
            if self._shard is None:
                self._metrics.set_job_state(job.company_sso_id, job.status)
            log.info("job_state", status=job.status, previous=previous, halted_reason=job.halted_reason)
        self._last = job

    def _bound(self, job: MigrationJob) -> FilteringBoundLogger:
        return self._log.bind(company_sso_id=job.company_sso_id, job_id=job.job_id, shard=self._shard)

    def _count(self, added: Tally) -> None:
        if added.migrated:
            self._metrics.rows.labels("migrated", "").inc(added.migrated)
        for reason, count in added.skipped.items():
            self._metrics.rows.labels("skipped", reason).inc(count)
        for reason, count in added.failed.items():
            self._metrics.rows.labels("failed", reason).inc(count)


def _difference(after: Tally, before: Tally) -> Tally:
    return Tally(
        processed=after.processed - before.processed,
        migrated=after.migrated - before.migrated,
        skipped={k: v - before.skipped.get(k, 0) for k, v in after.skipped.items()},
        failed={k: v - before.failed.get(k, 0) for k, v in after.failed.items()},
        fallthrough=after.fallthrough - before.fallthrough,
    )
