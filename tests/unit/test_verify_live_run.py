"""Verify of an account whose job is written while it walks (a live run): not a proof, and said so."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence

import attrs

from crm_audit_adapters.cli.verify import summary_lines
from crm_audit_transform.testing import InMemoryMigratedLogReader
from crm_audit_transform.usecases import RunSettings
from crm_audit_transform.verification import StoredMigratedLog
from support.corpus_account import World


def migrated_world() -> World:
    world = World("acme")
    world.trigger()
    world.run(settings=RunSettings(page_size=200, halt_threshold=1.0))
    return world


class WritesTheJobOnce(InMemoryMigratedLogReader):
    """A reader during whose first page read a run saves the job: its cursor and lease moved on."""

    world: World | None = None

    def migrated_logs(
        self, company_sso_id: str, external_ids: Collection[str]
    ) -> Sequence[StoredMigratedLog]:
        world, self.world = self.world, None
        if world is not None:
            job = world.jobs.latest(company_sso_id)
            assert job is not None
            world.jobs.save(
                attrs.evolve(
                    job, lease_owner="host:1:token", updated_at=job.updated_at + dt.timedelta(seconds=1)
                )
            )
        return super().migrated_logs(company_sso_id, external_ids)


class TestLiveRun:
    def test_a_job_written_during_the_walk_is_not_consistent(self) -> None:
        """A clean account whose job is written while verify walks it is not clean: the job moved
        (``moved``), and the summary says to verify again. Before, it was compared as read first."""
        world = migrated_world()
        assert world.verify().clean
        reader = WritesTheJobOnce(world.logs)
        reader.world = world
        world.reader = reader
        report = world.verify()
        assert report.job is not None
        assert (report.job.moved, report.job.consistent, report.clean) == (True, False, False)
        assert report.job.mismatches == ()
        assert report.to_json()["job"]["moved"] is True
        (line,) = [line for line in summary_lines(report) if "written while verify read" in line]
        assert "verify again when no run writes it" in line

    def test_an_untouched_job_has_not_moved(self) -> None:
        report = migrated_world().verify()
        assert report.job is not None
        assert (report.job.moved, report.to_json()["job"]["moved"]) == (False, False)

    def test_repair_holds_the_lease_and_is_never_moved(self) -> None:
        """``--repair`` writes the job itself under its lease: its own writes are not a live run's."""
        world = migrated_world()
        report = world.verify(repair=True)
        assert report.job is not None
        assert not report.job.moved
