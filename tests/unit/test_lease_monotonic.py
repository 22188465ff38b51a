"""The half-lease margins are durations on a monotonic clock: a wall clock stepped back shortens none.

A run, ``verify --repair`` and a rollback renew their lease (hold) again before writing once half of
it has passed since the last renewal was sent. That duration was read on the wall clock
(``Clock.now``): a clock set back during a stall (NTP, an operator) by as long as the stall made it
look as if no time had passed, and the batch went out on a lease with less than half of it left — on
a job cancelled and rolled back meanwhile. It is read on ``Clock.monotonic`` now; the times the job
stores stay the wall clock's. (The rollback's case: ``tests/contract/test_contract_job_store.py``.)
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import attrs
import pytest

from crm_audit_adapters.bootstrap import SystemClock
from crm_audit_transform.domain import ActivityLog, EncodedLog, Migrated, WriteResult
from crm_audit_transform.errors import JobNotRunnable
from crm_audit_transform.jobs import COMPLETED, ROLLED_BACK, MigrationJob
from crm_audit_transform.testing import (
    FixedClock,
    InMemoryActivityLogStore,
    InMemoryJobStore,
)
from crm_audit_transform.usecases import RunSettings, VerifySettings
from crm_audit_transform.usecases._verify_repair import Repair
from crm_audit_transform.usecases.cancel import cancel
from crm_audit_transform.usecases.rollback import RollbackPorts, rollback
from crm_audit_transform.usecases.run import run_job
from support.corpus_account import World


def stall(*clocks: FixedClock, seconds: float, stepped_back: bool) -> None:
    """``seconds`` pass on every clock; with ``stepped_back``, the last (the host's) has its wall
    clock set back by as long meanwhile."""
    for clock in clocks:
        clock.advance(seconds)
    if stepped_back:
        host = clocks[-1]
        host.set(host.now() - dt.timedelta(seconds=seconds))


class TestFixedClock:
    def test_advance_moves_both_readings_and_set_moves_the_wall_clock_alone(self) -> None:
        """``advance`` is time passing; ``set`` (and a negative ``advance``) step the wall clock
        only, as NTP or an operator does: ``monotonic`` never goes back."""
        clock = FixedClock(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
        start = clock.monotonic()
        clock.advance(30)
        assert clock.monotonic() - start == 30
        clock.set(dt.datetime(2025, 1, 1, tzinfo=dt.UTC))
        clock.advance(-10)
        assert clock.monotonic() - start == 30
        assert clock.now() == dt.datetime(2024, 12, 31, 23, 59, 50, tzinfo=dt.UTC)

    def test_the_system_clocks_monotonic_reading_never_goes_back(self) -> None:
        """``SystemClock.monotonic`` is ``time.monotonic``: successive readings never decrease."""
        clock = SystemClock()
        readings = [clock.monotonic() for _ in range(1000)]
        assert readings == sorted(readings)


class TestARunsHalfLease:
    @pytest.mark.parametrize("stepped_back", [False, True])
    def test_a_stall_with_the_wall_clock_set_back_still_renews_before_inserting(
        self, stepped_back: bool
    ) -> None:
        """The runner stalls in a page's lookups past its lease, on the database's clock and on its
        own; meanwhile the job is cancelled and rolled back. Its host's wall clock is also set back by
        as long: back from the lookups it renews all the same, finds the job rolled back
        (``JOB_NOT_RUNNABLE``) and inserts nothing. On the wall clock it measured no time, inserted a
        batch behind the rollback and failed only at its next write."""
        world = World()
        world.trigger()
        host = FixedClock(world.clock.now())  # the runner's host; world.clock is the database's
        inner = world.contacts
        stalled: list[int] = []

        class SlowContacts:
            def __getattr__(self, name: str) -> Any:
                return getattr(inner, name)

            def contacts_by_crm_ids(self, *args: Any, **kwargs: Any) -> Any:
                if not stalled:
                    stalled.append(1)
                    cancel(world.company, jobs=world.jobs, clock=world.clock)
                    seconds = RunSettings().lease_seconds + 1
                    stall(world.clock, host, seconds=seconds, stepped_back=stepped_back)
                    rollback(world.company, RollbackPorts(world.jobs, world.logs, world.clock))
                return inner.contacts_by_crm_ids(*args, **kwargs)

        world.contacts = SlowContacts()  # type: ignore[assignment]
        ports = attrs.evolve(world.run_ports(), clock=host)
        with pytest.raises(JobNotRunnable, match="rolled_back"):
            run_job(world.company, ports, world.transformer, owner="runner-1")
        assert stalled == [1]
        assert world.logs.count_migrated(world.company) == 0
        stored = world.jobs.latest(world.company)
        assert stored is not None
        assert (stored.status, stored.lease_owner) == (ROLLED_BACK, None)


class TestARepairsHalfLease:
    @pytest.mark.parametrize("stepped_back", [False, True])
    def test_a_growth_past_half_the_lease_with_the_clock_set_back_renews_before_the_batch(
        self, stepped_back: bool
    ) -> None:
        """The mark's growth takes three quarters of the lease, and the wall clock is set back by as
        long meanwhile: the lease is renewed again before the first batch all the same (on the wall
        clock the batch went first)."""
        world = World()
        world.trigger()
        job = world.run(settings=RunSettings(halt_threshold=1.0)).job
        assert job.status == COMPLETED
        job = attrs.evolve(job, source_mark="mark-1")
        world.jobs.save(job)
        missing = [
            Migrated(int(log.external_id.rsplit(":", 1)[1]), log)
            for log in world.logs.logs
            if log.external_id is not None
        ][:60]
        settings = VerifySettings(repair=True, lease_seconds=60)
        events: list[str] = []

        class SlowGrowth:
            def __getattr__(self, name: str) -> Any:
                return getattr(world.source, name)

            def source_mark(self) -> str | None:
                return "mark-1"

            def mark_changed(self, mark: str) -> str | None:
                return None

            def grown_mark(self, mark: str) -> str | None:
                stall(world.clock, seconds=45, stepped_back=stepped_back)
                events.append("grown")
                return "mark-2"

            def mark_covers(self, mark: str, grown: str) -> bool:
                return mark == grown

        class Recording(InMemoryJobStore):
            def acquire_lease(self, job_id: str, owner: str, ttl: Any) -> MigrationJob:
                events.append("renewed")
                return super().acquire_lease(job_id, owner, ttl)

        class RecordingLogs(InMemoryActivityLogStore):
            def insert_batch(self, logs: Sequence[ActivityLog | EncodedLog]) -> Sequence[WriteResult]:
                events.append("batch")
                return super().insert_batch(logs)

        jobs = Recording(world.jobs.jobs, clock=world.clock)
        timeline = RecordingLogs()
        ports = world.verify_ports(jobs, logs=timeline, source=SlowGrowth())  # type: ignore[arg-type]
        Repair(ports, settings, "verify").write(missing, job)
        assert events[:4] == ["renewed", "grown", "renewed", "batch"]
        assert len(timeline.logs) == 60
