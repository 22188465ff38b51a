"""``run --metrics-port``: the run's ports measured, its progress logged, ``/metrics`` served.

Imported lazily by the ``run`` command, so the runner works without the ``[celery]`` extra that
brings prometheus_client and structlog.
"""

from __future__ import annotations

from collections.abc import Callable

from crm_audit_transform.errors import ConfigError
from crm_audit_transform.jobs import MigrationJob
from crm_audit_transform.service import MigrationService

from ..bootstrap import Runtime

Hook = Callable[[MigrationJob], None]


def observed_run(
    runtime: Runtime, job: MigrationJob, view: Hook | None, metrics_port: int
) -> tuple[MigrationService, Hook]:
    """Serve ``/metrics`` on ``metrics_port``; return the service over measured ports and a hook."""
    try:
        from ..observability import JobObserver, ObservedPorts, configure_logging, migration_logger
        from ..observability.exporter import serve_metrics
    except ImportError as exc:
        needs = "needs the extra: pip install 'crm-audit-transform[celery]'"
        raise ConfigError([("metrics", needs)]) from exc
    configure_logging()
    serve_metrics(metrics_port)
    observer = JobObserver(migration_logger())
    observer.started(job)

    def hook(current: MigrationJob) -> None:
        observer(current)
        if view is not None:
            view(current)

    return runtime.service_over(ObservedPorts(runtime)), hook
