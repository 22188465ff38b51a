"""The application service: each entry point drives its use case over the ports it is given."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import mypy.api
import pytest
from attrs import evolve

from crm_audit_transform.domain import ActivityLog
from crm_audit_transform.errors import (
    BatchTooLarge,
    ConfigError,
    FlagDisabled,
    IndexesMissing,
    JobAlreadyRunning,
    JobNotFound,
    JobNotRunnable,
    TenantMismatch,
    TenantUnbound,
    VerifyOptionInvalid,
)
from crm_audit_transform.jobs import CANCELLED, COMPLETED, IN_PROGRESS, NOT_STARTED, ROLLED_BACK, ROLLING_BACK
from crm_audit_transform.service import MigrationService
from crm_audit_transform.testing import InMemoryActivityLogStore, InMemoryJobStore, StaticFeatureFlags
from crm_audit_transform.usecases import RunSettings
from crm_audit_transform.verification import SAMPLE_MAX, SEED_MAX, SEED_MIN, check_draw
from support import write_only_sink
from support.corpus_account import World, WorldPorts, audit_rows
from support.write_only_sink import WriteOnlyPorts, WriteOnlySink, write_only_service

ROOT = Path(__file__).parents[2]


class OnlyJobs:
    """Ports where everything but the job store fails when read: proves what an operation touches."""

    def __init__(self) -> None:
        self.jobs = InMemoryJobStore()

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the operation read the {name} port")


class TestMigrationService:
    def test_trigger_then_run_ends_where_the_use_cases_end(self) -> None:
        """trigger + run through the service leave the same completed job as the use cases called directly."""
        direct = World()
        direct.trigger()
        expected = direct.run().job

        world = World()
        service = world.service()
        triggered = service.trigger(world.company, world.tenant)
        result = service.run(world.company, owner="runner-1")

        assert triggered.status == IN_PROGRESS
        assert result.job.status == COMPLETED
        assert result.job.tally == expected.tally
        assert service.status(world.company).tally == expected.tally
        written = [log.external_id for log in world.logs.logs]
        assert written == [log.external_id for log in direct.logs.logs]
        assert written

    def test_status_reads_only_the_job_store(self) -> None:
        """status of an account without a job is not_started, and no other port is opened for it."""
        service = MigrationService(OnlyJobs(), World().transformer)  # type: ignore[arg-type]
        assert service.status("company-x").status == NOT_STARTED

    def test_run_uses_the_services_run_settings(self) -> None:
        """The page size given to the service is the one the run pages by."""
        world = World()
        limits: list[int] = []
        source = world.source

        class Recording:
            def __getattr__(self, name: str) -> Any:
                return getattr(source, name)

            def page(self, *args: Any, **kwargs: Any) -> Any:
                limits.append(kwargs["limit"])
                return source.page(*args, **kwargs)

        world.source = Recording()  # type: ignore[assignment]
        service = world.service(settings=RunSettings(page_size=7, halt_threshold=1.0))
        service.trigger(world.company, world.tenant)
        service.run(world.company, owner="o")
        assert len(limits) > 1
        assert set(limits) == {7}

    def test_run_of_a_switched_off_account_writes_nothing_and_cancels_its_job(self) -> None:
        """A job triggered before the flag went off is cancelled (reason flag_disabled), not migrated."""
        world = World()
        world.service().trigger(world.company, world.tenant)
        world.flags = StaticFeatureFlags(())
        service = world.service()
        with pytest.raises(FlagDisabled, match="cancelled"):
            service.run(world.company, owner="o")
        with pytest.raises(FlagDisabled):
            service.run_shard(world.company, 0, owner="o")
        assert not world.logs.logs
        status = service.status(world.company)
        assert (status.status, status.halted_reason) == (CANCELLED, "flag_disabled")
        assert status.tally.processed == 0

    def test_a_flag_switched_on_again_resumes_the_cancelled_job(self) -> None:
        """After the flag-off cancel, trigger --resume with the flag on runs the job to completion."""
        world = World()
        world.service().trigger(world.company, world.tenant)
        world.flags = StaticFeatureFlags(())
        with pytest.raises(FlagDisabled):
            world.service().run(world.company, owner="o")
        world.flags = StaticFeatureFlags("*")
        service = world.service()
        resumed = service.trigger(world.company, world.tenant, restart="resume")
        assert (resumed.status, resumed.halted_reason) == (IN_PROGRESS, None)
        assert service.run(world.company, owner="o").job.status == COMPLETED

    def test_repair_of_a_switched_off_account_writes_nothing(self) -> None:
        """verify --repair with the flag off is FlagDisabled before any write; plain verify still reports."""
        world = World()
        world.service().trigger(world.company, world.tenant)
        world.service().run(world.company, owner="o")
        kept = [log for log in world.logs.logs if log.external_id][1:]
        world.logs = InMemoryActivityLogStore(kept)  # type: ignore[assignment]
        world.flags = StaticFeatureFlags(())
        service = world.service()
        with pytest.raises(FlagDisabled, match="nothing was repaired"):
            service.verify(world.company, repair=True)
        assert list(world.logs.logs) == kept
        assert not service.verify(world.company).clean

    @pytest.mark.parametrize(
        ("sample", "seed", "code"),
        [
            (-1, None, "INVALID_SAMPLE"),
            (1_000_001, None, "INVALID_SAMPLE"),
            (True, None, "INVALID_SAMPLE"),
            (1.5, None, "INVALID_SAMPLE"),
            (1, 2**63, "INVALID_SEED"),
            (1, -(2**63) - 1, "INVALID_SEED"),
            (1, "7", "INVALID_SEED"),
        ],
    )
    def test_verify_takes_a_sample_and_seed_of_their_range_only(
        self, sample: Any, seed: Any, code: str
    ) -> None:
        """verify's sample and seed have one rule for every caller, in the service: the HTTP route capped
        them (0 to 1,000,000; a 64-bit seed) while the runner and a library caller took any integer.
        VerifyOptionInvalid (INVALID_SAMPLE / INVALID_SEED, HTTP 400) before any port is read (OnlyJobs
        fails on any other). Fails on the old code: no check (AssertionError from the first port read)."""
        service = MigrationService(OnlyJobs(), World().transformer)  # type: ignore[arg-type]
        with pytest.raises(VerifyOptionInvalid) as raised:
            service.verify("company-x", sample=sample, seed=seed)
        assert (raised.value.code, raised.value.http_status) == (code, 400)
        assert raised.value.option == code.removeprefix("INVALID_").lower()

    def test_verify_takes_the_bounds_themselves(self) -> None:
        """The bounds are inclusive: 0 and SAMPLE_MAX, SEED_MIN and SEED_MAX pass the check."""
        for sample, seed in ((0, SEED_MIN), (SAMPLE_MAX, SEED_MAX), (None, None)):
            check_draw(sample, seed)

    def test_run_of_a_cancelled_or_rolled_back_job_is_refused_as_verify_repair_refuses_it(self) -> None:
        """The core refuses what no run takes up (JOB_NOT_RUNNABLE, nothing written), on every
        surface: it returned the cancelled job untouched and only the CLI refused it."""
        world = World()
        service = world.service()
        service.trigger(world.company, world.tenant)
        service.cancel(world.company)
        with pytest.raises(JobNotRunnable, match="is cancelled: nothing to run; trigger --resume or --fresh"):
            service.run(world.company, owner="o")
        with pytest.raises(JobNotRunnable, match="is cancelled"):
            service.verify(world.company, repair=True)
        assert not world.logs.logs
        service.rollback(world.company)
        with pytest.raises(JobNotRunnable, match="is rolled_back: nothing to run"):
            service.run(world.company, owner="o")
        assert service.status(world.company).status == ROLLED_BACK

    def test_run_of_a_completed_job_returns_it_untouched(self) -> None:
        """A completed job is no refusal (a redelivered task ends as it did): nothing runs again."""
        world = World()
        service = world.service()
        service.trigger(world.company, world.tenant)
        done = service.run(world.company, owner="o").job
        again = service.run(world.company, owner="o")
        assert (again.job, again.steps) == (done, 0)

    def test_rollback_deletes_migrated_logs_and_marks_the_job(self) -> None:
        """rollback returns how many migrated logs went and leaves the job rolled_back."""
        world = World()
        service = world.service()
        service.trigger(world.company, world.tenant)
        migrated = service.run(world.company, owner="o").job.tally.migrated
        result = service.rollback(world.company)
        assert result.deleted == migrated > 0
        assert service.status(world.company).status == ROLLED_BACK

    def test_rollback_is_refused_while_a_job_runs(self) -> None:
        """A job in progress blocks rollback with JobAlreadyRunning."""
        world = World()
        service = world.service()
        service.trigger(world.company, world.tenant)
        with pytest.raises(JobAlreadyRunning):
            service.rollback(world.company)

    def test_explain_takes_the_tenant_from_the_job(self) -> None:
        """Without a tenant, explain reads the account's job's tenant and explains that tenant's row."""
        world = World()
        service = world.service()
        service.trigger(world.company, world.tenant)
        row = audit_rows(world.tenant)[0]
        explanation = service.explain(world.company, row.id)
        assert explanation.tenant == world.tenant
        assert explanation.row == row
        assert explanation.stages

    def test_explain_without_a_job_or_tenant_is_job_not_found(self) -> None:
        """An unbound account with no job to take the tenant from: explain asks for one."""
        world = World()
        with pytest.raises(JobNotFound):
            world.service(tenants={}).explain(world.company, 1)

    def test_a_bound_account_reads_its_bound_tenant(self) -> None:
        """A bound account explains from its bound tenant without a job, and refuses another tenant."""
        world = World()
        service = world.service()
        assert service.explain(world.company, audit_rows(world.tenant)[0].id).tenant == world.tenant
        with pytest.raises(TenantMismatch):
            service.trigger(world.company, "globex")
        assert service.status(world.company).status == NOT_STARTED

    def test_a_job_of_another_tenant_than_the_binding_does_not_run(self) -> None:
        """A job triggered before the binding, for another tenant, is refused TENANT_MISMATCH."""
        world = World()
        world.service(tenants={}).trigger(world.company, world.tenant, allow_unbound_tenant=True)
        with pytest.raises(TenantMismatch):
            world.service(tenants={world.company: "globex"}).run(world.company, owner="runner-1")
        assert world.logs.count_migrated(world.company) == 0

    def test_no_override_reads_a_tenant_bound_to_another_account(self) -> None:
        """enrich, explain and verify refuse an unbound account's tenant bound elsewhere, as trigger does."""
        world = World(enrich=True)
        service = world.service(tenants={"other-company": world.tenant})
        row = audit_rows(world.tenant)[0]
        with pytest.raises(TenantMismatch):
            service.trigger(world.company, world.tenant, allow_unbound_tenant=True)
        with pytest.raises(TenantMismatch):
            service.enrich(world.company, world.tenant)
        with pytest.raises(TenantMismatch):
            service.explain(world.company, row.id, world.tenant)
        with pytest.raises(TenantMismatch):
            service.verify(world.company, world.tenant)
        with pytest.raises(TenantMismatch):
            service.tenant_for(world.company, world.tenant)

    def test_a_job_of_a_tenant_bound_elsewhere_lends_it_to_no_override(self) -> None:
        """Without --tenant, an unbound account's job whose tenant is now bound elsewhere is refused."""
        world = World(enrich=True)
        world.service(tenants={}).trigger(world.company, world.tenant, allow_unbound_tenant=True)
        service = world.service(tenants={"other-company": world.tenant})
        with pytest.raises(TenantMismatch):
            service.enrich(world.company)
        with pytest.raises(TenantMismatch):
            service.verify(world.company)

    def test_an_unbound_accounts_job_of_a_tenant_bound_elsewhere_does_not_run(self) -> None:
        """run (and so a Celery task) refuses an unbound account's job whose tenant is now bound to
        another account, as enrich, explain and verify do: nothing is written."""
        world = World()
        world.service(tenants={}).trigger(world.company, world.tenant, allow_unbound_tenant=True)
        service = world.service(tenants={"other-company": world.tenant})
        with pytest.raises(TenantMismatch, match="other-company"):
            service.run(world.company, owner="runner-1")
        with pytest.raises(TenantMismatch):
            service.run_shard(world.company, 0, owner="runner-1")
        assert world.logs.count_migrated(world.company) == 0

    def test_an_unbound_accounts_own_unbound_tenant_still_runs(self) -> None:
        """The override stays usable for a tenant nobody is bound to."""
        world = World()
        world.service(tenants={}).trigger(world.company, world.tenant, allow_unbound_tenant=True)
        assert world.service(tenants={}).run(world.company, owner="runner-1").job.tally.processed > 0

    def test_an_unbound_account_triggers_only_when_allowed(self) -> None:
        """Without a binding, trigger is TenantUnbound unless the caller allows the unbound tenant."""
        world = World()
        service = world.service(tenants={})
        with pytest.raises(TenantUnbound):
            service.trigger(world.company, world.tenant)
        status = service.trigger(world.company, world.tenant, allow_unbound_tenant=True)
        assert status.tenant == world.tenant

    def test_write_paths_refuse_without_the_indexes(self) -> None:
        """trigger, run and migrate raise IndexesMissing and write nothing without 035's indexes."""
        world = World()
        service = world.service()
        service.trigger(world.company, world.tenant)
        world.indexes.missing = ("uniq_company_external_id",)
        with pytest.raises(IndexesMissing):
            service.run(world.company, owner="o")
        with pytest.raises(IndexesMissing):
            service.migrate([])
        assert world.logs.logs == ()

    def test_enrich_needs_enrichment_ports(self) -> None:
        """A service wired without a CDP to enrich refuses enrich with a ConfigError."""
        world = World()
        with pytest.raises(ConfigError):
            world.service().enrich(world.company, world.tenant)

    def test_enrich_walks_the_stored_association_logs(self) -> None:
        """With enrichment ports, enrich reports on the account's stored association logs."""
        world = World(enrich=True)
        service = world.service()
        service.trigger(world.company, world.tenant)
        service.run(world.company, owner="o")
        report = service.enrich(world.company)
        assert report.patched == 0  # the run enriched as it went: nothing left to add

    def test_dry_run_reports_every_row_without_halting(self) -> None:
        """dry_run creates its job and completes it even past the halt threshold."""
        world = World(sso_failing=True)
        service = world.service(settings=RunSettings(halt_threshold=0.0))
        result = service.dry_run(world.company, world.tenant)
        assert result.job.status == COMPLETED
        assert result.job.tally.processed == result.job.max_audit_id - result.job.first_audit_id + 1
        assert result.job.tally.processed > 0

    def test_dry_run_over_the_runners_stores_is_refused_as_a_run_is(self) -> None:
        """A library call on a service over real stores writes like ``run``, so it is refused like
        one, before any job or log: the flag off, a tenant other than the bound one, a tenant bound
        to another account. An unbound, enabled account still runs (the CLI's dry-run service)."""
        off = World(enabled=False)
        with pytest.raises(FlagDisabled):
            off.service().dry_run(off.company, off.tenant)
        world = World()
        with pytest.raises(TenantMismatch):
            world.service().dry_run(world.company, "globex")
        with pytest.raises(TenantMismatch):
            world.service(tenants={"someone-else": world.tenant}).dry_run(world.company, world.tenant)
        assert (off.jobs.latest(off.company), world.jobs.latest(world.company)) == (None, None)
        assert (off.logs.logs, world.logs.logs) == ((), ())
        result = world.service(tenants={}).dry_run(world.company, world.tenant)
        assert result.job.status == COMPLETED
        assert result.job.lease_owner is None
        assert len(world.logs.logs) == result.job.tally.migrated > 0

    def test_migrate_refuses_more_than_twenty_records(self) -> None:
        """migrate is MigrateBatch: 21 records are BatchTooLarge, nothing written."""
        source = World()
        source.trigger()
        source.run()
        logs: list[ActivityLog] = list(source.logs.logs[:21])
        world = World()
        with pytest.raises(BatchTooLarge):
            world.service().migrate(logs)
        assert world.logs.logs == ()
        assert world.service().migrate(logs[:2]).inserted == 2

    def test_migrate_refuses_as_a_run_does_and_writes_nothing(self) -> None:
        """A library caller too: the flag off is FlagDisabled, another tenant's or a misspelled
        external_id TenantMismatch, a rollback under way JobAlreadyRunning; an unbound account is
        TenantUnbound only with ``require_binding`` (HTTP). Nothing is written."""
        source = World()
        source.trigger()
        source.run()
        logs: list[ActivityLog] = list(source.logs.logs[:2])
        off = World(enabled=False)
        with pytest.raises(FlagDisabled):
            off.service().migrate(logs)
        world = World()
        for ext_id in ("crm:globex:audit:1", "crm:acme:audit:+1", "crm:acme:audit:-0", "acme:audit:1"):
            with pytest.raises(TenantMismatch):
                world.service().migrate([logs[0], evolve(logs[1], external_id=ext_id)])
        unbound = world.service(tenants={})
        assert unbound.migrate(logs[:1]).inserted == 1
        with pytest.raises(TenantUnbound):
            unbound.migrate(logs[1:], require_binding=True)
        world.service().trigger(world.company, world.tenant)
        job = world.jobs.latest(world.company)
        assert job is not None
        world.jobs.save(evolve(job, status=ROLLING_BACK))
        with pytest.raises(JobAlreadyRunning, match="rolled back"):
            world.service().migrate(logs[1:])
        assert (off.logs.logs, len(world.logs.logs)) == ((), 1)

    def test_migrate_into_a_rolled_back_account_is_refused_as_a_run_is(self) -> None:
        """A rolled-back account takes no more records (JobNotRunnable, 409), as run refuses its
        rolled-back job; a new trigger opens it again. (Records posted after a rollback landed and sat
        behind the rolled_back job.)"""
        world = World()
        service = world.service()
        service.trigger(world.company, world.tenant)
        service.run(world.company, owner="o")
        logs: list[ActivityLog] = list(world.logs.logs[:2])
        service.rollback(world.company)
        with pytest.raises(JobNotRunnable, match="rolled back") as raised:
            service.migrate(logs)
        assert (raised.value.code, raised.value.http_status) == ("JOB_NOT_RUNNABLE", 409)
        assert world.logs.count_migrated(world.company) == 0
        world.clock.advance(1)
        service.trigger(world.company, world.tenant)
        assert service.migrate(logs).inserted == 2

    def test_a_batch_landing_after_a_rollbacks_delete_is_rolled_back_with_the_account(self) -> None:
        """The batch passed the check, then a whole rollback ran before its insert (the check and the
        insert are two steps): after the write the batch deletes its own logs and is refused, so no
        record survives the rollback, and the job counts what the rollback deleted. (The rollback said
        success while the batch's records stayed behind the rolled_back job.)"""
        world = World()
        service = world.service()
        service.trigger(world.company, world.tenant)
        migrated = service.run(world.company, owner="o").job.tally.migrated
        logs: list[ActivityLog] = list(world.logs.logs[:2])
        timeline = world.logs

        class RollbackFirst:
            """The log store, with a whole rollback run just before the batch's insert."""

            def __getattr__(self, name: str) -> Any:
                return getattr(timeline, name)

            def insert_batch(self, batch: Any) -> Any:
                assert service.rollback(world.company).deleted == migrated
                return timeline.insert_batch(batch)

        world.logs = RollbackFirst()  # type: ignore[assignment]
        with pytest.raises(JobNotRunnable, match="while this batch was written"):
            world.service().migrate(logs)
        assert timeline.count_migrated(world.company) == 0
        job = world.jobs.latest(world.company)
        assert job is not None
        assert (job.status, job.logs_deleted) == (ROLLED_BACK, migrated)

    def test_the_service_reads_ports_when_called(self) -> None:
        """A port swapped in the bundle after construction is the one the next call uses."""
        world = World()
        ports: Any = WorldPorts(
            source=world.source,
            users=world.users,
            sso=world.sso,
            contacts=world.contacts,
            people=world.people,
            logs=world.logs,
            jobs=InMemoryJobStore(),
            flags=world.flags,
            clock=world.clock,
            indexes=world.indexes,
            entities=None,
            enrichment=None,
        )

        class Swappable:
            current = ports

            def __getattr__(self, name: str) -> Any:
                return getattr(self.current, name)

        bundle = Swappable()
        service = MigrationService(bundle, world.transformer, tenants={world.company: world.tenant})  # type: ignore[arg-type]
        service.trigger(world.company, world.tenant)
        bundle.current = evolve(ports, jobs=InMemoryJobStore())
        assert service.status(world.company).status == NOT_STARTED


def write_only_world() -> tuple[World, WriteOnlySink, MigrationService]:
    """A corpus account whose logs go to a ``WriteOnlySink``: no rollback, no read-back."""
    world = World()
    sink = WriteOnlySink()
    ports = WriteOnlyPorts(
        source=world.source,
        users=world.users,
        sso=world.sso,
        contacts=world.contacts,
        people=world.people,
        logs=sink,
        jobs=world.jobs,
        flags=world.flags,
        clock=world.clock,
        indexes=world.indexes,
    )
    return world, sink, write_only_service(ports, world.transformer, {world.company: world.tenant})


class TestWriteOnlySink:
    def test_a_sink_with_only_insert_batch_runs_a_job(self) -> None:
        """trigger and run over a write-only sink complete the job and write what a full store gets."""
        full = World()
        full.service().trigger(full.company, full.tenant)
        expected = full.service().run(full.company, owner="runner-1").job

        world, sink, service = write_only_world()
        service.trigger(world.company, world.tenant)
        result = service.run(world.company, owner="runner-1")

        assert result.job.status == COMPLETED
        assert result.job.tally == expected.tally
        assert [log.external_id for log in sink.written] == [log.external_id for log in full.logs.logs]
        assert sink.written

    def test_rollback_and_a_fresh_restart_are_refused_without_the_migrated_port(self) -> None:
        """A sink that cannot delete gets ConfigError for rollback and trigger --fresh, the job untouched."""
        world, _sink, service = write_only_world()
        service.trigger(world.company, world.tenant)
        service.cancel(world.company)
        before = world.jobs.latest(world.company)
        with pytest.raises(ConfigError, match="migrated"):
            service.rollback(world.company)
        with pytest.raises(ConfigError, match="migrated"):
            service.trigger(world.company, world.tenant, restart="fresh")
        assert world.jobs.latest(world.company) == before

    def test_the_write_only_ports_type_check_as_service_ports(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """mypy accepts WriteOnlyPorts where ServicePorts is asked, and refuses the same bundle whose
        sink lacks insert_batch (so the first answer is a real check)."""
        monkeypatch.setenv("MYPYPATH", str(ROOT / "src"))  # this tree's core, whatever is installed
        module = Path(write_only_sink.__file__)
        broken = tmp_path / "not_a_writer.py"
        broken.write_text(module.read_text().replace("def insert_batch(", "def append_batch("))
        # mypy raises the interpreter's recursion limit and leaves it raised; later tests in this
        # process rely on the default limit (a row nested past it is that row's failure).
        limit = sys.getrecursionlimit()
        try:
            stdout, _stderr, status = mypy.api.run(
                [
                    "--config-file",
                    str(ROOT / "pyproject.toml"),
                    "--cache-dir",
                    str(ROOT / ".mypy_cache"),
                    "--no-error-summary",
                    "--hide-error-context",
                    str(module),
                    str(broken),
                ]
            )
        finally:
            sys.setrecursionlimit(limit)
        errors = [line for line in stdout.splitlines() if ": error:" in line]
        assert errors, stdout
        assert {Path(line.split(":", 1)[0]).name for line in errors} == {broken.name}, stdout
        assert any("MigrationService" in line and "WriteOnlyPorts" in line for line in errors), stdout
        assert status == 1
