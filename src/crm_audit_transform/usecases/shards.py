"""Shards of one big account: disjoint id ranges of one job, each run by its own runner.

A job triggered with ``shards=N`` holds N ``JobShard`` entries, ranges ``(after_id, until_id]``
cut at the in-scope ids' quantiles when the source can compute them cheaply (``AuditSplitter``:
PostgreSQL's ``percentile_disc``), else at equal id spans. The last range is open-ended, so rows
written after the trigger are migrated as an unsharded run would.

``run_shard`` drives the ordinary run loop (``run.run_loop``) over one shard's *view* of the job: a
``MigrationJob`` whose cursor, counts, status and lease are the shard's (``shard_view``), read and
written through ``ShardJobs``, which turns the loop's job-store calls into the store's shard
calls. So a shard has the loop's every guarantee — progress saved per batch with its lease
renewed, a replayed batch counted once, cancel seen at the next batch — and the shards of one job
never write each other's entries.

The job is settled by whichever shard finishes last (``settle``): once every shard is completed,
the halt rule's end-of-data check runs over the summed counts (as an unsharded run's does at its
end) and the job becomes ``completed`` or ``halted``. A shard's halt rule is checked at its own
check points — every ``ceil(sample / shards)`` rows of that shard, in id order, from its basis
(``HaltRule.per_shard``), so that the shards together check about as often as an unsharded run —
and where a shard halts is a function of its rows, whatever the other shards did meanwhile; a
shard that halts halts the job, and the other shards stop at their next batch. Exactly-once
across shards and redeliveries rests, as always, on the unique index: ranges are disjoint, and a
replayed batch meets its own external ids.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence

import attrs

from ..domain import Outcome, ScopeBounds
from ..errors import JobNotFound
from ..halting import HaltRule
from ..jobs import COMPLETED, HALTED, IN_PROGRESS, JobShard, MigrationJob
from ..ports import Clock, JobStore, PagePipeline
from ..transformer import Transformer
from .run import RunPorts, RunResult, run_loop
from .settings import RunSettings

__all__ = ["ShardJobs", "run_shard", "settle", "shard_entry", "shard_view", "split_shards"]


def split_shards(
    bounds: ScopeBounds, parts: int, quantiles: Sequence[int] | None = None
) -> tuple[JobShard, ...]:
    """``parts`` disjoint, contiguous shards over ``bounds`` (fewer when the range is too small).

    ``quantiles``: the cut ids (a shard ends at one, inclusive), balanced by row count; None cuts
    equal id spans. Shard 0 starts just before ``min_id``; the last shard is open-ended.
    """
    if parts < 1:
        raise ValueError(f"shards must be at least 1, got {parts}")
    first, last = bounds.min_id, bounds.max_id
    if quantiles is None:
        span = last - first + 1
        quantiles = [first - 1 + span * k // parts for k in range(1, parts)]
    cuts = sorted({c for c in quantiles if first <= c < last})
    edges = [first - 1, *cuts]
    return tuple(
        JobShard(
            shard=index,
            after_id=after,
            until_id=edges[index + 1] if index + 1 < len(edges) else None,
            last_audit_id=after,
        )
        for index, after in enumerate(edges)
    )


def shard_view(job: MigrationJob, index: int) -> MigrationJob:
    """The job as one shard's runner sees it: the shard's cursor, counts, lease and range.

    Its status is the job's while the job is not in progress (cancelled, halted, completed), else
    the shard's own.
    """
    shard = job.shards[index]
    running = job.status == IN_PROGRESS
    return MigrationJob(
        job_id=job.job_id,
        company_sso_id=job.company_sso_id,
        tenant=job.tenant,
        status=shard.status if running else job.status,
        cutoff=job.cutoff,
        created_at=job.created_at,
        updated_at=job.updated_at,
        first_audit_id=shard.after_id + 1,
        max_audit_id=job.max_audit_id if shard.until_id is None else shard.until_id,
        last_audit_id=shard.last_audit_id,
        rows_at_cursor=shard.rows_at_cursor,
        source_mark=job.source_mark,
        mapping_mark=job.mapping_mark,
        tally=shard.tally,
        date_range_start=job.date_range_start,
        finished_at=shard.finished_at if running else job.finished_at,
        halted_reason=shard.halted_reason if running else job.halted_reason,
        lease_owner=shard.lease_owner,
        lease_expires_at=shard.lease_expires_at,
        enrichment=shard.enrichment,
        halt_basis=shard.halt_basis,
    )


class ShardJobs:
    """The job store as the run loop sees it when it runs shard ``index`` (``run.RunJobStore``)."""

    __slots__ = ("_index", "_jobs", "_owner", "_shard")

    def __init__(self, jobs: JobStore, job: MigrationJob, index: int) -> None:
        self._jobs = jobs
        self._index = index
        self._shard = job.shards[index]
        self._owner: str | None = None

    def _view(self, job: MigrationJob) -> MigrationJob:
        self._shard = job.shards[self._index]
        return shard_view(job, self._index)

    def _entry(self, view: MigrationJob) -> JobShard:
        return shard_entry(self._shard, view)

    def latest(self, company_sso_id: str) -> MigrationJob | None:
        job = self._jobs.latest(company_sso_id)
        return None if job is None or len(job.shards) <= self._index else self._view(job)

    def rollback_under_way(self, company_sso_id: str) -> MigrationJob | None:
        return self._jobs.rollback_under_way(company_sso_id)

    def acquire_lease(self, job_id: str, owner: str, ttl: dt.timedelta) -> MigrationJob:
        self._owner = owner
        return self._view(self._jobs.acquire_shard_lease(job_id, self._index, owner, ttl))

    def save_progress(self, job: MigrationJob, owner: str, ttl: dt.timedelta | None) -> MigrationJob:
        return self._view(self._jobs.save_shard_progress(job.job_id, self._entry(job), owner, ttl))

    def grow_source_mark(self, job_id: str, owner: str, mark: str, *, previous: str) -> MigrationJob:
        """The job's mark grown under this shard's lease (every shard's runs share the job's mark)."""
        return self._view(
            self._jobs.grow_source_mark(job_id, owner, mark, previous=previous, shard=self._index)
        )

    def save(self, job: MigrationJob) -> None:
        """The run's hand-back of its lease after an error: the shard's entry, lease released."""
        if self._owner is not None:
            self._jobs.save_shard_progress(job.job_id, self._entry(job), self._owner, None)


def shard_entry(shard: JobShard, view: MigrationJob) -> JobShard:
    """``shard`` with the run's fields of ``view`` (its shard's view of the job, ``shard_view``)."""
    return attrs.evolve(
        shard,
        last_audit_id=view.last_audit_id,
        rows_at_cursor=view.rows_at_cursor,
        status=view.status,
        tally=view.tally,
        enrichment=view.enrichment,
        halt_basis=view.halt_basis,
        halted_reason=view.halted_reason,
        finished_at=view.finished_at,
    )


def run_shard(
    company_sso_id: str,
    shard: int,
    ports: RunPorts,
    transformer: Transformer,
    *,
    jobs: JobStore,
    owner: str,
    settings: RunSettings,
    should_stop: Callable[[], bool] = lambda: False,
    on_progress: Callable[[MigrationJob], None] | None = None,
    on_outcomes: Callable[[Sequence[Outcome]], None] | None = None,
    pipeline: PagePipeline | None = None,
) -> RunResult:
    """Run shard ``shard`` of the account's sharded job from its cursor, then ``settle`` the job.

    ``jobs`` is the job store; the loop sees it through ``ShardJobs`` (``ports.jobs`` is not used).

    ``on_progress`` sees the shard's view after every durable batch; ``on_outcomes`` each saved
    step's outcomes of the shard's rows, as ``run_job``'s (write results folded in, in row order,
    once that step's progress is durable): over every shard, the outcomes an unsharded run gives,
    each once, in id order within a shard. The result's ``job`` is the
    whole job as stored after the settle (its status is the job's; ``job.shards[shard]`` the
    shard's). ``JobNotFound`` without a sharded job holding that shard; ``JobNotRunnable`` (a
    ``JobNotFound``) when the job is cancelled, rolling back or rolled back as the shard's lease is
    taken (``JobStore.acquire_shard_lease``); ``LeaseHeld`` while another runner holds the shard.
    """
    job = jobs.latest(company_sso_id)
    if job is None or not 0 <= shard < len(job.shards):
        raise JobNotFound(f"company {company_sso_id} has no sharded job with a shard {shard}")
    shard_ports = attrs.evolve(ports, jobs=ShardJobs(jobs, job, shard))
    # Each shard checks its own rows, at its share of the sample (halting.HaltRule.per_shard).
    own_sample = settings.halt_rule.per_shard(len(job.shards)).sample
    result = run_loop(
        company_sso_id,
        shard_ports,
        transformer,
        owner=owner,
        settings=attrs.evolve(settings, halt_sample=own_sample),
        job=shard_view(job, shard),
        should_stop=should_stop,
        on_progress=on_progress,
        on_outcomes=on_outcomes,
        until_id=job.shards[shard].until_id,
        check_at_end=False,
        pipeline=pipeline,
    )
    whole = settle(job.job_id, company_sso_id, jobs, ports.clock, settings)
    return attrs.evolve(result, job=whole)


def settle(
    job_id: str, company_sso_id: str, jobs: JobStore, clock: Clock, settings: RunSettings
) -> MigrationJob:
    """Finish a sharded job whose shards are done: ``halted`` if one halted, else the end-of-data
    halt check over every shard's rows decides ``halted`` or ``completed``. The job as stored.

    Only the status, its end and its reason are written (``transition(..., status_only=True)``),
    from ``in_progress``: every other field stays as stored in that write."""
    for _ in range(3):
        job = jobs.latest(company_sso_id)
        if job is None or job.job_id != job_id:
            raise JobNotFound(f"job {job_id} of company {company_sso_id} is gone")
        if job.status != IN_PROGRESS:
            return job
        decided = _decide(job, settings.halt_rule, enforce=settings.enforce_halt)
        if decided is None:
            return job
        status, reason = decided
        now = clock.now()
        done = attrs.evolve(job, status=status, halted_reason=reason, finished_at=now, updated_at=now)
        # The status and its end alone: the rest of ``job`` (its top-level lease, its dates) is a
        # read that another writer may have moved past since; only the shards' entries decide here.
        stored = jobs.transition(done, {IN_PROGRESS}, status_only=True)
        if stored is not None:
            return stored
        # Cancelled or settled by another shard between the read and the write: look again.
    latest = jobs.latest(company_sso_id)
    if latest is None:
        raise JobNotFound(f"job {job_id} of company {company_sso_id} is gone")
    return latest


def _decide(job: MigrationJob, rule: HaltRule, *, enforce: bool) -> tuple[str, str | None] | None:
    halted = next((s for s in job.shards if s.status == HALTED), None)
    if halted is not None:
        return HALTED, f"shard {halted.shard}: {halted.halted_reason}"
    if any(s.status != COMPLETED for s in job.shards):
        return None
    reason = rule.decide(job.tally - job.halt_basis, at_end=True)
    if reason is not None and enforce:
        return HALTED, reason
    return COMPLETED, None
