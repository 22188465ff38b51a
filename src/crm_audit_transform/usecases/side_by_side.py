"""A sharded job's shards run side by side on one machine: up to N at once, each elsewhere.

``run_side_by_side`` is what a set of Celery workers does with a sharded job's ``migrate_shard``
tasks, without a broker: it starts the job's unfinished shards through a ``ShardLauncher`` (the
adapter runs each in its own process: ``crm_audit_adapters.shard_processes``), up to
``launcher.workers`` at once and the rest queued in shard order, and follows them to their end.
Each shard is a full ``run_shard`` with its own ports and lease, so every guarantee of
``usecases.shards`` holds as it is: progress saved per batch, exactly once by the unique index,
the job settled by whichever shard finishes last.

What this adds is the one-machine user's view of them:

- ``on_progress`` sees the *whole* job whenever a shard reports a batch (the shards' entries as
  they report them: counts and ``progress_pct`` sum the shards, as ``status`` does);
- ``should_stop`` (Ctrl-C) asks every running shard to stop after its batch in flight, and no
  queued shard is started; the result is ``stopped``;
- a shard whose job comes back no longer in progress (one of them halted, or a cancel) starts no
  more shards; the others find the job halted or cancelled at their next batch and stop, as on
  Celery;
- a shard that fails (``failed``: a dependency down, USMAN refusing our credentials, a lease
  held) or whose process is lost (``lost``: killed, out of memory) asks the others to stop at their
  next batch, waits for them, and its error is raised — ``WorkerLost`` for a lost one. A lost
  shard's lease is handed back (its process is known dead); no other lease is touched.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable

import attrs

from ..errors import WorkerLost
from ..jobs import COMPLETED, IN_PROGRESS, MigrationJob
from ..ports import Clock, JobStore
from ..ports.shard_runs import ShardEvent, ShardLauncher
from ._run_result import RunResult
from .settings import RunSettings
from .shards import settle, shard_entry

__all__ = ["POLL_S", "run_side_by_side"]

POLL_S = 0.1
"""How often, at most, ``should_stop`` is asked while every running shard is busy (seconds)."""


def run_side_by_side(
    job: MigrationJob,
    launcher: ShardLauncher,
    *,
    jobs: JobStore,
    clock: Clock,
    settings: RunSettings,
    should_stop: Callable[[], bool] = lambda: False,
    on_progress: Callable[[MigrationJob], None] | None = None,
) -> RunResult:
    """Run ``job``'s unfinished shards through ``launcher``, up to ``launcher.workers`` at once.

    ``job`` is the account's sharded job as read (a job not in progress comes back untouched).
    The result's ``job`` is the whole job as stored at the end (settled when every shard is
    done); ``stopped`` when ``should_stop`` ended the run before its end. Raises the first failed
    shard's error, or ``WorkerLost`` for a lost shard, once every other shard has stopped.
    ``launcher.close()`` is called however it ends.
    """
    if job.status != IN_PROGRESS:
        return RunResult(job)
    runs = _Runs(job, launcher, on_progress)
    try:
        runs.follow(should_stop)
    finally:
        launcher.close()
    for shard, owner in runs.lost:
        _hand_back(jobs, job, shard, owner)
    if runs.error is not None:
        raise runs.error
    whole = settle(job.job_id, job.company_sso_id, jobs, clock, settings)
    return RunResult(whole, stopped=runs.stopped and whole.status == IN_PROGRESS)


class _Runs:
    """The shards queued, running and ended; the whole job as the shards reported it."""

    __slots__ = (
        "error",
        "launcher",
        "lost",
        "on_progress",
        "queued",
        "running",
        "stopped",
        "stopping",
        "whole",
    )

    def __init__(
        self, job: MigrationJob, launcher: ShardLauncher, on_progress: Callable[[MigrationJob], None] | None
    ) -> None:
        self.whole = job
        self.launcher = launcher
        self.on_progress = on_progress
        self.queued = deque(s.shard for s in job.shards if s.status != COMPLETED)
        self.running: dict[int, str] = {}
        self.lost: list[tuple[int, str]] = []
        self.error: BaseException | None = None
        self.stopped = False
        self.stopping = False

    def follow(self, should_stop: Callable[[], bool]) -> None:
        while True:
            # Asked before a queued shard is started: a Ctrl-C that came while a shard ended must
            # not start the next one (it would start after the stop, outside its reach).
            if not self.stopping and should_stop():
                self.stopped = True
                self._stop_all()
            while self.queued and not self.stopping and len(self.running) < self.launcher.workers:
                shard = self.queued.popleft()
                self.running[shard] = self.launcher.start(self.whole.company_sso_id, shard)
            if not self.running:
                return
            event = self.launcher.next_event(POLL_S)
            if event is not None:
                self._take(event)

    def _take(self, event: ShardEvent) -> None:
        if event.kind == "progress":
            assert event.job is not None  # a progress event carries the shard's view
            self._report(event.shard, event.job)
            return
        owner = self.running.pop(event.shard, None)
        if event.kind == "done":
            assert event.job is not None  # a done event carries the whole job as settled
            self.whole = attrs.evolve(
                self.whole,
                status=event.job.status,
                halted_reason=event.job.halted_reason,
                finished_at=event.job.finished_at,
                shards=tuple(
                    mine if mine.shard != event.shard else theirs
                    for mine, theirs in zip(self.whole.shards, event.job.shards, strict=True)
                ),
            )
            if self.on_progress is not None:
                self.on_progress(self.whole)
            if event.job.status != IN_PROGRESS:
                # Halted (by this shard or another) or cancelled: the shards still running find it
                # so at their next batch and stop there; none is started.
                self.stopping = True
            return
        if event.kind == "lost" and owner is not None:
            self.lost.append((event.shard, owner))
        if self.error is None:
            self.error = event.error or WorkerLost(f"shard {event.shard}'s process ended without a word")
        self._stop_all()

    def _report(self, shard: int, view: MigrationJob) -> None:
        entries = tuple(s if s.shard != shard else shard_entry(s, view) for s in self.whole.shards)
        self.whole = attrs.evolve(self.whole, shards=entries)
        if self.on_progress is not None:
            self.on_progress(self.whole)

    def _stop_all(self) -> None:
        if not self.stopping:
            self.stopping = True
            self.launcher.stop()


def _hand_back(jobs: JobStore, job: MigrationJob, shard: int, owner: str) -> None:
    """Release the lease ``owner`` (a process known dead) holds on ``shard``, as stored; best effort:
    it expires anyway, and the error that ended the run is the one to tell."""
    with contextlib.suppress(Exception):
        stored = jobs.latest(job.company_sso_id)
        if stored is None or stored.job_id != job.job_id or len(stored.shards) <= shard:
            return
        entry = stored.shards[shard]
        if entry.lease_owner == owner:
            jobs.save_shard_progress(job.job_id, entry, owner, None)
