"""Serving ``/metrics``: one process, or all of a prefork pool's processes (multiprocess mode).

prometheus_client decides at import whether metric values live in process memory or in
``PROMETHEUS_MULTIPROC_DIR``, so the ``worker`` command sets that directory before anything imports
it (``cli.workers._prepare_multiprocess_metrics``; not here: importing this package imports
prometheus_client). The exporter then sums every process's files with ``MultiProcessCollector``.
"""

from __future__ import annotations

import contextlib
import glob
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

from crm_audit_transform.errors import ConfigError

if TYPE_CHECKING:  # an optional dependency (the [celery] extra), imported only when metrics are asked for
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def metrics_registry() -> CollectorRegistry:
    """The registry to expose: every process's values in multiprocess mode, else this process's."""
    from prometheus_client import REGISTRY, CollectorRegistry

    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        registry = CollectorRegistry()
        registry.register(_SettledFiles(directory))
        return registry
    return REGISTRY


class _SettledFiles:
    """prometheus_client's ``MultiProcessCollector`` over the directory's value files that are past
    their creation: a pool process creates its file empty, then sizes it, when its first value is
    written (a task's first metric). A scrape that read such a file in between failed whole
    (``struct.error``, a 500 for every metric): one scrape in about 14,000 under eight concurrent
    scrapers of a prefork worker starting a task. An empty file holds no value yet, so leaving it
    out of that scrape loses nothing; once sized, its header reads ``0`` used bytes until a value is
    written. A file gone meanwhile is left out too.
    """

    def __init__(self, directory: str) -> None:
        self._directory = directory

    def collect(self) -> Iterable[Metric]:
        from prometheus_client.multiprocess import MultiProcessCollector

        files = []
        for path in glob.glob(os.path.join(self._directory, "*.db")):
            with contextlib.suppress(OSError):
                if os.path.getsize(path) > 0:
                    files.append(path)
        return MultiProcessCollector.merge(files, accumulate=True)  # type: ignore[no-untyped-call, no-any-return]


def serve_metrics(port: int, host: str = "0.0.0.0") -> None:  # noqa: S104 - scraped from other hosts
    """Start prometheus_client's HTTP exporter on ``port`` in a daemon thread.

    ``ConfigError`` (``CONFIG_INVALID``, exit 3) when the port cannot be bound — in use, or one only
    root may take: the ``--metrics-port`` given, not a file.
    """
    from prometheus_client import start_http_server

    try:
        start_http_server(port, addr=host, registry=metrics_registry())
    except OSError as exc:
        why = f"cannot serve /metrics on port {port}: {exc.strerror or exc}"
        raise ConfigError([("--metrics-port", why)], source="the metrics exporter") from exc
