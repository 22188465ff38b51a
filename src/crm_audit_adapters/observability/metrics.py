"""Prometheus metrics of the run loop (``prometheus_client``); names follow Prometheus's conventions.

    crm_audit_rows_total{outcome, reason}        counter   audit rows behind the cursor, by outcome
    crm_audit_batch_write_seconds                histogram one MigrateBatch insert (≤ 20 logs)
    crm_audit_lookup_calls_total{port}           counter   calls to users / sso / contacts
    crm_audit_lookup_ids_total{port}             counter   ids (or emails) those calls asked for
    crm_audit_usman_degraded_total               counter   emails whose USMAN lookup failed: their
                                                           actors were degraded to [Deleted CRM User]
    crm_audit_task_retries_total{task}           counter   Celery task retries (outages, held leases)
    crm_audit_dependency_retries_total{dependency, error}
                                                 counter   calls an adapter retried (``retrying``):
                                                           dependency postgres / mongo / usman, error
                                                           the exception's type name
    crm_audit_job_state{company_sso_id, status}  gauge     1 for the account's current job status

The lookup cache of a run answers repeated ids without a call, so cache hits show as ids seen in
``crm_audit_rows_total`` that never reach ``crm_audit_lookup_ids_total``. Under Celery's prefork
pool the metrics live in ``PROMETHEUS_MULTIPROC_DIR`` (set before this module is imported; see
``exporter``), and the job-state gauge keeps the most recent value written by any process.
"""

from __future__ import annotations

import functools
from typing import Final

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from crm_audit_transform.jobs import JOB_STATUSES

from ..retrying import add_retry_hook

_WRITE_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class MigrationMetrics:
    """The metric families, registered once in ``registry``."""

    __slots__ = (
        "batch_write",
        "dependency_retries",
        "job_state",
        "lookup_calls",
        "lookup_ids",
        "retries",
        "rows",
        "usman_degraded",
    )

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.rows = Counter(
            "crm_audit_rows",
            "Audit rows processed, by outcome and reason.",
            ["outcome", "reason"],
            registry=registry,
        )
        self.batch_write = Histogram(
            "crm_audit_batch_write_seconds",
            "Latency of one batch insert into activity_logs.",
            buckets=_WRITE_BUCKETS,
            registry=registry,
        )
        self.lookup_calls = Counter(
            "crm_audit_lookup_calls", "Lookup calls per port.", ["port"], registry=registry
        )
        self.lookup_ids = Counter(
            "crm_audit_lookup_ids", "Ids or emails asked of each lookup port.", ["port"], registry=registry
        )
        self.usman_degraded = Counter(
            "crm_audit_usman_degraded",
            "Emails whose USMAN lookup failed (actors degraded).",
            registry=registry,
        )
        self.retries = Counter("crm_audit_task_retries", "Celery task retries.", ["task"], registry=registry)
        self.dependency_retries = Counter(
            "crm_audit_dependency_retries",
            "Calls to a dependency retried after a failed attempt.",
            ["dependency", "error"],
            registry=registry,
        )
        self.job_state = Gauge(
            "crm_audit_job_state",
            "1 for the current status of each account's job.",
            ["company_sso_id", "status"],
            registry=registry,
            multiprocess_mode="mostrecent",
        )

    def count_retry(self, dependency: str, error: BaseException, attempt: int) -> None:
        """A ``retrying.RetryHook``: one retry of a call to ``dependency``."""
        self.dependency_retries.labels(dependency, type(error).__name__).inc()

    def set_job_state(self, company_sso_id: str, status: str) -> None:
        for each in sorted(JOB_STATUSES):
            self.job_state.labels(company_sso_id, each).set(1.0 if each == status else 0.0)


@functools.cache
def process_metrics() -> MigrationMetrics:
    """This process's metrics in the default registry (prometheus_client's own convention); every
    adapter retry of the process is counted in them from here on."""
    metrics = MigrationMetrics()
    add_retry_hook(metrics.count_retry)
    return metrics
