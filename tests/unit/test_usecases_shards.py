"""Shards of one account: disjoint id ranges with their own cursor, counts and lease in one job."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import attrs
import pytest

from crm_audit_transform.domain import AuditRow, Outcome, ScopeBounds
from crm_audit_transform.errors import JobAlreadyRunning, JobNotRunnable, LeaseHeld
from crm_audit_transform.jobs import CANCELLED, COMPLETED, HALTED, IN_PROGRESS, MigrationJob
from crm_audit_transform.usecases import RESUME, RunSettings
from crm_audit_transform.usecases.shards import run_shard, split_shards
from support.corpus_account import World

NO_HALT = RunSettings(halt_threshold=1.0, page_size=50)
T = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)


def sharded(world: World, parts: int = 4) -> MigrationJob:
    world.service().trigger(world.company, shards=parts)
    job = world.jobs.latest(world.company)
    assert job is not None
    return job


def unsharded_end(settings: RunSettings = NO_HALT) -> tuple[World, MigrationJob]:
    world = World()
    world.service(settings=settings).trigger(world.company)
    return world, world.service(settings=settings).run(world.company, owner="solo").job


def timeline(world: World) -> list[str]:
    # repr, not ==: a Decimal('NaN') value is never equal to itself.
    return sorted(repr(log) for log in world.logs.logs)


class ReadsFirst:
    """The job store, except that its first ``latest`` answers with ``stale``: a read that another
    runner's writes overtook before this runner took its lease."""

    def __init__(self, jobs: Any, stale: MigrationJob) -> None:
        self._jobs = jobs
        self._stale: MigrationJob | None = stale

    def latest(self, company_sso_id: str) -> MigrationJob | None:
        stale, self._stale = self._stale, None
        return stale if stale is not None else self._jobs.latest(company_sso_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._jobs, name)


class TestSplit:
    def test_ranges_are_disjoint_contiguous_and_the_last_is_open(self) -> None:
        """Equal id spans: shard k ends where k+1 starts; the last takes ids past the trigger's max."""
        shards = split_shards(ScopeBounds(1, 100, T, 100), 4)
        assert [(s.after_id, s.until_id) for s in shards] == [(0, 25), (25, 50), (50, 75), (75, None)]
        assert [s.last_audit_id for s in shards] == [0, 25, 50, 75]

    def test_quantile_cuts_balance_row_counts(self) -> None:
        """Given the ids at the quantiles, each shard ends at one of them; repeats collapse."""
        shards = split_shards(ScopeBounds(1, 1000, T, 10), 4, [3, 3, 900])
        assert [(s.after_id, s.until_id) for s in shards] == [(0, 3), (3, 900), (900, None)]

    def test_the_in_memory_source_cuts_at_row_quantiles(self) -> None:
        """A trigger with shards over a source that splits by rows gives shards of near-equal rows."""
        world = World()
        job = sharded(world)
        ids = [r.id for r in world.source.page(world.tenant, world.transformer.scope,
                                                after_id=-1, cutoff=job.cutoff, limit=10_000)]  # fmt: skip
        sizes = [sum(1 for i in ids if s.after_id < i <= (s.until_id or i)) for s in job.shards]
        assert len(sizes) == 4
        assert sum(sizes) == len(ids)
        assert max(sizes) - min(sizes) <= 1


class TestShardedRun:
    def test_four_shards_in_any_order_end_identical_to_an_unsharded_run(self) -> None:
        """Same logs, same counts, completed: shards run last-to-first, each in its own runner."""
        solo, solo_job = unsharded_end()
        world = World()
        sharded(world)
        service = world.service(settings=NO_HALT)
        results = [service.run_shard(world.company, n, owner=f"runner-{n}") for n in (3, 1, 0, 2)]
        job = results[-1].job
        assert [r.job.status for r in results] == [IN_PROGRESS, IN_PROGRESS, IN_PROGRESS, COMPLETED]
        assert timeline(world) == timeline(solo)
        assert job.tally == solo_job.tally
        assert (job.progress_pct, job.last_audit_id) == (100.0, solo_job.last_audit_id)
        assert all(s.status == COMPLETED and s.lease_owner is None for s in job.shards)

    def test_the_shards_outcomes_are_an_unsharded_runs(self) -> None:
        """``run_shard``'s ``on_outcomes``, over every shard run in any order, hands each row's
        outcome once, the same as ``run_job``'s over the unsharded job (it took no ``on_outcomes``)."""
        solo = World()
        solo.service(settings=NO_HALT).trigger(solo.company)
        alone: list[Outcome] = []
        assert solo.run(settings=NO_HALT, on_outcomes=alone.extend).job.status == COMPLETED
        world = World()
        sharded(world)
        seen: list[Outcome] = []
        for n in (2, 0, 3, 1):
            run_shard(
                world.company,
                n,
                world.run_ports(),
                world.transformer,
                jobs=world.jobs,
                owner=f"runner-{n}",
                settings=NO_HALT,
                on_outcomes=seen.extend,
            )
        job = world.jobs.latest(world.company)
        assert job is not None
        assert job.status == COMPLETED
        assert len(seen) == len(alone) == job.tally.processed > 0
        # repr, not ==: a Decimal('NaN') value is never equal to itself.
        assert sorted(map(repr, seen)) == sorted(map(repr, alone))

    def test_status_sums_the_shards(self) -> None:
        """With two of four shards done, status counts both shards' rows and their share of the range."""
        world = World()
        job = sharded(world)
        service = world.service(settings=NO_HALT)
        for n in (0, 2):
            service.run_shard(world.company, n, owner="r")
        status = service.status(world.company)
        done = world.jobs.latest(world.company)
        assert done is not None
        assert status.tally == done.shards[0].tally + done.shards[2].tally
        assert status.tally.processed > 0
        spans = [(s.until_id or job.max_audit_id) - s.after_id for s in job.shards]
        assert status.progress_pct == round(100 * (spans[0] + spans[2]) / sum(spans), 2)
        assert status.last_audit_id == done.shards[0].until_id  # everything below shard 1 is done

    def test_an_interrupted_shard_resumes_from_its_own_cursor(self) -> None:
        """A shard stopped after one batch, with others run meanwhile, resumes to a clean run's end."""
        solo, solo_job = unsharded_end()
        world = World()
        sharded(world, 2)
        service = world.service(settings=NO_HALT)
        first = service.run_shard(world.company, 0, owner="a", should_stop=lambda: True)
        assert first.stopped
        assert first.job.shards[0].lease_owner is None
        service.run_shard(world.company, 1, owner="b")
        job = service.run_shard(world.company, 0, owner="c").job
        assert job.status == COMPLETED
        assert timeline(world) == timeline(solo)
        assert job.tally == solo_job.tally

    def test_service_run_takes_a_sharded_job_shard_after_shard(self) -> None:
        """`run` on a sharded job runs every shard in turn and completes it."""
        solo, solo_job = unsharded_end()
        world = World()
        sharded(world, 3)
        job = world.service(settings=NO_HALT).run(world.company, owner="one").job
        assert (job.status, job.tally) == (COMPLETED, solo_job.tally)
        assert timeline(world) == timeline(solo)

    def test_a_shard_completed_after_it_was_read_is_left_as_it_is(self) -> None:
        """A runner that read shard 0 in progress, after another runner completed it, takes no lease,
        reads and writes nothing, and hands back the job as stored."""
        world = World()
        sharded(world, 2)
        stale = world.jobs.latest(world.company)
        assert stale is not None
        world.service(settings=NO_HALT).run_shard(world.company, 0, owner="first")
        done = world.jobs.latest(world.company)
        assert done is not None
        assert (done.shards[0].status, done.shards[0].lease_owner) == (COMPLETED, None)
        logs = timeline(world)
        late = run_shard(
            world.company,
            0,
            world.run_ports(),
            world.transformer,
            jobs=ReadsFirst(world.jobs, stale),
            owner="late",
            settings=NO_HALT,
        )
        assert late.job == done
        assert (late.stopped, late.steps) == (False, 0)
        assert world.jobs.latest(world.company) == done
        assert timeline(world) == logs

    def test_a_held_shard_refuses_a_second_runner_but_not_another_shard(self) -> None:
        """Each shard has its own lease: shard 1 is held, shard 0 runs."""
        world = World()
        job = sharded(world, 2)
        world.jobs.acquire_shard_lease(job.job_id, 1, "other", dt.timedelta(minutes=5))
        service = world.service(settings=NO_HALT)
        with pytest.raises(LeaseHeld):
            service.run_shard(world.company, 1, owner="me")
        assert service.run_shard(world.company, 0, owner="me").job.shards[0].status == COMPLETED

    def test_a_shard_never_reads_a_page_past_its_range(self) -> None:
        """Shard 0, whose rows fill its pages exactly, asks for no page of the next shard's rows."""
        world = World()
        job = sharded(world, 2)
        shard = job.shards[0]
        assert shard.until_id is not None
        in_range = [r.id for r in world.source.page(world.tenant, world.transformer.scope, after_id=-1,
                                                    cutoff=job.cutoff, limit=10_000)
                    if r.id <= shard.until_id]  # fmt: skip
        pages: list[list[int]] = []
        source = world.source

        class Recording:
            def page(self, *args: Any, **kwargs: Any) -> Sequence[AuditRow]:
                rows = source.page(*args, **kwargs)
                pages.append([r.id for r in rows])
                return rows

            def __getattr__(self, name: str) -> Any:
                return getattr(source, name)

        world.source = Recording()  # type: ignore[assignment]
        # One page of exactly the shard's rows: it ends on until_id, and the shard is done.
        settings = RunSettings(halt_threshold=1.0, page_size=len(in_range))
        done = world.service(settings=settings).run_shard(world.company, 0, owner="r").job
        assert done.shards[0].status == COMPLETED
        assert done.shards[0].tally.processed == len(in_range)
        assert len(pages) == 1
        assert [i for page in pages for i in page] == in_range

    def test_the_one_active_job_index_sees_one_job(self) -> None:
        """A second trigger of a sharded account in progress is JOB_ALREADY_RUNNING."""
        world = World()
        sharded(world)
        with pytest.raises(JobAlreadyRunning):
            world.service().trigger(world.company, shards=2)


class TestCancelAndHalt:
    def test_cancel_reaches_a_running_shard_at_its_next_batch(self) -> None:
        """A cancel during shard 1's run stops it after one more batch; a resume ends as a clean run."""
        solo, solo_job = unsharded_end()
        world = World()
        sharded(world, 2)
        service = world.service(settings=NO_HALT)
        batches: list[int] = []

        def cancel_once(view: MigrationJob) -> None:
            batches.append(view.last_audit_id)
            if len(batches) == 1:
                service.cancel(world.company)

        stopped = service.run_shard(world.company, 1, owner="a", on_progress=cancel_once)
        assert stopped.job.status == CANCELLED
        assert len(batches) == 2  # the batch in flight when cancel landed is written, then it stops
        with pytest.raises(JobNotRunnable, match="is cancelled"):  # no run takes a cancelled job up
            service.run_shard(world.company, 0, owner="b")
        assert stopped.job.shards[1].last_audit_id == batches[0]  # the cancelled batch's cursor not saved
        service.trigger(world.company, restart=RESUME)
        job = service.run(world.company, owner="c").job
        assert (job.status, job.tally) == (COMPLETED, solo_job.tally)
        assert timeline(world) == timeline(solo)

    def test_a_shard_that_halts_halts_the_job_and_the_others_stop(self) -> None:
        """A shard whose rows fail past the threshold halts the job; another shard then stops too."""
        world = World()
        job = sharded(world, 2)
        bad = [r for r in world.source.page(world.tenant, world.transformer.scope, after_id=-1,
                                             cutoff=job.cutoff, limit=10_000)
               if r.id <= (job.shards[0].until_id or 0)]  # fmt: skip
        for r in bad:
            world.source.add(attrs.evolve(r, audited_changes="--- [unclosed"))
        settings = RunSettings(page_size=50, halt_sample=50)
        service = world.service(settings=settings)
        halted = service.run_shard(world.company, 0, owner="a")
        assert halted.job.status == HALTED
        assert halted.job.halted_reason is not None
        assert halted.job.halted_reason.startswith("shard 0: ")
        assert halted.job.shards[0].tally.processed == 25  # 2 shards: each checks every 50 / 2 rows
        other = service.run_shard(world.company, 1, owner="b")
        assert other.job.status == HALTED
        assert other.job.shards[1].tally.processed == 0


class TestShardedHalt:
    @pytest.mark.parametrize("page_size", [500, 50, 7])
    def test_a_usman_outage_halts_a_sharded_job_before_its_rows_are_written(self, page_size: int) -> None:
        """4 shards of ~190 rows check every 200 / 4 of their rows: USMAN down halts the job at a
        shard's check point, as an unsharded run halts at 200 — not after every row is written."""
        world = World(sso_failing=True)
        assert len(sharded(world, 4).shards) == 4
        settings = RunSettings(halt_threshold=1.0, page_size=page_size)
        halted = world.service(settings=settings).run(world.company, owner="a").job
        assert halted.status == HALTED
        assert (halted.halted_reason or "").startswith("shard 0: USMAN:")
        assert halted.shards[0].tally.processed == 50
        assert halted.tally.processed == 50
        assert [s.tally.processed for s in halted.shards[1:]] == [0, 0, 0]

    def test_each_shard_decides_on_its_own_rows_whatever_ran_before(self) -> None:
        """Shard 2 halts at the same cursor whether it runs first or after shards 0 and 1 completed."""

        def world_with_bad_shard_2() -> World:
            world = World()
            job = sharded(world, 4)
            low, high = job.shards[2].after_id, job.shards[2].until_id or 0
            rows = world.source.page(world.tenant, world.transformer.scope, after_id=low,
                                     cutoff=job.cutoff, limit=10_000)  # fmt: skip
            for r in rows:
                if r.id <= high and r.id % 3 == 0:
                    world.source.add(attrs.evolve(r, audited_changes="--- [unclosed"))
            return world

        first = world_with_bad_shard_2()
        alone = first.service().run_shard(first.company, 2, owner="a").job
        later = world_with_bad_shard_2()
        service = later.service()
        service.run_shard(later.company, 0, owner="a")
        service.run_shard(later.company, 1, owner="a")
        after = service.run_shard(later.company, 2, owner="a").job
        assert alone.status == after.status == HALTED
        assert alone.shards[2].last_audit_id == after.shards[2].last_audit_id
        assert alone.shards[2].tally == after.shards[2].tally
