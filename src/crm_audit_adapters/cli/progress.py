"""The ``run`` progress line: percent of the id range, rows, rows/s and an ETA from the id range.

On a terminal the line is redrawn in place; otherwise (logs, CI) a line is written at most every
``interval`` seconds and once at the end. Time comes from ``monotonic`` (injectable for tests).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import IO

import click

from crm_audit_transform.jobs import MigrationJob


class ProgressLine:
    __slots__ = (
        "_interval",
        "_last_print",
        "_monotonic",
        "_start",
        "_start_id",
        "_start_pct",
        "_start_rows",
        "_stream",
        "_tty",
    )

    def __init__(
        self,
        job: MigrationJob,
        stream: IO[str],
        *,
        interval: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._interval = interval
        self._monotonic = monotonic
        self._start = monotonic()
        self._start_id = job.last_audit_id
        self._start_pct = job.progress_pct
        self._start_rows = job.tally.processed
        self._last_print = float("-inf")

    def render(self, job: MigrationJob, now: float | None = None) -> str:
        now = self._monotonic() if now is None else now
        elapsed = max(now - self._start, 1e-9)
        rows = job.tally.processed - self._start_rows
        pct = job.progress_pct
        done: float = job.last_audit_id - self._start_id
        left: float = max(job.max_audit_id - job.last_audit_id, 0)
        if job.shards:
            # Shards side by side: the cursor (the first unfinished shard's) lags; the ids behind
            # every shard's cursor (progress_pct) tell the pace.
            done, left = pct - self._start_pct, 100.0 - pct
        eta = _clock(left * elapsed / done) if done > 0 else "--:--:--"
        filled = int(pct // 5)
        bar = "#" * filled + "-" * (20 - filled)
        return (
            f"[{bar}] {pct:6.2f}%  {job.tally.processed:,} rows  {rows / elapsed:,.0f} rows/s  "
            f"ETA {eta}  cursor {job.last_audit_id}/{job.max_audit_id}"
        )

    def update(self, job: MigrationJob) -> None:
        now = self._monotonic()
        if self._tty:
            click.echo("\r" + self.render(job, now), file=self._stream, nl=False)
        elif now - self._last_print >= self._interval:
            click.echo(self.render(job, now), file=self._stream)
            self._last_print = now

    def finish(self, job: MigrationJob) -> None:
        click.echo(("\r" if self._tty else "") + self.render(job), file=self._stream)


def _clock(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"
