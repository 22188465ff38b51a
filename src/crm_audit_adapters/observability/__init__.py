"""Metrics (Prometheus) and structured logs (structlog) of runs: adapters around the core's hooks."""

from .logs import configure_logging, migration_logger
from .metrics import MigrationMetrics, process_metrics
from .ports import ObservedPorts, observed_ports
from .progress import JobObserver

__all__ = [
    "JobObserver",
    "MigrationMetrics",
    "ObservedPorts",
    "configure_logging",
    "migration_logger",
    "observed_ports",
    "process_metrics",
]
