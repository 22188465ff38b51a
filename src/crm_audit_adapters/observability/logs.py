"""structlog for the runner and the workers: JSON lines when stderr is not a terminal.

One line per batch and per job state change (``progress.JobObserver``); each carries
``company_sso_id``, ``job_id`` and ``shard``. Nothing logs settings, so no secret reaches a line.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

import structlog
from structlog.typing import FilteringBoundLogger, Processor


def configure_logging(*, json_lines: bool | None = None) -> None:
    """Set structlog's pipeline once per process; ``json_lines`` defaults to "stderr is not a TTY"."""
    if json_lines is None:
        json_lines = not sys.stderr.isatty()
    renderer: Processor = (
        structlog.processors.JSONRenderer() if json_lines else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        # The stream of now: in a Celery worker, before Celery puts its logging proxies in place of
        # sys.stdout and sys.stderr (worker_redirect_stdouts), so each line stays one JSON object.
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )


@contextlib.contextmanager
def logging_to_stderr() -> Iterator[None]:
    """``configure_logging`` for the block, structlog's configuration before it restored after it.

    For a command that logs only a few lines and may run in-process (``enqueue`` under click's
    CliRunner, whose stream is closed when the command ends): structlog's default prints to stdout,
    into a ``--json`` document, and a configuration left behind would keep that closed stream.
    """
    before = structlog.get_config()
    configure_logging()
    try:
        yield
    finally:
        structlog.configure(**before)


def migration_logger() -> FilteringBoundLogger:
    """The logger every run line goes through (``event`` names: job_started, batch, job_state, task_*)."""
    # structlog's default wrapper (configure_logging leaves it) is its filtering bound logger.
    logger: FilteringBoundLogger = structlog.get_logger("crm_audit")
    return logger
