"""The run loop: pages, batches, durable progress per batch, halt, stop, leases, degraded USMAN."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import attrs
import pytest

from crm_audit_transform.domain import AuditRow, Failed, Outcome
from crm_audit_transform.errors import JobNotFound, LeaseHeld
from crm_audit_transform.jobs import CANCELLED, COMPLETED, HALTED, IN_PROGRESS, MigrationJob
from crm_audit_transform.testing import FixedClock, InMemoryJobStore
from crm_audit_transform.usecases import MigrationStatus, RunSettings
from support.corpus_account import World

GOOD = "---\nfirst_name: Ann\n"
BAD = "--- [unclosed"
NO_HALT = RunSettings(halt_threshold=1.0)


def row(
    audit_id: int, changes: str = GOOD, *, type_: str = "Crm::Person", user_id: int | None = 1
) -> AuditRow:
    return AuditRow(
        tenant="acme",
        id=audit_id,
        auditable_type=type_,
        auditable_id=1,
        action="create",
        audited_changes=changes,
        created_at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=audit_id),
        user_id=user_id,
        user_type="User" if user_id else None,
    )


class ShortPages:
    """An AuditSource whose pages end after at most ``most`` rows, as a byte budget ends them."""

    def __init__(self, source: Any, most: int) -> None:
        self._source = source
        self._most = most

    def scope_bounds(self, tenant: str, scope: Sequence[str], cutoff: dt.datetime | None) -> Any:
        return self._source.scope_bounds(tenant, scope, cutoff)

    def page(
        self, tenant: str, scope: Sequence[str], *, after_id: int, cutoff: dt.datetime, limit: int
    ) -> Sequence[AuditRow]:
        return self._source.page(
            tenant, scope, after_id=after_id, cutoff=cutoff, limit=min(limit, self._most)
        )

    def audit_by_id(self, tenant: str, audit_id: int) -> AuditRow | None:
        return self._source.audit_by_id(tenant, audit_id)


class TestShortPages:
    def test_a_page_shorter_than_asked_is_not_the_end(self) -> None:
        """A source may end a page early (a byte budget): the run reads on until a page is empty,
        and migrates exactly what a run over full pages does."""
        plain = World()
        plain.trigger()
        expected = plain.run(settings=NO_HALT).job
        world = World()
        world.source = ShortPages(world.source, 7)  # type: ignore[assignment]
        world.trigger()
        job = world.run(settings=NO_HALT).job
        assert job.status == COMPLETED
        assert (job.tally, job.last_audit_id) == (expected.tally, expected.last_audit_id)
        assert repr(world.logs.logs) == repr(plain.logs.logs)


class RecordingJobs(InMemoryJobStore):
    """Records every job as written, and counts the writes of each kind."""

    def __init__(self, clock: FixedClock) -> None:
        super().__init__(clock=clock)
        self.saved: list[MigrationJob] = []
        self.writes: dict[str, int] = {}

    def _count(self, kind: str) -> None:
        self.writes[kind] = self.writes.get(kind, 0) + 1

    def save(self, job: MigrationJob) -> None:
        super().save(job)
        self._count("save")
        self.saved.append(job)

    def save_progress(self, job: MigrationJob, owner: str, ttl: dt.timedelta | None) -> MigrationJob:
        stored = super().save_progress(job, owner, ttl)
        self._count("save_progress")
        self.saved.append(stored)
        return stored

    def acquire_lease(self, job_id: str, owner: str, ttl: dt.timedelta) -> MigrationJob:
        leased = super().acquire_lease(job_id, owner, ttl)
        self._count("acquire_lease")
        return leased


def world_of(rows: Sequence[AuditRow]) -> World:
    world = World(rows=list(rows))
    world.jobs = RecordingJobs(world.clock)
    return world


class TestRunToCompletion:
    def test_every_row_is_counted_once_and_the_job_completes(self) -> None:
        """Processed equals the in-scope rows, the cursor ends on the last id, progress is 100%."""
        world = World()
        world.trigger()
        result = world.run(settings=NO_HALT)
        job = result.job
        assert job.status == COMPLETED
        assert job.tally.processed == 759
        assert job.tally.migrated == len(world.logs.logs)
        assert job.tally.processed == job.tally.migrated + job.tally.skipped_total + job.tally.failed_total
        assert (job.last_audit_id, job.progress_pct) == (759, 100.0)
        assert job.lease_owner is None
        assert job.finished_at == world.clock.now()

    def test_progress_is_saved_after_every_batch_of_at_most_twenty_logs(self) -> None:
        """Each save moves the cursor forward over at most 20 newly written logs."""
        world = world_of([row(n) for n in range(1, 46)])
        world.trigger()
        world.run(settings=NO_HALT)
        saved = world.jobs.saved  # type: ignore[attr-defined]
        progress = [j for j in saved if j.status == IN_PROGRESS]
        assert [j.last_audit_id for j in progress] == [20, 40, 45]
        assert [j.tally.migrated for j in progress] == [20, 40, 45]
        assert saved[-1].status == COMPLETED

    def test_cursor_covers_skipped_and_failed_rows_before_it(self) -> None:
        """Rows that write nothing ride along with the batch before them and are behind its cursor."""
        rows = [row(n) for n in range(1, 21)] + [row(21, BAD), row(22, type_="Crm::Unknown"), row(23)]
        world = world_of(rows)
        world.trigger()
        world.run(settings=NO_HALT)
        progress = [j for j in world.jobs.saved if j.status == IN_PROGRESS]  # type: ignore[attr-defined]
        assert [j.last_audit_id for j in progress] == [21, 23]
        assert progress[-1].tally.processed == 22  # the unmapped type is outside the scope query

    def test_pages_follow_the_keyset_cursor(self) -> None:
        """Small pages give the same result as one big page."""
        rows = [row(n, BAD if n % 7 == 0 else GOOD) for n in range(1, 60)]
        big, small = world_of(rows), world_of(rows)
        for world, size in ((big, 500), (small, 8)):
            world.trigger()
            world.run(settings=RunSettings(page_size=size, halt_threshold=1.0))
        assert small.logs.logs == big.logs.logs
        assert small.jobs.latest(small.company).tally == big.jobs.latest(big.company).tally  # type: ignore[union-attr]

    def test_reports_progress_after_each_batch(self) -> None:
        """on_progress sees every saved job, ending with the completed one."""
        world = world_of([row(n) for n in range(1, 30)])
        world.trigger()
        seen: list[MigrationJob] = []
        world.run(settings=NO_HALT, on_progress=seen.append)
        assert [j.last_audit_id for j in seen] == [20, 29, 29]
        assert seen[-1].status == COMPLETED

    def test_a_job_without_rows_completes_at_once(self) -> None:
        """A tenant with nothing in scope completes with zero counts."""
        world = world_of([])
        world.trigger()
        job = world.run().job
        assert (job.status, job.tally.processed) == (COMPLETED, 0)


class TestHalt:
    def test_halts_at_the_first_check_point_over_ten_percent(self) -> None:
        """Over 10% failed at a check point (every halt_sample rows) halts there, cursor kept."""
        rows = [row(n) for n in range(1, 21)] + [row(n, BAD) for n in range(21, 25)] + [row(25)]
        world = world_of(rows + [row(n) for n in range(26, 60)])
        world.trigger()
        job = world.run(settings=RunSettings(halt_sample=10)).job
        assert job.status == HALTED
        assert job.last_audit_id == 30  # 4 of 30 = 13% at the third check point; 0% at 10 and 20
        assert job.tally.failed_total == 4
        assert "exceeded 10%" in (job.halted_reason or "")
        assert job.lease_owner is None

    def test_exactly_ten_percent_does_not_halt(self) -> None:
        """The rule is strictly greater than 0.10."""
        world = world_of([row(n, BAD if n == 5 else GOOD) for n in range(1, 11)])
        world.trigger()
        job = world.run().job
        assert (job.status, job.tally.failure_rate) == (COMPLETED, 0.1)

    def test_a_halted_job_is_not_run_again(self) -> None:
        """Running a halted account returns it untouched; a new trigger starts over."""
        world = world_of([row(1, BAD), row(2)])
        world.trigger()
        halted = world.run(settings=RunSettings(halt_sample=2)).job
        assert halted.status == HALTED
        assert world.run().job == halted

    @pytest.mark.parametrize(("count", "bad"), [(1, {1}), (3, {2}), (199, set(range(1, 100)))])
    def test_fewer_rows_than_the_sample_never_halt_at_the_end(self, count: int, bad: set[int]) -> None:
        """The minimum sample: a tenant of fewer than halt_sample rows completes, its failures counted."""
        world = world_of([row(n, BAD if n in bad else GOOD) for n in range(1, count + 1)])
        world.trigger()
        result = world.run()
        assert (result.job.status, result.would_halt) == (COMPLETED, None)
        assert result.job.tally.failed_total == len(bad)

    def test_the_end_decides_on_a_full_sample(self) -> None:
        """From halt_sample rows on, the end of the data is a check point: 250 rows, 40 failed after 200."""
        world = world_of([row(n, BAD if n > 210 else GOOD) for n in range(1, 251)])
        world.trigger()
        job = world.run().job
        assert (job.status, job.last_audit_id, job.tally.failed_total) == (HALTED, 250, 40)


class TestStop:
    def test_stop_request_finishes_the_batch_saves_and_resumes_later(self) -> None:
        """A stop after the first batch leaves an in-progress job another run completes identically."""
        rows = [row(n, BAD if n % 9 == 0 else GOOD) for n in range(1, 70)]
        clean = world_of(rows)
        clean.trigger()
        clean.run(settings=NO_HALT)
        world = world_of(rows)
        world.trigger()
        stopped = world.run(settings=NO_HALT, should_stop=lambda: True)
        assert stopped.stopped
        assert (stopped.job.status, stopped.job.lease_owner, stopped.steps) == (IN_PROGRESS, None, 1)
        assert stopped.job.last_audit_id == 22
        finished = world.run(owner="runner-2", settings=NO_HALT).job
        assert finished.tally == clean.jobs.latest(clean.company).tally  # type: ignore[union-attr]
        assert world.logs.logs == clean.logs.logs


class ChangedAtLease(InMemoryJobStore):
    """A job store where the job's status changes (a cancel, another runner's finish) just before
    the next lease is taken: between the runner's read of the job and its lease."""

    def __init__(self, clock: FixedClock, status: str) -> None:
        super().__init__(clock=clock)
        self.status = status

    def acquire_lease(self, job_id: str, owner: str, ttl: dt.timedelta) -> MigrationJob:
        (job,) = [j for j in self.jobs if j.job_id == job_id]
        self.save(attrs.evolve(job, status=self.status))
        return super().acquire_lease(job_id, owner, ttl)


class TestStatusChangedBeforeTheLease:
    @pytest.mark.parametrize("status", [CANCELLED, COMPLETED, HALTED])
    def test_the_run_writes_nothing(self, status: str) -> None:
        """A job cancelled, completed or halted between the read and the lease is left as it is: no log."""
        world = World(rows=[row(n) for n in range(1, 50)])
        world.jobs = ChangedAtLease(world.clock, status)
        world.trigger()
        result = world.run(settings=NO_HALT)
        assert world.logs.logs == ()
        assert result.job.status == status
        stored = world.jobs.latest(world.company)
        assert stored is not None
        assert (stored.status, stored.last_audit_id, stored.lease_owner) == (status, 0, None)

    def test_a_runner_that_held_the_lease_before_the_cancel_writes_nothing(self) -> None:
        """The cancel keeps the lease of the runner that held it; that runner (one Celery worker process
        runs its account's tasks under one owner) starting again does not take the job up."""
        world = World(rows=[row(n) for n in range(1, 50)])
        world.jobs = ChangedAtLease(world.clock, CANCELLED)
        job = world.trigger()
        InMemoryJobStore.acquire_lease(world.jobs, job.job_id, "runner-1", dt.timedelta(60))
        result = world.run(owner="runner-1", settings=NO_HALT)
        assert world.logs.logs == ()
        assert result.job.status == CANCELLED


class TestLease:
    def test_a_live_lease_keeps_a_second_runner_off(self) -> None:
        """While runner 1 holds an unexpired lease, runner 2 is refused with LeaseHeld."""
        world = world_of([row(n) for n in range(1, 50)])
        job = world.trigger()
        world.jobs.acquire_lease(job.job_id, "runner-1", dt.timedelta(60))
        with pytest.raises(LeaseHeld):
            world.run(owner="runner-2")
        assert world.logs.logs == ()

    def test_an_expired_lease_is_taken_over(self) -> None:
        """A runner that died leaves a lease that another runner takes once it expires."""
        world = world_of([row(n) for n in range(1, 50)])
        job = world.trigger()
        world.jobs.acquire_lease(job.job_id, "dead", dt.timedelta(seconds=120))
        world.clock.advance(121)
        assert world.run(owner="runner-2").job.status == COMPLETED

    def test_the_lease_is_renewed_on_every_batch(self) -> None:
        """Each progress write carries a lease that expires one TTL after that batch."""
        world = world_of([row(n) for n in range(1, 50)])
        world.trigger()

        def tick(_: MigrationJob) -> None:
            world.clock.advance(30)

        world.run(on_progress=tick, settings=RunSettings(lease_seconds=60))
        progress = [j for j in world.jobs.saved if j.status == IN_PROGRESS]  # type: ignore[attr-defined]
        expiries = [j.lease_expires_at for j in progress]
        assert expiries == sorted(set(expiries))  # type: ignore[type-var]
        assert all(j.lease_owner == "runner-1" for j in progress)

    def test_each_batch_makes_exactly_one_job_write(self) -> None:
        """One guarded save_progress per batch and one for the finish; the run adds only its first lease."""
        world = world_of([row(n) for n in range(1, 46)])
        world.trigger()
        result = world.run(settings=NO_HALT)
        assert result.steps == 3
        assert world.jobs.writes == {"acquire_lease": 1, "save_progress": 4}  # type: ignore[attr-defined]

    def test_steps_that_write_no_log_are_saved_with_the_next_save(self) -> None:
        """Steps cut at check points that write no log make no job write of their own: one per page."""
        rows = [row(n, BAD) for n in range(1, 36)] + [row(n) for n in range(36, 41)]
        world = world_of(rows)
        world.trigger()
        result = world.run(settings=RunSettings(halt_threshold=1.0, halt_sample=10, page_size=30))
        assert result.steps == 4  # cut at the check points 10, 20, 30 (the first page's end) and 40
        progress = [j for j in world.jobs.saved if j.status == IN_PROGRESS]  # type: ignore[attr-defined]
        assert [j.last_audit_id for j in progress] == [30, 40]
        assert world.jobs.writes == {"acquire_lease": 1, "save_progress": 3}  # type: ignore[attr-defined]
        assert (result.job.tally.processed, result.job.tally.failed_total) == (40, 35)

    def test_a_halt_between_saves_saves_the_check_points_cursor_and_counts(self) -> None:
        """A halt decided on unsaved log-free steps is written at that check point, as before."""
        world = world_of([row(n, BAD) for n in range(1, 60)])
        world.trigger()
        job = world.run(settings=RunSettings(halt_sample=10)).job
        assert (job.status, job.last_audit_id, job.tally.processed) == (HALTED, 10, 10)
        assert world.jobs.writes == {"acquire_lease": 1, "save_progress": 1}  # type: ignore[attr-defined]

    def test_a_runner_whose_lease_was_taken_over_gets_lease_held_and_writes_no_job(self) -> None:
        """After a takeover the stale runner's next progress write is refused; the job stays as taken."""
        world = world_of([row(n) for n in range(1, 50)])
        job = world.trigger()
        taken: list[MigrationJob] = []

        def take_over(progress: MigrationJob) -> None:
            if not taken:
                world.clock.advance(RunSettings().lease_seconds + 1)
                taken.append(world.jobs.acquire_lease(job.job_id, "runner-2", dt.timedelta(seconds=60)))

        with pytest.raises(LeaseHeld, match="runner-2"):
            world.run(owner="runner-1", on_progress=take_over)
        assert world.jobs.latest(world.company) == taken[0]
        assert taken[0].last_audit_id == 20
        assert world.jobs.writes["save_progress"] == 1  # type: ignore[attr-defined]
        finished = world.run(owner="runner-2").job
        assert (finished.status, finished.tally.migrated, finished.tally.processed) == (COMPLETED, 49, 49)
        ids = [log.external_id for log in world.logs.logs]
        assert len(ids) == len(set(ids)) == 49

    def test_a_runner_taken_over_before_its_finish_cannot_mark_the_job_finished(self) -> None:
        """The finish is guarded like progress: a stale runner gets LeaseHeld, the new owner keeps the job."""
        world = world_of([row(n) for n in range(1, 41)])
        job = world.trigger()
        taken: list[MigrationJob] = []

        def take_over_after_the_last_batch(progress: MigrationJob) -> None:
            if progress.last_audit_id == 40 and progress.status == IN_PROGRESS and not taken:
                world.clock.advance(RunSettings().lease_seconds + 1)
                taken.append(world.jobs.acquire_lease(job.job_id, "runner-2", dt.timedelta(seconds=60)))

        with pytest.raises(LeaseHeld, match="runner-2"):
            world.run(owner="runner-1", on_progress=take_over_after_the_last_batch)
        stored = world.jobs.latest(world.company)
        assert stored == taken[0]
        assert (stored.status, stored.lease_owner) == (IN_PROGRESS, "runner-2")
        finished = world.run(owner="runner-2").job
        assert (finished.status, finished.tally.processed, finished.lease_owner) == (COMPLETED, 40, None)

    def test_an_operator_abort_hands_the_lease_back(self) -> None:
        """A second Ctrl-C (KeyboardInterrupt) mid-run releases the lease, so a rerun starts at once."""
        world = world_of([row(n) for n in range(1, 50)])
        world.trigger()

        def abort(_: MigrationJob) -> None:
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            world.run(on_progress=abort)
        stored = world.jobs.latest(world.company)
        assert stored is not None
        assert (stored.lease_owner, stored.last_audit_id) == (None, 20)
        assert world.run(owner="runner-2").job.status == COMPLETED

    def test_an_untyped_error_hands_the_lease_back_and_propagates_as_it_was(self) -> None:
        """A RecursionError out of a port (USMAN's deep JSON) is no CrmAuditError: the run still hands
        its lease back before it goes on, so the account is not held for lease_seconds after the
        process has exited."""
        world = world_of([row(n) for n in range(1, 50)])
        world.trigger()

        def deep(_: MigrationJob) -> None:
            raise RecursionError("maximum recursion depth exceeded while decoding a JSON array")

        with pytest.raises(RecursionError, match="decoding a JSON array"):
            world.run(on_progress=deep)
        stored = world.jobs.latest(world.company)
        assert stored is not None
        assert (stored.lease_owner, stored.lease_expires_at, stored.last_audit_id) == (None, None, 20)
        assert world.run(owner="runner-2").job.status == COMPLETED

    def test_running_an_account_without_a_job_is_job_not_found(self) -> None:
        """Nothing to resume until a trigger created the job."""
        with pytest.raises(JobNotFound):
            World().run()


class TestDegradedDirectory:
    def test_dead_sso_directory_degrades_actors_and_drops_nothing(self) -> None:
        """Below the degraded threshold a USMAN outage only degrades actors: same records, counted."""
        healthy, dead = World(), World(sso_failing=True)
        lenient = RunSettings(halt_threshold=1.0, degraded_threshold=1.0)
        for world in (healthy, dead):
            world.trigger()
            world.run(settings=lenient)
        good = healthy.jobs.latest(healthy.company)
        bad = dead.jobs.latest(dead.company)
        assert good is not None
        assert bad is not None
        assert good.tally.actors_degraded == 0
        # Every SSO user is degraded, and so are active users USMAN would not have known: asked nothing,
        # the run cannot tell them apart.
        assert bad.tally.actors_degraded >= sum(x.actor.kind == "user" for x in healthy.logs.logs) > 0
        assert bad.tally.actors_degraded <= sum(x.actor.kind != "system" for x in dead.logs.logs)
        assert (bad.status, attrs.evolve(bad.tally, actors_degraded=0)) == (COMPLETED, good.tally)
        assert [x.external_id for x in dead.logs.logs] == [x.external_id for x in healthy.logs.logs]
        assert {x.actor.kind for x in dead.logs.logs} <= {"deleted_user", "system"}
        assert "user" in {x.actor.kind for x in healthy.logs.logs}
        assert all(
            repr(attrs.evolve(x, actor=y.actor)) == repr(y)  # repr: NaN values are not equal to themselves
            for x, y in zip(dead.logs.logs, healthy.logs.logs, strict=True)
        )


class TestDegradedHalt:
    def test_a_usman_outage_halts_at_the_first_check_point_naming_usman(self) -> None:
        """Degraded actors over 10% of a sample halt the job, cursor kept, the reason naming USMAN."""
        world = World(sso_failing=True)
        world.trigger()
        job = world.run(settings=NO_HALT).job
        assert job.status == HALTED
        assert (job.halted_reason or "").startswith("USMAN:")
        assert job.tally.processed == 200
        assert job.tally.actors_degraded > 20

    def test_the_degraded_share_moves_accuracy(self) -> None:
        """accuracy_pct counts degraded actors against accuracy, beside failures."""
        world = World(sso_failing=True)
        world.trigger()
        job = world.run(settings=NO_HALT).job
        status = MigrationStatus.of(job).as_dict()
        expected = 100 * (job.tally.processed - job.tally.failed_total - job.tally.actors_degraded)
        assert status["accuracy_pct"] == round(expected / job.tally.processed, 2)
        assert status["actors_degraded"] == job.tally.actors_degraded


class TestHaltIsAFunctionOfTheRows:
    @pytest.mark.parametrize(("page_size", "batch_size"), [(500, 20), (7, 3), (33, 20), (1, 1)])
    def test_page_and_batch_sizes_do_not_change_the_decision(self, page_size: int, batch_size: int) -> None:
        """6 bad rows among the first 29 of a mostly clean account never halt, however it is cut."""
        rows = [row(n, BAD if n in {3, 5, 8, 13, 21, 29} else GOOD) for n in range(1, 800)]
        world = world_of(rows)
        world.trigger()
        settings = RunSettings(page_size=page_size, batch_size=batch_size)
        assert world.run(settings=settings).job.status == COMPLETED

    def test_an_interrupted_run_decides_as_a_clean_one(self) -> None:
        """Stopping after every batch and resuming halts (or not) exactly where a clean run does."""
        rows = [row(n, BAD if n % 7 == 0 or 300 < n < 340 else GOOD) for n in range(1, 700)]
        clean = world_of(rows)
        clean.trigger()
        expected = clean.run().job
        world = world_of(rows)
        world.trigger()
        for attempt in range(200):
            result = world.run(owner=f"runner-{attempt}", should_stop=lambda: True)
            if not result.stopped:
                break
        assert (result.job.status, result.job.last_audit_id, result.job.tally) == (
            expected.status,
            expected.last_audit_id,
            expected.tally,
        )
        assert expected.status == HALTED


class SettingAside:
    """The world's source, handing over the given rows as set aside (``ports.RowsSetAside``) at the
    given ``page`` calls (0-based; -1: the first call that finds no row), each list once."""

    def __init__(self, inner: Any, aside: dict[int, list[Outcome]]) -> None:
        self._inner = inner
        self._aside = aside
        self._calls = 0
        self._pending: list[Outcome] = []

    def page(self, *args: Any, **kwargs: Any) -> Sequence[AuditRow]:
        rows = self._inner.page(*args, **kwargs)
        self._pending.extend(self._aside.pop(-1 if not rows else self._calls, []))
        self._calls += 1
        return rows

    def take_set_aside(self) -> Sequence[Outcome]:
        taken, self._pending = self._pending, []
        return taken

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class Pausing(SettingAside):
    """``SettingAside`` that gives no row at the given ``page`` calls, handing over the given rows
    set aside instead: a file source that paused in a run of lines it set aside (its next call
    goes on after the highest id it handed)."""

    def __init__(self, inner: Any, pauses: dict[int, list[Outcome]]) -> None:
        super().__init__(inner, {})
        self._pauses = pauses

    def page(self, *args: Any, **kwargs: Any) -> Sequence[AuditRow]:
        if self._calls in self._pauses:
            self._pending.extend(self._pauses.pop(self._calls))
            self._calls += 1
            return ()
        return super().page(*args, **kwargs)


def unreadable(audit_id: int) -> Failed:
    return Failed(audit_id, "invalid_audit_row", "line cannot become a row")


class TestIdsBelowOne:
    """Audit ids are bigints: 0 and negative ids are rows like any other (verify walks them too)."""

    def test_every_row_of_negative_ids_is_read(self) -> None:
        """A page was asked after id 0 instead of after its last id: every row between was skipped,
        and the job completed with 500 of 1,199 rows processed."""
        rows = [row(n) for n in range(-1200, -1)]
        world = world_of(rows)
        world.trigger()
        job = world.run(settings=NO_HALT).job
        assert (job.status, job.tally.processed, job.last_audit_id) == (COMPLETED, len(rows), -2)


class TestRowsSetAside:
    def test_set_aside_rows_count_in_id_order_for_the_halt_rule(self) -> None:
        """Rows a source sets aside are counted with their page in id order: 10 of the first 20 halt."""
        rows = [row(n) for n in range(1, 80, 2)]  # odd ids; the even ones are set aside
        world = world_of(rows)
        world.source = SettingAside(world.source, {0: [unreadable(n) for n in range(2, 80, 2)]})
        world.trigger()
        seen: list[int] = []
        result = world.run(
            settings=RunSettings(halt_sample=20),
            on_outcomes=lambda outcomes: seen.extend(o.audit_id for o in outcomes),
        )
        assert (result.job.status, result.job.last_audit_id) == (HALTED, 20)
        assert result.job.tally.failed == {"invalid_audit_row": 10}
        assert seen == list(range(1, 21))

    def test_rows_set_aside_after_the_last_page_are_counted_as_a_page(self) -> None:
        """Set-aside rows found after the last full page are counted, the cursor on the last of them."""
        world = world_of([row(n) for n in range(1, 11)])
        world.source = SettingAside(world.source, {-1: [unreadable(11), unreadable(12)]})
        world.trigger()
        job = world.run(settings=RunSettings(page_size=5, halt_threshold=1.0)).job
        assert (job.status, job.tally.processed, job.last_audit_id) == (COMPLETED, 12, 12)
        assert job.tally.failed == {"invalid_audit_row": 2}

    def test_a_page_of_no_rows_with_rows_set_aside_is_not_the_end(self) -> None:
        """A source that pauses in a run of lines it sets aside gives a page of none: the loop
        counts those rows as a page of their own and asks again after the last of them."""
        world = world_of([row(n) for n in range(1, 40, 3)])  # 1, 4, … 37
        world.source = Pausing(world.source, {1: [unreadable(14)], 2: [unreadable(15)]})
        world.trigger()
        seen: list[int] = []
        result = world.run(
            settings=RunSettings(page_size=5, halt_threshold=1.0),
            on_outcomes=lambda outcomes: seen.extend(o.audit_id for o in outcomes),
        )
        job = result.job
        assert (job.status, job.tally.processed, job.last_audit_id) == (COMPLETED, 15, 37)
        assert job.tally.failed == {"invalid_audit_row": 2}
        assert seen == [1, 4, 7, 10, 13, 14, 15, *range(16, 40, 3)]
