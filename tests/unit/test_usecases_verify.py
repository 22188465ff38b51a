"""Verify over in-memory ports: every kind of finding after its fault, repair, and the clean case."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import attrs
import pytest

from crm_audit_adapters.cli.verify import summary_lines
from crm_audit_transform.config import load_default_config
from crm_audit_transform.domain import ActivityLog, AuditRow, Contact
from crm_audit_transform.errors import (
    IndexesMissing,
    JobNotFound,
    JobNotRunnable,
    LeaseHeld,
    StoreUnavailable,
    TenantMismatch,
    TenantUnbound,
)
from crm_audit_transform.jobs import COMPLETED, HALTED, ROLLED_BACK, MigrationJob
from crm_audit_transform.loading import LoaderLimits
from crm_audit_transform.tally import Tally
from crm_audit_transform.testing import (
    InMemoryActivityLogStore,
    InMemoryContactDirectory,
    InMemoryIndexState,
    InMemoryMigratedLogReader,
)
from crm_audit_transform.transformer import Transformer
from crm_audit_transform.usecases import RunSettings, VerifySettings
from crm_audit_transform.usecases.rollback import RollbackPorts, rollback
from crm_audit_transform.usecases.verify import VerifyPorts, verify_account
from crm_audit_transform.verification import Mismatch, VerifyReport
from support.corpus_account import World, audit_rows, contacts
from support.final_status import final_status

SETTINGS = RunSettings(page_size=200, halt_threshold=1.0)


def migrated_world(tenant: str = "acme") -> World:
    world = World(tenant)
    world.trigger()
    world.run(settings=SETTINGS)
    return world


def with_logs(world: World, logs: list[ActivityLog]) -> None:
    world.logs = InMemoryActivityLogStore(logs)


def job_of(world: World) -> MigrationJob:
    job = world.jobs.latest(world.company)
    assert job is not None
    return job


def migrated_logs(world: World) -> list[ActivityLog]:
    return [log for log in world.logs.logs if log.external_id]


def audit_id(log: ActivityLog) -> int:
    value = log.metadata["crm_audit_id"]
    assert isinstance(value, int)
    return value


class TestFailureShare:
    def test_an_account_whose_every_row_fails_is_not_clean(self) -> None:
        """Fewer rows than the halt rule's minimum sample never halt, so an account whose every row
        fails completes; verify said "clean". More failing rows than the halt threshold is not clean."""
        rows = [attrs.evolve(row, audited_changes="{unclosed: [") for row in audit_rows("acme")[:20]]
        world = World("acme", rows=rows)
        world.trigger()
        world.run(settings=RunSettings(page_size=200))  # the default halt rule: 10%, 200 rows
        assert job_of(world).status == "completed"
        assert job_of(world).tally.failed_total == 20
        report = world.verify()
        assert (report.outstanding, report.failure_rate, report.halt_threshold) == ({}, 1.0, 0.1)
        assert not report.clean
        assert report.to_json()["failure_rate"] == 1.0

    @pytest.mark.parametrize(
        ("failed", "threshold", "clean"), [(1, 0.1, True), (2, 0.1, False), (2, None, True)]
    )
    def test_the_verdict_is_the_halt_rules_share(
        self, failed: int, threshold: float | None, clean: bool
    ) -> None:
        """Failed rows over walked audits, strictly above the threshold, as the halt rule decides."""
        report = VerifyReport(
            "co", "acme", audits=10, failed={"malformed_yaml": failed}, halt_threshold=threshold
        )
        assert report.clean is clean


class TestCleanAccount:
    @pytest.mark.parametrize("tenant", ["acme", "globex", "nusantara_retail"])
    def test_a_clean_run_verifies_clean_with_no_drift(self, tenant: str) -> None:
        """After a clean run every audit is accounted for, every content compares equal (NaN included)."""
        world = migrated_world(tenant)
        report = world.verify()
        job = job_of(world)
        assert report.clean, report.to_json()
        assert report.audits == job.tally.processed
        assert report.migrated == job.tally.migrated
        assert report.content_checked == job.tally.migrated
        assert dict(report.skipped) == dict(job.tally.skipped)
        assert dict(report.failed) == dict(job.tally.failed)
        assert report.outstanding == {}

    def test_pages_shorter_than_asked_are_walked_to_the_end(self) -> None:
        """A source ending pages early (a byte budget) is read on until a page is empty: clean."""
        from test_usecases_run import ShortPages

        world = migrated_world()
        world.source = ShortPages(world.source, 7)  # type: ignore[assignment]
        report = world.verify()
        assert report.clean, report.to_json()
        assert report.audits == job_of(world).tally.processed

    def test_the_corpus_nan_values_reach_the_compared_logs(self) -> None:
        """The clean case is meaningful: some migrated log carries a NaN, which == would call drift."""
        world = migrated_world("acme")
        values = [v for log in migrated_logs(world) for c in log.changes for v in (c.from_, c.to)]
        assert any(isinstance(v, float) and math.isnan(v) for v in values)
        assert world.verify().count("drifted") == 0

    def test_a_sample_compares_at_most_that_many_logs_per_page(self) -> None:
        """--sample N compares a random N per page, yet still accounts for every row."""
        world = migrated_world()
        report = world.verify(sample=3)
        pages = -(-report.audits // 200)
        assert 0 < report.content_checked <= 3 * pages
        assert report.migrated == job_of(world).tally.migrated
        assert report.clean


class TestFaults:
    def test_a_deleted_log_is_missing_and_the_job_disagrees(self) -> None:
        """A log deleted from the CDP is missing; the job's migrated count exceeds the logs found."""
        world = migrated_world()
        logs = list(world.logs.logs)
        gone = next(log for log in logs if log.external_id)
        with_logs(world, [log for log in logs if log is not gone])
        report = world.verify()
        assert [f.audit_id for f in report.findings["missing"].items] == [audit_id(gone)]
        assert report.job is not None
        assert [(m.figure, m.job - m.found) for m in report.job.mismatches] == [("migrated", 1)]
        assert not report.clean

    def test_a_stray_log_is_reported(self) -> None:
        """A crm_migration log naming no in-scope audit is a stray, by its external_id."""
        world = migrated_world()
        template = migrated_logs(world)[0]
        stray = attrs.evolve(template, external_id="crm:acme:audit:99999999")
        world.logs.insert_batch([stray])
        report = world.verify()
        assert [f.external_id for f in report.findings["stray"].items] == ["crm:acme:audit:99999999"]
        assert report.outstanding == {"stray": 1}

    @pytest.mark.parametrize(
        "spelling", ["0{id}", "-0", "00", "1" + "0" * 5000, str(2**63), str(-(2**63) - 1)]
    )
    def test_an_external_id_we_never_write_is_a_stray_even_when_its_number_is_walked(
        self, spelling: str
    ) -> None:
        """``crm:acme:audit:026`` is not audit 26's id (we write ``str(id)``): a second log for audit 26
        under it is a stray, not hidden by 26 being walked; a number of 5,001 digits is a stray too,
        not a ValueError from ``int``, and so is one outside bigint (``audits.id``), which no source
        reads."""
        world = migrated_world()
        template = migrated_logs(world)[0]
        odd = f"crm:acme:audit:{spelling.format(id=audit_id(template))}"
        world.logs.insert_batch([attrs.evolve(template, external_id=odd)])
        report = world.verify()
        assert [f.external_id for f in report.findings["stray"].items] == [odd]
        assert report.outstanding == {"stray": 1}

    def test_an_edited_log_drifts_on_the_edited_field_only(self) -> None:
        """A log whose category was changed is drifted on ``category``; enrichment keys are not drift."""
        world = migrated_world()
        logs = list(world.logs.logs)
        at = next(i for i, log in enumerate(logs) if log.external_id)
        edited = logs[at]
        logs[at] = attrs.evolve(
            edited, category="other", metadata={**edited.metadata, "linked_entity_name": "Added later"}
        )
        with_logs(world, logs)
        report = world.verify()
        found = report.findings["drifted"].items
        assert [(f.audit_id, f.detail) for f in found] == [(audit_id(edited), "category")]

    def test_actors_left_unchecked_by_a_usman_outage_are_counted_and_not_clean(self) -> None:
        """With USMAN down the recomputed actors are degraded: a forged actor is not drift, but the logs
        whose actor could not be compared are counted and the account is not clean. With USMAN up the
        forgery is drift on ``actor``. Before, the outage verified clean."""
        world = migrated_world()
        logs = list(world.logs.logs)
        at = next(i for i, log in enumerate(logs) if log.external_id and log.actor.kind == "user")
        forged = logs[at]
        logs[at] = attrs.evolve(forged, actor=attrs.evolve(forged.actor, sso_id="0" * 36, name="mallory"))
        with_logs(world, logs)
        world.sso.failing = True
        down = world.verify()
        assert down.actors_unchecked >= 1
        assert (down.outstanding, down.clean, down.to_json()["actors_unchecked"]) == (
            {},
            False,
            down.actors_unchecked,
        )
        assert any("actors unchecked" in line for line in summary_lines(down))
        world.sso.failing = False
        up = world.verify()
        assert (up.actors_unchecked, up.outstanding) == (0, {"drifted": 1})
        assert [(f.audit_id, f.detail) for f in up.findings["drifted"].items] == [(audit_id(forged), "actor")]

    def test_a_row_committed_behind_the_cursor_is_missing_and_uncounted(self) -> None:
        """A row that commits after the run passed its id is missing, and the job's processed is short."""
        world, behind = late_world()
        report = world.verify()
        assert [f.audit_id for f in report.findings["missing"].items] == [behind.id]
        assert report.job is not None
        assert {m.figure: (m.job, m.found) for m in report.job.mismatches} == {
            "processed": (job_of(world).tally.processed, job_of(world).tally.processed + 1)
        }

    def test_a_log_past_its_contacts_watermark_is_reported(self) -> None:
        """A migrated log at or after its contact's created_at belongs to the live feed."""
        world = migrated_world()
        logs = list(world.logs.logs)
        at = next(i for i, log in enumerate(logs) if log.external_id)
        logs[at] = attrs.evolve(logs[at], timestamp=dt.datetime(2026, 6, 1, tzinfo=dt.UTC))
        with_logs(world, logs)
        report = world.verify()
        assert report.count("past_watermark") == 1
        assert report.findings["drifted"].items[0].detail == "timestamp"

    def test_a_log_moved_to_a_customer_no_row_names_is_checked_against_that_contacts_watermark(
        self,
    ) -> None:
        """A stored log's own customer is looked up for the seam, even when no row of its page names it."""
        world = migrated_world()
        logs = list(world.logs.logs)
        at = next(i for i, log in enumerate(logs) if log.external_id)
        synced_before = logs[at].timestamp - dt.timedelta(days=1)
        stranger = Contact("contact-nobody-names", world.company, 990_000_001, synced_before)
        world.contacts.add(stranger)
        logs[at] = attrs.evolve(
            logs[at],
            customer_id=stranger.id,
            metadata={**logs[at].metadata, "crm_person_id": stranger.crm_person_id},
        )
        with_logs(world, logs)
        report = world.verify()
        assert [f.external_id for f in report.findings["past_watermark"].items] == [logs[at].external_id]
        assert report.findings["drifted"].items[0].detail == "customer_id, metadata.crm_person_id"

    def test_a_live_feed_duplicate_across_the_seam_is_an_overlap(self) -> None:
        """A live-feed log with a migrated association log's match key is the same event twice."""
        world = migrated_world()
        association = next(log for log in migrated_logs(world) if "linked_entity_id" in log.metadata)
        live = attrs.evolve(
            association,
            external_id="",
            source_tag="live_feed",
            timestamp=association.timestamp + dt.timedelta(seconds=2),
        )
        world.logs.add_native(live)
        report = world.verify()
        assert [f.external_id for f in report.findings["overlap"].items] == [association.external_id]
        assert report.outstanding == {"overlap": 1}

    def test_an_unexpected_log_is_one_for_a_row_that_now_skips(self) -> None:
        """A log for a row whose contact is gone is unexpected, with the recomputed reason."""
        world = migrated_world()
        log = migrated_logs(world)[0]
        person = log.metadata["crm_person_id"]
        world.contacts = InMemoryContactDirectory(c for c in contacts("acme") if c.crm_person_id != person)
        report = world.verify()
        assert report.count("unexpected") >= 1
        assert all("contact_not_found" in f.detail for f in report.findings["unexpected"].items)

    def test_tampered_job_counts_are_reported(self) -> None:
        """The job's counts must equal what verify finds behind its cursor."""
        world = migrated_world()
        job = job_of(world)
        world.jobs.save(attrs.evolve(job, tally=job.tally + Tally(processed=5, migrated=3)))
        report = world.verify()
        assert report.job is not None
        assert {m.figure for m in report.job.mismatches} == {"outcomes", "processed", "migrated"}
        assert report.outstanding == {}
        assert not report.clean

    def test_a_completed_job_whose_cursor_stopped_short_is_reported(self) -> None:
        """A completed job must have walked to its last in-scope row; a halted one need not."""
        world = migrated_world()
        job = job_of(world)
        ids = sorted(audit_id(log) for log in migrated_logs(world))
        cut = ids[len(ids) // 2]
        world.jobs.save(attrs.evolve(job, last_audit_id=cut))
        completed = world.verify().job
        assert completed is not None
        figures = {m.figure: (m.job, m.found) for m in completed.mismatches}
        assert figures["last_audit_id"][0] == cut
        assert figures["last_audit_id"][1] >= ids[-1]
        world.jobs.save(attrs.evolve(job_of(world), status=HALTED))
        halted = world.verify().job
        assert halted is not None
        assert "last_audit_id" not in {m.figure for m in halted.mismatches}

    def test_ids_kept_per_kind_are_capped_and_the_count_stays_exact(self) -> None:
        """Past ``keep`` ids a kind is truncated in the report, its count still every finding."""
        world = migrated_world()
        logs = list(world.logs.logs)
        gone = [log for log in logs if log.external_id][:3]
        with_logs(world, [log for log in logs if log not in gone])
        report = world.verify(keep=2)
        missing = report.to_json()["findings"]["missing"]
        assert (missing["count"], len(missing["items"]), missing["truncated"]) == (3, 2, True)
        assert report.outstanding["missing"] == 3

    def test_a_duplicate_external_id_is_reported(self) -> None:
        """Two logs with one external_id (possible only without the index) are a duplicate."""
        world = migrated_world()
        logs = list(world.logs.logs)
        twin = migrated_logs(world)[0]
        with_logs(world, [*logs, twin])
        report = world.verify()
        assert [f.external_id for f in report.findings["duplicate"].items] == [twin.external_id]


class _DiesOnRelease:
    """A job store whose every write that hands a lease back fails, as if the process died there."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def save(self, job: MigrationJob) -> None:
        if job.lease_owner is None:
            raise StoreUnavailable("connection lost")
        self.inner.save(job)

    def transition(self, job: MigrationJob, expected: Any, **fence: Any) -> MigrationJob | None:
        if job.lease_owner is None:  # repair's write: a compare-and-set on its status and leases
            raise StoreUnavailable("connection lost")
        return self.inner.transition(job, expected, **fence)  # type: ignore[no-any-return]


def late_world() -> tuple[World, AuditRow]:
    """A migrated account and one migrating row committed after the run passed its id."""
    held_id = audit_id(migrated_logs(migrated_world())[5])
    rows = audit_rows("acme")
    held = next(row for row in rows if row.id == held_id)
    world = World("acme", rows=[row for row in rows if row.id != held_id])
    world.trigger()
    world.run(settings=SETTINGS)
    world.source.add(held)
    return world, held


class TestSourceTag:
    @pytest.mark.parametrize("sample", [None, 0])
    def test_a_log_whose_source_tag_is_not_ours_is_drifted_not_clean(self, sample: int | None) -> None:
        """rollback deletes source_tag = crm_migration only: a log of the account's external id whose tag
        was changed or removed is drifted (naming the tag), sampled for content or not — never clean."""
        world = migrated_world()
        logs = list(world.logs.logs)
        changed: dict[str, str] = {}
        for index, log in enumerate(logs):
            if log.external_id and len(changed) < 2:
                tag = "live_feed" if not changed else ""
                logs[index] = attrs.evolve(log, source_tag=tag)
                changed[log.external_id] = tag
        with_logs(world, logs)
        report = world.verify(sample=sample)
        assert not report.clean
        assert report.count("drifted") == 2
        details = {f.external_id: f.detail for f in report.findings["drifted"].items}
        assert {ext: "source_tag" in details[ext] for ext in changed} == dict.fromkeys(changed, True)


class TestRunMetadata:
    def test_a_rewritten_run_metadata_key_is_drifted_and_an_enrichment_key_is_not(self) -> None:
        """The keys the run writes (crm_audit_id, crm_tenant, crm_person_id, …) are deterministic: one
        rewritten is drift, named; a key enrichment adds (linked_entity_name, where the run names no
        entity) is not."""
        world = migrated_world()
        logs = list(world.logs.logs)
        ours = [i for i, log in enumerate(logs) if log.external_id]
        forged, enriched = ours[0], ours[1]
        logs[forged] = attrs.evolve(
            logs[forged], metadata={**logs[forged].metadata, "crm_tenant": "globex", "crm_person_id": 99999}
        )
        logs[enriched] = attrs.evolve(
            logs[enriched], metadata={**logs[enriched].metadata, "linked_entity_name": "Acme Ltd"}
        )
        with_logs(world, logs)
        report = world.verify()
        assert not report.clean
        assert [(f.external_id, f.detail) for f in report.findings["drifted"].items] == [
            (logs[forged].external_id, "metadata.crm_tenant, metadata.crm_person_id")
        ]


class TestRolledBack:
    def test_logs_left_behind_a_rolled_back_job_are_not_clean(self) -> None:
        """A rolled-back job claims none of the account's logs remain: logs still there (here all of
        them, written back after the delete) are a job mismatch, migrated_logs 0 vs found — not
        "consistent" because its pre-rollback counts happen to match them."""
        world = migrated_world()
        logs = migrated_logs(world)
        rollback(world.company, RollbackPorts(world.jobs, world.logs, world.clock))
        world.logs.insert_batch(logs)
        report = world.verify()
        assert report.outstanding == {}
        assert report.job is not None
        assert report.job.mismatches == (Mismatch("migrated_logs", 0, len(logs)),)
        assert not report.clean
        world.logs.delete_migrated(world.company)
        world.logs.insert_batch(logs[:20])
        some = world.verify()
        assert some.job is not None
        assert some.job.mismatches == (Mismatch("migrated_logs", 0, 20),)

    def test_a_complete_rollback_is_a_consistent_job_of_an_account_that_is_not_migrated(self) -> None:
        """Nothing left: the job says what is stored (consistent; its run's counts are not compared),
        and the account is not clean — its rows are missing, which only a new job writes back."""
        world = migrated_world()
        expected = len(migrated_logs(world))
        rollback(world.company, RollbackPorts(world.jobs, world.logs, world.clock))
        report = world.verify()
        assert report.job is not None
        assert report.job.consistent
        assert report.outstanding == {"missing": expected}
        assert not report.clean


class TestRepair:
    def test_repair_writes_the_missing_rows_and_the_job_becomes_consistent(self) -> None:
        """A deleted log and a late row are written back; the late one is counted into the job."""
        world, behind = late_world()
        logs = list(world.logs.logs)
        gone = next(log for log in logs if log.external_id)
        with_logs(world, [log for log in logs if log is not gone])
        before = job_of(world).tally
        report = world.verify(repair=True)
        assert report.repaired == 2
        assert report.repaired_in_job == 1
        assert report.clean, report.to_json()
        after = job_of(world)
        assert (after.tally.processed, after.tally.migrated) == (before.processed + 1, before.migrated + 1)
        assert after.lease_owner is None
        stored = {log.external_id for log in world.logs.logs}
        assert {gone.external_id, f"crm:acme:audit:{behind.id}"} <= stored
        assert world.verify().clean

    def test_repair_counts_its_rows_into_a_sharded_job(self) -> None:
        """On a sharded job the late row repaired is counted into the job's summed counts."""
        held_id = audit_id(migrated_logs(migrated_world())[5])
        rows = audit_rows("acme")
        world = World("acme", rows=[row for row in rows if row.id != held_id])
        world.service().trigger(world.company, shards=2)
        world.service(settings=SETTINGS).run(world.company, owner="runner")
        world.source.add(next(row for row in rows if row.id == held_id))
        before = job_of(world).tally
        report = world.verify(repair=True)
        assert report.repaired_in_job == 1
        after = job_of(world)
        assert len(after.shards) == 2
        assert (after.tally.processed, after.tally.migrated) == (before.processed + 1, before.migrated + 1)
        assert world.verify().clean

    def test_an_unexpected_log_is_never_counted_as_a_migrated_row(self) -> None:
        """A log copied under a row that skips is unexpected: the job check counts the rows that
        migrate and have a log, as the report's header does, and --repair leaves the job's counts as
        they are. (It counted that log as a migrated row: the job check said 575 against 576, and the
        repair raised migrated by one, a row counted both skipped and migrated.)"""
        world = migrated_world()
        logs = list(world.logs.logs)
        logged = {log.external_id for log in logs}
        job = job_of(world)
        scope = set(world.transformer.scope)
        skipping = next(
            row
            for row in audit_rows("acme")
            if row.auditable_type in scope
            and row.id <= job.last_audit_id
            and f"crm:acme:audit:{row.id}" not in logged
        )
        world.logs.insert_batch([attrs.evolve(logs[0], external_id=f"crm:acme:audit:{skipping.id}")])
        report = world.verify()
        assert report.count("unexpected") == 1
        assert report.job is not None
        assert report.job.mismatches == ()
        world.verify(repair=True)
        assert job_of(world).tally == job.tally

    def test_repair_sets_drift_back_and_leaves_stray_and_overlap(self) -> None:
        """A drifted log is set back to its recomputed one (``restored``, the job's counts unchanged);
        a stray is reported and left exactly as it was. Before, repair left the drifted log too."""
        world = migrated_world()
        logs = list(world.logs.logs)
        at = next(i for i, log in enumerate(logs) if log.external_id)
        original = logs[at]
        logs[at] = attrs.evolve(original, category="other")
        stray = attrs.evolve(original, external_id="crm:acme:audit:99999999")
        with_logs(world, [*logs, stray])
        job_before = job_of(world)
        report = world.verify(repair=True)
        assert (report.repaired, report.restored) == (0, 1)
        assert report.outstanding == {"stray": 1}
        assert world.logs.logs == (*logs[:at], original, *logs[at + 1 :], stray)
        assert job_of(world).tally == job_before.tally

    def test_a_second_repair_changes_nothing(self) -> None:
        """Repair is idempotent: the second one writes no log and leaves the job's counts."""
        world, _ = late_world()
        world.verify(repair=True)
        logs, tally = world.logs.logs, job_of(world).tally
        again = world.verify(repair=True)
        assert (again.repaired, again.repaired_in_job) == (0, 0)
        assert world.logs.logs == logs
        assert job_of(world).tally == tally
        assert again.clean

    def test_a_repair_that_dies_before_its_job_write_is_completed_by_the_next(self) -> None:
        """Logs written, counts short after a crash: the next repair counts them as one clean repair would."""
        clean, _ = late_world()
        clean.verify(repair=True)
        world, _ = late_world()
        healthy = world.jobs
        world.jobs = _DiesOnRelease(healthy)
        with pytest.raises(StoreUnavailable):
            world.verify(repair=True)
        world.jobs = healthy
        short = world.verify()
        assert short.outstanding == {}
        assert short.job is not None
        assert {m.figure for m in short.job.mismatches} == {"processed", "migrated"}
        healed = world.verify(repair=True)
        assert (healed.repaired, healed.repaired_in_job) == (0, 1)
        assert final_status(job_of(world)) == final_status(job_of(clean))  # every count status shows
        assert world.verify().clean

    def test_repair_on_a_clean_account_changes_nothing(self) -> None:
        """--repair on a clean account writes nothing."""
        world = migrated_world()
        logs, tally = world.logs.logs, job_of(world).tally
        assert world.verify(repair=True).repaired == 0
        assert (world.logs.logs, job_of(world).tally) == (logs, tally)

    def test_repair_refuses_while_a_run_holds_the_lease(self) -> None:
        """A job leased to a live runner is not repaired under it."""
        world = migrated_world()
        job = job_of(world)
        world.jobs.acquire_lease(job.job_id, "runner-9", dt.timedelta(minutes=5))
        with pytest.raises(LeaseHeld):
            world.verify(repair=True)

    def test_repair_refuses_while_a_shard_runs_and_leaves_its_progress(self) -> None:
        """A live shard lease refuses repair (LeaseHeld naming the shard); the shard's entry is untouched."""
        world = World("acme")
        service = world.service(settings=SETTINGS)
        service.trigger(world.company, shards=2)
        service.run_shard(world.company, 0, owner="runner-0")
        job = job_of(world)
        world.jobs.acquire_shard_lease(job.job_id, 1, "runner-1", dt.timedelta(minutes=5))
        before = job_of(world)
        with pytest.raises(LeaseHeld, match="shard 1"):
            world.verify(repair=True)
        after = job_of(world)
        assert after.shards == before.shards  # shard 0's lease taken and handed back; shard 1 as held
        assert after.lease_owner is None
        done = service.run_shard(world.company, 1, owner="runner-1").job
        assert done.status == "completed"

    def test_repair_of_a_completed_sharded_job_ignores_a_lease_left_on_a_completed_shard(self) -> None:
        """A completed shard's lease is never needed nor taken: repair goes ahead and clears the stale one."""
        world = World("acme")
        service = world.service(settings=SETTINGS)
        service.trigger(world.company, shards=2)
        service.run_shard(world.company, 0, owner="runner-0")
        service.run_shard(world.company, 1, owner="runner-1")
        job = job_of(world)
        assert job.status == "completed"
        until = world.clock.now() + dt.timedelta(minutes=5)
        stale = attrs.evolve(job.shards[1], lease_owner="vm:1:celery", lease_expires_at=until)
        world.jobs.save(attrs.evolve(job, shards=(job.shards[0], stale)))
        assert world.verify(repair=True).clean
        after = job_of(world)
        assert [(s.status, s.lease_owner) for s in after.shards] == [("completed", None)] * 2
        assert after.lease_owner is None

    def test_a_refused_repair_of_an_ended_job_hands_back_the_shard_leases_it_took(self) -> None:
        """On a halted job, the shard lease repair took before another shard refused it is released."""
        world = World("acme")
        service = world.service(settings=SETTINGS)
        service.trigger(world.company, shards=2)
        job = job_of(world)
        world.jobs.acquire_shard_lease(job.job_id, 1, "runner-1", dt.timedelta(minutes=5))
        assert world.jobs.transition(attrs.evolve(job_of(world), status=HALTED), {"in_progress"}) is not None
        with pytest.raises(LeaseHeld, match="shard 1"):
            world.verify(repair=True)
        after = job_of(world)
        assert [s.lease_owner for s in after.shards] == [None, "runner-1"]
        assert after.lease_owner is None

    def test_a_shard_cannot_start_under_a_repair(self) -> None:
        """While repair holds a sharded job, every shard's lease is its own: a shard runner gets LeaseHeld."""
        world = World("acme")
        service = world.service(settings=SETTINGS)
        service.trigger(world.company, shards=2)
        service.run_shard(world.company, 0, owner="runner-0")
        seen: list[str] = []
        reader = InMemoryMigratedLogReader(world.logs)

        class RunnerArrives:
            """The migrated logs, read once per page; the first read lets a shard runner try its luck."""

            def __getattr__(self, name: str) -> Any:
                if not seen:
                    seen.append(name)
                    with pytest.raises(LeaseHeld):
                        service.run_shard(world.company, 1, owner="runner-1")
                return getattr(reader, name)

        ports = VerifyPorts(world.source, world.users, world.sso, world.contacts, RunnerArrives(),  # type: ignore[arg-type]
                            world.jobs, world.logs, world.clock, world.indexes)  # fmt: skip
        verify_account(world.company, ports, world.transformer, settings=VerifySettings(repair=True))
        assert seen
        job = job_of(world)
        assert job.lease_owner is None
        assert all(s.lease_owner is None for s in job.shards)
        assert service.run_shard(world.company, 1, owner="runner-1").job.status == "completed"


def halted_then_resumed(shards: int = 1) -> World:
    """A job halted for failures (the loader's node limit at 5: most rows fail), resumed with the
    cause fixed (default limits) and completed: the failed rows stay behind the cursor."""
    world = World()
    world.trigger(shards=shards)
    default = world.transformer
    world.transformer = Transformer(load_default_config(), limits=LoaderLimits(max_nodes=5))
    settings = RunSettings(page_size=200)
    world.service(settings=settings).run(world.company, owner="runner-1")
    halted = job_of(world)
    assert (halted.status, halted.tally.failed_total > 0) == (HALTED, True)
    world.transformer = default
    world.trigger(restart="resume")
    world.service(settings=settings).run(world.company, owner="runner-1")
    assert job_of(world).status == COMPLETED
    return world


class TestCountsAfterAHaltResumedAndRepaired:
    """A halt for failures, ``--resume`` with the cause fixed, a completed run, ``verify --repair``:
    the job said 136 failed of an account verify proved had none, 857 outcomes for 759 rows, and
    verify's job check said "consistent"."""

    @pytest.mark.parametrize("shards", [1, 3])
    def test_the_job_check_flags_counts_that_disagree_with_what_verify_proved(self, shards: int) -> None:
        """Before the repair: the rows the halted pass failed now migrate (missing) or skip."""
        world = halted_then_resumed(shards)
        job = job_of(world)
        report = world.verify()
        assert report.count("missing") > 0
        assert report.job is not None
        figures = {m.figure: (m.job, m.found) for m in report.job.mismatches}
        assert figures["failed"] == (job.tally.failed_total, 0)
        assert "outcomes" not in figures  # the run counted each row once

    @pytest.mark.parametrize("shards", [1, 3])
    def test_repair_leaves_counts_that_add_up_and_are_what_verify_proved(self, shards: int) -> None:
        """After the repair the job's counts, and each shard's for its own id range, are what a
        clean run of the same rows counts, and each adds up."""
        world = halted_then_resumed(shards)
        before = job_of(world).tally
        repaired = world.verify(repair=True)
        assert repaired.repaired > 0
        after = job_of(world).tally
        assert after.processed == before.processed
        assert after.processed == after.migrated + after.skipped_total + after.failed_total
        final = world.verify()
        assert final.clean, final.to_json()
        assert (after.migrated, dict(after.skipped), dict(after.failed)) == (
            final.migrated,
            dict(final.skipped),
            dict(final.failed),
        )
        clean = World()
        clean.trigger(shards=shards)
        clean.service(settings=RunSettings(page_size=200)).run(clean.company, owner="runner-1")
        for shard, clean_shard in zip(job_of(world).shards, job_of(clean).shards, strict=True):
            tally = shard.tally
            assert all(n > 0 for n in (*tally.skipped.values(), *tally.failed.values()))
            assert tally.processed == tally.migrated + tally.skipped_total + tally.failed_total
            assert (shard.after_id, shard.until_id) == (clean_shard.after_id, clean_shard.until_id)
            mine = (tally.processed, tally.migrated, dict(tally.skipped), dict(tally.failed))
            theirs = clean_shard.tally
            assert mine == (theirs.processed, theirs.migrated, dict(theirs.skipped), dict(theirs.failed))
        assert world.verify(repair=True).repaired == 0
        assert job_of(world).tally == after

    def test_a_repair_that_leaves_rows_missing_still_leaves_counts_that_add_up(self) -> None:
        """USMAN down during the repair: rows whose actor would be degraded stay missing, so the
        walk cannot account for every row; the rows written leave ``failed``, the sum holds, and
        the repair once USMAN answers ends where one clean repair ends."""
        clean = halted_then_resumed()
        clean.verify(repair=True)
        world = halted_then_resumed()
        before = job_of(world).tally
        world.sso.failing = True
        during = world.verify(repair=True)
        assert during.repaired_in_job > 0
        assert during.actors_unchecked > 0
        tally = job_of(world).tally
        assert tally.processed == tally.migrated + tally.skipped_total + tally.failed_total
        assert tally.failed_total == before.failed_total - during.repaired_in_job
        world.sso.failing = False
        world.verify(repair=True)
        assert job_of(world).tally == job_of(clean).tally
        assert world.verify().clean

    def test_a_sharded_repair_that_leaves_rows_missing_keeps_each_shards_counts_adding_up(self) -> None:
        """A 3-shard job completed with failed rows in every shard (no halt), the cause fixed, then
        repaired with USMAN down: in each shard some failed rows are written and some stay
        missing, so each shard's counts take the written rows off ``failed`` on its own range
        (the "taken off" rule). Each shard adds up and keeps its processed count, the job's counts
        are the shards' sums, verify after it reports the rows still missing and does not call the
        job clean; once USMAN answers, the next repair ends every shard at a clean run's counts."""

        def completed_with_failures() -> World:
            world = World()
            world.trigger(shards=3)
            default = world.transformer
            world.transformer = Transformer(load_default_config(), limits=LoaderLimits(max_nodes=5))
            settings = RunSettings(page_size=200, halt_threshold=1.0)
            world.service(settings=settings).run(world.company, owner="runner-1")
            world.transformer = default
            return world

        world = completed_with_failures()
        before = job_of(world)
        assert before.status == COMPLETED
        assert all(s.tally.failed_total > 0 for s in before.shards)
        world.sso.failing = True
        during = world.verify(repair=True)
        assert (during.repaired_in_job > 0, during.actors_unchecked > 0) == (True, True)
        job = job_of(world)
        written = [
            s.tally.migrated - b.tally.migrated for s, b in zip(job.shards, before.shards, strict=True)
        ]
        assert all(n > 0 for n in written)
        assert sum(written) == during.repaired_in_job
        for shard, old, n in zip(job.shards, before.shards, written, strict=True):
            tally = shard.tally
            assert tally.processed == old.tally.processed
            assert tally.processed == tally.migrated + tally.skipped_total + tally.failed_total
            assert tally.failed_total == old.tally.failed_total - n
            assert tally.failed_total > 0  # rows left missing: still counted failed, not proved
            assert dict(tally.skipped) == dict(old.tally.skipped)
        total = job.tally
        assert (total.processed, total.migrated, total.failed_total, total.skipped_total) == (
            sum(s.tally.processed for s in job.shards),
            sum(s.tally.migrated for s in job.shards),
            sum(s.tally.failed_total for s in job.shards),
            sum(s.tally.skipped_total for s in job.shards),
        )
        left = world.verify()
        # Every row behind the cursors: migrated as counted, or missing, or skipping / failing now.
        found_skipped, found_failed = sum(left.skipped.values()), sum(left.failed.values())
        assert left.migrated == total.migrated
        assert (
            total.failed_total == left.count("missing") + found_skipped - total.skipped_total + found_failed
        )
        assert left.count("missing") > 0
        assert not left.clean
        assert left.job is not None
        figures = {m.figure for m in left.job.mismatches}
        assert "failed" in figures
        assert "outcomes" not in figures  # the counts add up; what they say is not yet proved
        world.sso.failing = False
        assert world.verify(repair=True).repaired == left.count("missing")
        clean = World()
        clean.trigger(shards=3)
        clean.service(settings=RunSettings(page_size=200)).run(clean.company, owner="runner-1")
        assert [s.tally for s in job_of(world).shards] == [s.tally for s in job_of(clean).shards]
        assert job_of(world).tally == job_of(clean).tally
        assert world.verify().clean

    def test_a_job_whose_counts_do_not_add_up_is_not_consistent(self) -> None:
        """A row counted both failed and migrated (what the old repair left): 'outcomes' mismatch."""
        world = migrated_world()
        job = job_of(world)
        world.jobs.save(attrs.evolve(job, tally=job.tally + Tally(failed={"malformed_yaml": 2})))
        report = world.verify()
        assert report.job is not None
        figures = {m.figure: (m.job, m.found) for m in report.job.mismatches}
        total = job.tally.migrated + job.tally.skipped_total + job.tally.failed_total
        assert figures == {"outcomes": (total + 2, job.tally.processed), "failed": (2, 0)}
        assert not report.clean
        lines = "\n".join(summary_lines(report))
        assert f"migrated + skipped + failed is {total + 2} for {job.tally.processed} processed" in lines


class TestRepairDuringAUsmanOutage:
    def test_missing_rows_whose_actor_is_degraded_are_left_for_a_repair_once_usman_answers(self) -> None:
        """USMAN is down during --repair: missing rows whose actor would be the degraded one are not
        written (a log written so stays wrong for good) but counted unchecked, so the account is not
        clean; once USMAN answers, the next repair writes them with their true actor. (They were
        written with [Deleted CRM User] actors, and the job counted no degraded actor.)"""
        world = migrated_world()
        original = {log.external_id: log for log in migrated_logs(world)}
        with_logs(world, [])
        world.sso.failing = True
        during = world.verify(repair=True)
        written = migrated_logs(world)
        assert 0 < len(written) < len(original)
        assert all(log.actor == original[log.external_id].actor for log in written)
        assert during.actors_unchecked >= len(original) - len(written)
        assert not during.clean
        world.sso.failing = False
        after = world.verify(repair=True)
        assert after.repaired == len(original) - len(written)
        repaired = {log.external_id: log.actor for log in migrated_logs(world)}
        assert repaired == {ext_id: log.actor for ext_id, log in original.items()}


class TestRepairStalledPastItsLease:
    def test_a_page_stalled_past_the_lease_writes_nothing_after_a_rollback(self) -> None:
        """Repair's page waits on its lookups past its lease; a rollback, no longer fenced by that
        expired lease, deletes the account's logs meanwhile. Repair renews its lease before writing
        the page's missing logs, finds the job rolled back and writes none (JOB_NOT_RUNNABLE). (It
        wrote the page's logs, then said JOB_NOT_FOUND "nothing to repair into": logs behind a
        rolled_back job.)"""
        world = migrated_world()
        logs = list(world.logs.logs)
        with_logs(world, logs[5:])
        users = world.users
        stalls: list[int] = []

        class Stalling:
            def users_by_ids(self, tenant: str, ids: Any) -> Any:
                if not stalls:
                    stalls.append(1)
                    world.clock.advance(121)  # repair's lease (120 s) expires while it waits here
                    rollback(world.company, RollbackPorts(world.jobs, world.logs, world.clock))
                return users.users_by_ids(tenant, ids)

        world.users = Stalling()  # type: ignore[assignment]
        with pytest.raises(JobNotRunnable, match="rolled_back") as raised:
            world.verify(repair=True)
        assert (raised.value.code, raised.value.http_status) == ("JOB_NOT_RUNNABLE", 409)
        assert stalls == [1]
        assert migrated_logs(world) == []
        assert job_of(world).status == ROLLED_BACK


class TestRepairPreconditions:
    def test_repair_refuses_without_the_unique_index(self) -> None:
        """Repair writes, so it refuses like every write path while migration 035's indexes are missing."""
        world = migrated_world()
        world.indexes = InMemoryIndexState(missing=("activity_logs.uniq_company_external_id",))
        with pytest.raises(IndexesMissing):
            world.verify(repair=True)

    def test_repair_never_writes_back_a_rolled_back_account(self) -> None:
        """After a rollback the missing logs were removed on purpose: repair refuses, writes nothing."""
        world = migrated_world()
        world.service().rollback(world.company)
        with pytest.raises(JobNotFound):
            world.verify(repair=True)
        assert [log for log in world.logs.logs if log.external_id] == []


class TestTenant:
    def test_a_tenant_other_than_the_jobs_is_refused(self) -> None:
        """An account is bound to its job's tenant: verifying it against another is refused."""
        world = migrated_world()
        ports = world.verify_ports(repair=False)
        with pytest.raises(TenantMismatch):
            verify_account(world.company, ports, world.transformer, tenant="globex")

    def test_without_a_job_the_tenant_is_required(self) -> None:
        """With no job, verify needs the tenant to be given."""
        world = World("acme")
        ports = world.verify_ports(repair=False)
        with pytest.raises(JobNotFound):
            verify_account(world.company, ports, world.transformer)
        report = verify_account(world.company, ports, world.transformer, tenant="acme")
        assert report.job is None
        assert report.count("missing") > 0


class TestThroughTheService:
    def test_the_service_verifies_a_bound_account_bound_to_its_tenant(self) -> None:
        """MigrationService.verify runs the use case over its ports and holds the account to its binding."""
        world = migrated_world()
        report = world.service().verify(world.company, sample=5, seed=3)
        assert report.clean
        assert report.sample == 5
        with pytest.raises(TenantMismatch):
            world.service().verify(world.company, "globex")
        unbound = world.service(tenants={})
        with pytest.raises(TenantUnbound):
            unbound.verify(world.company, require_binding=True)


class TestAnUnfinishedShardedJob:
    """Each shard run one batch, then stopped: the job's counts are right, but verify compared them
    with the rows up to the first unfinished shard's cursor only, and called every figure wrong
    (``processed is 201, verify found 67``); ``--repair`` wrote only rows up to that cursor."""

    @staticmethod
    def run_a_batch_of_each_shard() -> World:
        world = World()
        world.trigger(shards=3)
        service = world.service(settings=RunSettings(page_size=50))
        for shard in range(3):
            service.run_shard(world.company, shard, owner=f"runner-{shard}", should_stop=lambda: True)
        job = job_of(world)
        assert [s.last_audit_id > s.after_id for s in job.shards] == [True, True, True]
        assert job.shards[2].last_audit_id > job.last_audit_id
        return world

    def test_its_counts_are_compared_with_the_rows_behind_each_shards_cursor(self) -> None:
        """Every row behind a shard's cursor counts: the job check finds nothing wrong."""
        world = self.run_a_batch_of_each_shard()
        report = world.verify()
        assert report.job is not None
        assert report.job.mismatches == ()

    def test_repair_writes_a_missing_row_behind_a_later_shards_cursor(self) -> None:
        """A log deleted behind shard 2's cursor (past the watermark) is repaired, the job left as it was."""
        world = self.run_a_batch_of_each_shard()
        job = job_of(world)
        shard = job.shards[2]
        before = world.verify()
        logs = list(world.logs.logs)
        gone = next(
            log for log in logs if log.external_id and shard.after_id < audit_id(log) <= shard.last_audit_id
        )
        with_logs(world, [log for log in logs if log is not gone])
        # Rows ahead of the cursors are missing too (not run yet): the repair writes only the one behind.
        assert audit_id(gone) in [f.audit_id for f in world.verify().findings["missing"].items]
        repaired = world.verify(repair=True)
        assert (repaired.repaired, repaired.repaired_in_job) == (1, 0)  # the job had counted it
        after = world.verify()
        assert after.job is not None
        assert after.job.mismatches == ()
        assert after.migrated == before.migrated
        assert job_of(world).tally == job.tally
