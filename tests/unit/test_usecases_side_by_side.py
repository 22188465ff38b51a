"""A sharded job's shards side by side (``usecases.side_by_side``), over a launcher that runs each
shard in this process when its events are asked for: the queue, the summed progress, a stop, a
halt, a failed and a lost shard. The processes themselves: tests/e2e/test_cli_shard_processes.py."""

from __future__ import annotations

from collections import deque

import attrs
import pytest

from crm_audit_transform.errors import DirectoryRefused, WorkerLost
from crm_audit_transform.jobs import COMPLETED, HALTED, IN_PROGRESS, MigrationJob
from crm_audit_transform.ports import ShardEvent
from crm_audit_transform.usecases import RunSettings
from support.corpus_account import World

NO_HALT = RunSettings(halt_threshold=1.0, page_size=50)


class InlineLauncher:
    """``ports.ShardLauncher`` that runs a started shard's whole ``run_shard`` here, at the first
    ``next_event`` after it was started (one shard a call), so a stop asked before is seen at its
    first batch. ``lose``: shards whose "process" takes the lease and dies; ``fail``: shards whose
    run raises that error; ``halt``: shards that halt the job before their first row."""

    def __init__(self, world: World, workers: int, **script: object) -> None:
        self.world = world
        self._workers = workers
        self.lose: set[int] = set(script.get("lose", ()))  # type: ignore[call-overload]
        self.fail: dict[int, Exception] = dict(script.get("fail", {}))  # type: ignore[call-overload]
        self.halt: set[int] = set(script.get("halt", ()))  # type: ignore[call-overload]
        self.started: list[int] = []
        self.most_at_once = 0
        self.stop_asked = False
        self.closed = False
        self._to_run: deque[int] = deque()
        self._running = 0
        self._events: deque[ShardEvent] = deque()

    @property
    def workers(self) -> int:
        return self._workers

    def start(self, company_sso_id: str, shard: int) -> str:
        self.started.append(shard)
        self._to_run.append(shard)
        self._running += 1
        self.most_at_once = max(self.most_at_once, self._running)
        return f"inline:{shard}"

    def next_event(self, timeout: float) -> ShardEvent | None:
        if not self._events and self._to_run:
            self._run(self._to_run.popleft())
        event = self._events.popleft() if self._events else None
        if event is not None and event.kind != "progress":
            self._running -= 1
        return event

    def _run(self, shard: int) -> None:
        world, owner = self.world, f"inline:{shard}"
        job = world.jobs.latest(world.company)
        assert job is not None
        if shard in self.lose:
            world.jobs.acquire_shard_lease(job.job_id, shard, owner, NO_HALT.lease_ttl)
            self._events.append(ShardEvent(shard, "lost", error=WorkerLost(f"shard {shard} killed")))
            return
        if shard in self.fail:
            self._events.append(ShardEvent(shard, "failed", error=self.fail[shard]))
            return
        if shard in self.halt:
            halted = attrs.evolve(job, status=HALTED, halted_reason=f"shard {shard}: test")
            stored = world.jobs.transition(halted, {IN_PROGRESS})
            self._events.append(ShardEvent(shard, "done", job=stored))
            return
        result = world.service(settings=NO_HALT).run_shard(
            world.company,
            shard,
            owner=owner,
            should_stop=lambda: self.stop_asked,
            on_progress=lambda view: self._events.append(ShardEvent(shard, "progress", job=view)),
        )
        self._events.append(ShardEvent(shard, "done", job=result.job, stopped=result.stopped))

    def stop(self) -> None:
        self.stop_asked = True

    def close(self) -> None:
        self.closed = True


def sharded(world: World, parts: int) -> MigrationJob:
    world.service().trigger(world.company, shards=parts)
    job = world.jobs.latest(world.company)
    assert job is not None
    assert len(job.shards) == parts
    return job


def timeline(world: World) -> list[str]:
    return sorted(repr(log) for log in world.logs.logs)


def one_after_another(parts: int) -> tuple[World, MigrationJob]:
    world = World()
    sharded(world, parts)
    return world, world.service(settings=NO_HALT).run(world.company, owner="solo").job


class TestSideBySide:
    def test_four_shards_on_two_workers_end_as_one_after_another(self) -> None:
        """Queued beyond the workers, each shard once; the job, counts and logs of the sequential run."""
        expected_world, expected = one_after_another(4)
        world = World()
        sharded(world, 4)
        launcher = InlineLauncher(world, 2)
        seen: list[MigrationJob] = []

        result = world.service(settings=NO_HALT, shards=launcher).run(
            world.company, owner="unused", on_progress=seen.append
        )

        assert (launcher.started, launcher.most_at_once, launcher.closed) == ([0, 1, 2, 3], 2, True)
        assert result.job.status == COMPLETED
        assert result.stopped is False
        assert result.job.tally == expected.tally
        assert timeline(world) == timeline(expected_world)
        # Progress is the whole job: counts summed over the shards, never going back.
        processed = [job.tally.processed for job in seen]
        assert processed == sorted(processed)
        assert processed[-1] == expected.tally.processed
        assert {len(job.shards) for job in seen} == {4}
        assert seen[-1].progress_pct == 100.0

    def test_a_stop_stops_the_running_shards_after_a_batch_and_starts_no_other(self) -> None:
        world = World()
        sharded(world, 4)
        launcher = InlineLauncher(world, 2)

        result = world.service(settings=NO_HALT, shards=launcher).run(
            world.company, owner="unused", should_stop=lambda: bool(launcher.started)
        )

        assert launcher.started == [0, 1]
        assert result.stopped is True
        assert result.job.status == IN_PROGRESS
        assert [s.lease_owner for s in result.job.shards] == [None] * 4
        assert result.job.tally.processed > 0
        # The rerun resumes every shard from its cursor to the sequential run's end.
        expected_world, expected = one_after_another(4)
        again = world.service(settings=NO_HALT, shards=InlineLauncher(world, 2)).run(world.company, owner="x")
        assert again.job.status == COMPLETED
        assert again.job.tally == expected.tally
        assert timeline(world) == timeline(expected_world)

    def test_a_stop_asked_as_a_shard_ends_starts_no_queued_shard(self) -> None:
        """A Ctrl-C that comes with a shard's end: the next queued shard is not started (it was,
        before the stop was asked, out of the stop's reach: a double Ctrl-C then left its lease held,
        tests/e2e/test_cli_shard_processes.py). Fails on the old code: started [0, 1, 2]."""
        world = World()
        sharded(world, 3)
        launcher = InlineLauncher(world, 2)
        ends: list[int] = []
        next_event = launcher.next_event

        def ctrl_c_with_the_first_end(timeout: float) -> ShardEvent | None:
            event = next_event(timeout)
            if event is not None and event.kind == "done":
                ends.append(event.shard)
            return event

        launcher.next_event = ctrl_c_with_the_first_end  # type: ignore[method-assign]
        result = world.service(settings=NO_HALT, shards=launcher).run(
            world.company, owner="unused", should_stop=lambda: bool(ends)
        )

        assert ends[0] == 0
        assert launcher.started == [0, 1]
        assert result.stopped is True
        assert result.job.status == IN_PROGRESS
        assert [s.lease_owner for s in result.job.shards] == [None] * 3
        assert result.job.shards[2].tally.processed == 0

    def test_a_stop_asked_before_the_run_starts_no_shard(self) -> None:
        world = World()
        sharded(world, 2)
        launcher = InlineLauncher(world, 2)

        result = world.service(settings=NO_HALT, shards=launcher).run(
            world.company, owner="unused", should_stop=lambda: True
        )

        assert (launcher.started, launcher.closed) == ([], True)
        assert result.stopped is True
        assert result.job.status == IN_PROGRESS
        assert result.job.tally.processed == 0

    def test_a_halted_job_starts_no_queued_shard_and_asks_no_stop(self) -> None:
        """The shards still running find the job halted at their next batch, as on Celery."""
        world = World()
        sharded(world, 4)
        launcher = InlineLauncher(world, 2, halt={0})

        result = world.service(settings=NO_HALT, shards=launcher).run(world.company, owner="unused")

        assert launcher.started == [0, 1]
        assert launcher.stop_asked is False
        assert (result.job.status, result.stopped) == (HALTED, False)
        assert [s.tally.processed for s in result.job.shards[2:]] == [0, 0]

    def test_a_failed_shard_stops_the_others_and_its_error_is_raised(self) -> None:
        world = World()
        sharded(world, 3)
        refused = DirectoryRefused("USMAN answered 401", status_code=401)
        launcher = InlineLauncher(world, 2, fail={0: refused})

        with pytest.raises(DirectoryRefused) as raised:
            world.service(settings=NO_HALT, shards=launcher).run(world.company, owner="unused")

        assert raised.value is refused
        assert (launcher.started, launcher.stop_asked, launcher.closed) == ([0, 1], True, True)

    def test_a_lost_shard_is_worker_lost_and_only_its_lease_is_handed_back(self) -> None:
        world = World()
        sharded(world, 3)
        launcher = InlineLauncher(world, 2, lose={0})

        with pytest.raises(WorkerLost):
            world.service(settings=NO_HALT, shards=launcher).run(world.company, owner="unused")

        job = world.jobs.latest(world.company)
        assert job is not None
        assert launcher.started == [0, 1]
        assert launcher.stop_asked is True
        assert job.status == IN_PROGRESS
        assert [s.lease_owner for s in job.shards] == [None, None, None]
        assert job.shards[0].tally.processed == 0
        # Shard 1 stopped at its first batch and saved it; the rerun ends as the sequential run.
        assert job.shards[1].tally.processed > 0
        expected_world, expected = one_after_another(3)
        again = world.service(settings=NO_HALT, shards=InlineLauncher(world, 2)).run(world.company, owner="x")
        assert again.job.tally == expected.tally
        assert timeline(world) == timeline(expected_world)

    def test_the_lease_of_a_lost_shard_taken_over_by_another_runner_is_left_alone(self) -> None:
        world = World()
        job = sharded(world, 2)
        launcher = InlineLauncher(world, 2, lose={0})
        original = launcher._run

        def taken_over(shard: int) -> None:
            original(shard)
            if shard == 0:  # the dead process's lease expired and another runner took the shard
                world.jobs.save_shard_progress(job.job_id, job.shards[0], "inline:0", None)
                world.jobs.acquire_shard_lease(job.job_id, 0, "other:1", NO_HALT.lease_ttl)

        launcher._run = taken_over  # type: ignore[method-assign]
        with pytest.raises(WorkerLost):
            world.service(settings=NO_HALT, shards=launcher).run(world.company, owner="unused")

        stored = world.jobs.latest(world.company)
        assert stored is not None
        assert stored.shards[0].lease_owner == "other:1"
