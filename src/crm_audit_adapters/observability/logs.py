"""structlog for the runner and the workers: JSON lines when stderr is not a terminal.

One line per batch and per job state change (``progress.JobObserver``); each carries
``company_sso_id``, ``job_id`` and ``shard``. Nothing logs settings, so no secret reaches a line.
"""

from __future__ import annotations

import sys

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
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )


def _stderr_logger(*_: object) -> structlog.PrintLogger:
    # sys.stderr as it is when the line is written (no cached logger: one per call), not the stream
    # of when logging was configured: a command run in-process (click's CliRunner) swaps in a stream
    # of its own and closes it when it ends.
    return structlog.PrintLogger(sys.stderr)


def migration_logger() -> FilteringBoundLogger:
    """The logger every run line goes through (``event`` names: job_started, batch, job_state, task_*)."""
    # structlog's default wrapper (configure_logging leaves it) is its filtering bound logger.
    logger: FilteringBoundLogger = structlog.get_logger("crm_audit")
    return logger
