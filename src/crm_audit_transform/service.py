"""The application service: every operation on an account's migration, over ports.

The CLI, the HTTP app and a task-queue worker all call one ``MigrationService``; none of them
orchestrates. Each method is one use case (``usecases/``) fed from the service's ports and
settings, so an entrypoint only parses its input, calls one method and renders the value back.

The service reads its ports from a ``ServicePorts`` bundle *on every call*, never at
construction: a composition root that builds adapters lazily (``crm_audit_adapters.bootstrap``)
then opens only what an operation needs — ``status`` never connects to the CRM, ``trigger`` never
to USMAN — and nothing connects at import. Any object with these attributes will do (an attrs
class of in-memory adapters from ``crm_audit_transform.testing`` in tests).

    service = MigrationService(ports, transformer, settings=RunSettings())
    service.trigger("company-1", "acme")          → MigrationStatus
    service.run("company-1", owner="host:pid")    → RunResult
    service.run_shard("company-1", 0, owner=…)     → RunResult (one shard of a sharded job)
    service.status("company-1")                   → MigrationStatus
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Final, Protocol

from attrs import evolve

from .domain import ActivityLog, BatchResult, Outcome
from .enrichment import EnrichmentPlan
from .enrichment.enrich import EnrichPorts, enrich_existing
from .enrichment_tally import EnrichmentTally
from .errors import (
    BatchTooLarge,
    ConfigError,
    FlagDisabled,
    JobAlreadyRunning,
    JobNotFound,
    JobNotRunnable,
    TenantMismatch,
)
from .jobs import CANCELLED, IN_PROGRESS, ROLLED_BACK, MigrationJob
from .ports import (
    ActivityLogWriter,
    AuditSource,
    Clock,
    ContactDirectory,
    EnrichmentStore,
    EntityDirectory,
    FeatureFlags,
    IndexState,
    JobStore,
    MigratedLogReader,
    MigratedLogs,
    PagePipeline,
    PeopleCounter,
    SsoDirectory,
    UserDirectory,
)
from .transformer import Transformer
from .usecases import (
    DEFAULT_COVERAGE_THRESHOLD,
    Explanation,
    MigrationStatus,
    RollbackResult,
    RunResult,
    RunSettings,
    VerifySettings,
)
from .usecases.cancel import cancel
from .usecases.explain import ExplainPorts, explain_audit
from .usecases.guards import TriggerPorts, new_job, trigger
from .usecases.migrate_batch import MAX_BATCH_SIZE, migrate_batch
from .usecases.rollback import RollbackPorts, rollback
from .usecases.run import RunPorts, run_job
from .usecases.safety import bound_tenant, require_indexes, tenant_of_external_id
from .usecases.shards import run_shard
from .usecases.status import migration_status
from .usecases.verify import VerifyPorts, verify_account
from .verification import VerifyReport

__all__ = ["MigrationService", "ServicePorts"]


class ServicePorts(Protocol):
    """Every port the service may drive, read when an operation needs it.

    ``logs`` is where migrated logs go (``run``, ``run_shard``, ``dry_run``, ``migrate``, and
    ``verify``'s repair): a write-only sink (a file, a queue) is enough. ``migrated`` deletes and
    counts the account's migrated logs for ``rollback`` and ``trigger(restart="fresh")`` (None:
    both are refused). ``entities`` and ``enrichment`` are None where there is no CDP to enrich (a
    dry run): a run then writes the logs as the transformer built them, and ``enrich`` is refused.
    ``reader`` reads the migrated logs back for ``verify`` (None: ``verify`` is refused).
    """

    @property
    def source(self) -> AuditSource: ...
    @property
    def users(self) -> UserDirectory: ...
    @property
    def sso(self) -> SsoDirectory: ...
    @property
    def contacts(self) -> ContactDirectory: ...
    @property
    def people(self) -> PeopleCounter: ...
    @property
    def logs(self) -> ActivityLogWriter: ...
    @property
    def migrated(self) -> MigratedLogs | None: ...
    @property
    def jobs(self) -> JobStore: ...
    @property
    def flags(self) -> FeatureFlags: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def indexes(self) -> IndexState: ...
    @property
    def entities(self) -> EntityDirectory | None: ...
    @property
    def enrichment(self) -> EnrichmentStore | None: ...
    @property
    def reader(self) -> MigratedLogReader | None: ...


NOT_RUNNABLE: Final = frozenset({CANCELLED, ROLLED_BACK})
"""A job in these states is never run again: ``run`` refuses it (``JobNotRunnable``), nothing is written."""

FLAG_DISABLED_REASON: Final = "flag_disabled"
"""The ``halted_reason`` of a job cancelled because a run found its account's feature flag off."""


def _never() -> bool:
    return False


class MigrationService:
    """trigger · run · status · cancel · rollback · enrich · explain · dry_run · verify · migrate.

    ``transformer`` holds the rules (built from a ``MappingConfig``); ``settings`` the run's
    tunables; ``coverage_threshold`` the Phase-A share of people with a CDP contact a trigger needs;
    ``tenants`` binds accounts to their one CRM tenant (company_sso_id → schema, see
    ``usecases.safety``); ``pipeline`` prepares and transforms the pages of ``run``, ``run_shard``
    and ``dry_run`` (default: in this process; ``crm_audit_adapters.page_pool`` for workers).
    Every write path first checks migration 035's indexes (``IndexesMissing``).
    Errors are the core's (``crm_audit_transform.errors``): guards refuse with their typed error,
    infrastructure that is down raises its ``*Unavailable``.
    """

    __slots__ = ("_coverage_threshold", "_pipeline", "_ports", "_settings", "_tenants", "_transformer")

    def __init__(
        self,
        ports: ServicePorts,
        transformer: Transformer,
        *,
        settings: RunSettings | None = None,
        coverage_threshold: float = DEFAULT_COVERAGE_THRESHOLD,
        tenants: Mapping[str, str] | None = None,
        pipeline: PagePipeline | None = None,
    ) -> None:
        self._ports = ports
        self._pipeline = pipeline
        self._tenants = dict(tenants or {})
        self._transformer = transformer
        self._settings = settings or RunSettings()
        self._coverage_threshold = coverage_threshold

    @property
    def transformer(self) -> Transformer:
        return self._transformer

    @property
    def settings(self) -> RunSettings:
        return self._settings

    # -- the job lifecycle ---------------------------------------------------------------------
    def trigger(
        self,
        company_sso_id: str,
        tenant: str | None = None,
        *,
        date_range_start: dt.datetime | None = None,
        allow_unbound_tenant: bool = False,
        restart: str | None = None,
        shards: int = 1,
    ) -> MigrationStatus:
        """Bind the tenant, check the guards and create the account's job; its status.

        ``tenant`` may be None for a bound account. ``restart`` is ``"resume"`` or ``"fresh"``
        after a halt or a cancel (``"fresh"`` rolls the account back first). ``shards`` > 1 splits
        a new job into that many id ranges, each run on its own (``run_shard``). Raises
        ``TenantMismatch`` / ``TenantUnbound`` (unless ``allow_unbound_tenant``), then
        ``IndexesMissing``, ``FlagDisabled``, ``ContactsNotMigrated``, ``JobAlreadyRunning``,
        ``AlreadyCompleted`` or ``ResumeOrFresh`` (guards.py gives the order). ``ConfigError`` for
        ``"fresh"`` when the service has no ``migrated`` port to roll back with.
        """
        p = self._ports
        migrated = p.migrated
        if restart == "fresh" and migrated is None:
            raise ConfigError([("migrated", "this service has no migrated logs to roll back")])
        job = trigger(
            company_sso_id,
            bound_tenant(company_sso_id, tenant, self._tenants, allow_unbound=allow_unbound_tenant),
            TriggerPorts(p.flags, p.contacts, p.people, p.jobs, p.source, p.clock, p.indexes, migrated),
            scope=self._transformer.scope,
            date_range_start=date_range_start,
            coverage_threshold=self._coverage_threshold,
            restart=restart,
            shards=shards,
        )
        return MigrationStatus.of(job)

    def run(
        self,
        company_sso_id: str,
        *,
        owner: str,
        should_stop: Callable[[], bool] = _never,
        on_progress: Callable[[MigrationJob], None] | None = None,
    ) -> RunResult:
        """Start or resume the account's job from its cursor (``run_job``); ``owner`` names the lease.

        A sharded job runs its unfinished shards one after another (``run_shard``), stopping at the
        first that does not leave the job in progress. ``JobNotFound`` without a job;
        ``JobNotRunnable`` when it is ``cancelled`` or ``rolled_back`` (no run takes it up:
        ``trigger`` with ``restart="resume"`` or ``"fresh"`` first); ``LeaseHeld`` while another
        runner holds it (or one of its shards); ``TenantMismatch`` when the job reads another tenant
        than the account is bound to (a job triggered before the binding was configured): nothing is
        written. A job cancelled *while* it runs comes back ``cancelled`` in the result (its run
        stopped at its next batch); a ``completed`` or ``halted`` one comes back untouched.
        """
        job = self._runnable(company_sso_id)
        if job is not None and job.shards:
            result: RunResult | None = None
            for index in range(len(job.shards)):
                result = self.run_shard(
                    company_sso_id, index, owner=owner, should_stop=should_stop, on_progress=on_progress
                )
                if result.stopped or result.job.status != IN_PROGRESS:
                    break
            assert result is not None  # a sharded job has two shards at least
            return result
        return run_job(
            company_sso_id,
            self._run_ports(),
            self._transformer,
            owner=owner,
            settings=self._settings,
            should_stop=should_stop,
            on_progress=on_progress,
            pipeline=self._pipeline,
        )

    def run_shard(
        self,
        company_sso_id: str,
        shard: int,
        *,
        owner: str,
        should_stop: Callable[[], bool] = _never,
        on_progress: Callable[[MigrationJob], None] | None = None,
    ) -> RunResult:
        """Run one shard of the account's sharded job under its own lease (``run_shard``).

        ``on_progress`` sees the shard's view of the job after each batch; the result holds the
        whole job as settled. ``JobNotFound`` without such a shard; ``LeaseHeld`` while another
        runner holds it; ``JobNotRunnable``, ``TenantMismatch`` and ``FlagDisabled`` as ``run``.
        """
        self._runnable(company_sso_id)
        return run_shard(
            company_sso_id,
            shard,
            self._run_ports(),
            self._transformer,
            jobs=self._ports.jobs,
            owner=owner,
            settings=self._settings,
            should_stop=should_stop,
            on_progress=on_progress,
            pipeline=self._pipeline,
        )

    def _runnable(self, company_sso_id: str) -> MigrationJob | None:
        """The latest job, refused (``TenantMismatch``) when it reads another tenant than the
        account's binding or, for an unbound account, a tenant bound to another account since the
        trigger — the guard ``tenant_for`` applies to every other command.

        ``JobNotRunnable`` for a job no run takes up (``NOT_RUNNABLE``). The feature flag is
        checked first: it is the account's emergency stop, so a job triggered before it was
        switched off (a queued or redelivered task, a ``run``) is not run on but cancelled with
        ``halted_reason`` ``flag_disabled`` — a status that says why it stopped — and
        ``FlagDisabled`` raised. A live runner elsewhere stops at its next batch, as after a
        ``cancel``.
        """
        if not self._ports.flags.is_enabled(company_sso_id):
            self._stop_switched_off(company_sso_id)
        job = self._ports.jobs.latest(company_sso_id)
        if job is None:
            return job
        bound = self._tenants.get(company_sso_id)
        if bound is not None and job.tenant != bound:
            raise TenantMismatch(
                f"job {job.job_id} reads CRM tenant {job.tenant!r} but company {company_sso_id} is bound "
                f"to {bound!r}: cancel it and trigger --fresh"
            )
        bound_tenant(company_sso_id, job.tenant, self._tenants, allow_unbound=True)
        if job.status in NOT_RUNNABLE:
            # Refused here, as verify --repair refuses it, so every surface (the runner, a Celery
            # task, a library caller) is told the same: nothing ran, and why.
            then = "trigger --resume or --fresh to go on" if job.status == CANCELLED else "trigger a new job"
            raise JobNotRunnable(
                f"company {company_sso_id}'s job {job.job_id} is {job.status}: nothing to run; {then}"
            )
        return job

    def _stop_switched_off(self, company_sso_id: str) -> None:
        """Cancel the account's in-progress job (if any) for its flag, then raise ``FlagDisabled``."""
        p = self._ports
        try:
            job = cancel(company_sso_id, jobs=p.jobs, clock=p.clock, reason=FLAG_DISABLED_REASON)
        except JobNotFound:
            stopped = "nothing was run"
        else:
            stopped = f"job {job.job_id} was cancelled, cursor kept (trigger --resume once it is on)"
        raise FlagDisabled(f"the CRM audit migration is not enabled for company {company_sso_id}: {stopped}")

    def status(self, company_sso_id: str) -> MigrationStatus:
        """The latest job's status, or ``not_started``."""
        return migration_status(company_sso_id, self._ports.jobs)

    def latest_job(self, company_sso_id: str) -> MigrationJob | None:
        """The account's latest job as stored, or None."""
        return self._ports.jobs.latest(company_sso_id)

    def cancel(self, company_sso_id: str) -> MigrationStatus:
        """Cancel the account's in-progress job (cursor kept; a live runner stops at its next batch).

        ``JobNotFound`` when no job is in progress.
        """
        p = self._ports
        return MigrationStatus.of(cancel(company_sso_id, jobs=p.jobs, clock=p.clock))

    def rollback(self, company_sso_id: str) -> RollbackResult:
        """Delete the account's migrated logs (``source_tag = crm_migration`` only).

        ``JobAlreadyRunning`` while a job is in progress; ``ConfigError`` when the service has no
        ``migrated`` port (a write-only sink cannot delete).
        """
        p = self._ports
        migrated = p.migrated
        if migrated is None:
            raise ConfigError([("migrated", "this service has no migrated logs to roll back")])
        return rollback(company_sso_id, RollbackPorts(p.jobs, migrated, p.clock))

    # -- logs already in the CDP -----------------------------------------------------------------
    def enrich(
        self,
        company_sso_id: str,
        tenant: str | None = None,
        *,
        dry_run: bool = False,
        on_plan: Callable[[EnrichmentPlan], None] | None = None,
    ) -> EnrichmentTally:
        """Fill missing referents of the account's stored association logs (``enrich_existing``).

        ``tenant`` as ``tenant_for`` (the bound one, or the latest job's; never another account's).
        ``dry_run`` plans and applies nothing; each page's plan goes to ``on_plan``. ``ConfigError``
        when the service has no enrichment ports; ``IndexesMissing`` before a patching run without
        035's indexes.
        """
        entities, store = self._ports.entities, self._ports.enrichment
        if entities is None or store is None:
            raise ConfigError([("enrichment", "this service has no CDP to enrich")])
        tenant = self.tenant_for(company_sso_id, tenant)
        if not dry_run:
            require_indexes(self._ports.indexes)
        return enrich_existing(
            company_sso_id,
            tenant,
            ports=EnrichPorts(entities, store),
            dry_run=dry_run,
            on_plan=on_plan,
        )

    def explain(self, company_sso_id: str, audit_id: int, tenant: str | None = None) -> Explanation:
        """Each stage's decision for one audit row with the lookups a run would make.

        ``tenant`` as ``tenant_for``; ``Explanation.row`` is None when there is no such row.
        """
        p = self._ports
        return explain_audit(
            audit_id,
            company_sso_id=company_sso_id,
            tenant=self.tenant_for(company_sso_id, tenant),
            ports=ExplainPorts(p.source, p.users, p.sso, p.contacts),
            transformer=self._transformer,
        )

    def dry_run(
        self,
        company_sso_id: str,
        tenant: str,
        *,
        on_outcomes: Callable[[Sequence[Outcome]], None] | None = None,
        on_progress: Callable[[MigrationJob], None] | None = None,
    ) -> RunResult:
        """Create a job and run it to the end without halting: every row gets its outcome, and
        ``RunResult.would_halt`` says where the real run's halt rule would have halted.

        ``on_outcomes`` receives each saved step's outcomes (``run_job``'s hook), e.g. to list them.

        Meant for a service over throwaway stores (``crm_audit_adapters.bootstrap.dry_run_service``
        wires files and an in-memory job store, every account enabled and none bound). Over real
        stores it writes like ``run``, so it is refused as a run is, before its job is created:
        ``IndexesMissing``; ``TenantMismatch`` when the account is bound to another tenant, or
        ``tenant`` is bound to another account (``bound_tenant``, unbound allowed: a library call);
        ``FlagDisabled`` when the account's flag is off. Its lease owner is the job's own
        (``dry-run:{job_id}``), so two calls never share a lease.
        ``on_progress`` sees the job after every batch, as in ``run``.
        """
        p = self._ports
        require_indexes(p.indexes)
        bound_tenant(company_sso_id, tenant, self._tenants, allow_unbound=True)
        if not p.flags.is_enabled(company_sso_id):
            raise FlagDisabled(
                f"the CRM audit migration is not enabled for company {company_sso_id}: nothing was written"
            )
        scope = self._transformer.scope
        # Every in-scope row, whatever its time: a source that knows its ends is not read twice.
        job = new_job(company_sso_id, tenant, source=p.source, scope=scope, now=p.clock.now(), every_row=True)
        p.jobs.create(job)
        return run_job(
            company_sso_id,
            self._run_ports(),
            self._transformer,
            owner=f"dry-run:{job.job_id}",
            settings=evolve(self._settings, enforce_halt=False),
            on_outcomes=on_outcomes,
            on_progress=on_progress,
            pipeline=self._pipeline,
        )

    def verify(
        self,
        company_sso_id: str,
        tenant: str | None = None,
        *,
        sample: int | None = None,
        seed: int | None = None,
        repair: bool = False,
        owner: str = "verify",
        require_binding: bool = False,
    ) -> VerifyReport:
        """Prove the account's migration complete; with ``repair``, write what is missing (docs/verify.md).

        The tenant is the account's binding (``TenantMismatch`` for another); with
        ``require_binding`` (HTTP, workers) an unbound account is ``TenantUnbound``; unbound
        otherwise, ``tenant`` or the job's, never a tenant bound to another account
        (``tenant_for``). ``sample`` logs per page are content-checked, drawn
        with ``seed`` (callers pass a fresh one for a new draw; None means 0). ``repair`` needs a
        job (``JobNotFound``), 035's indexes (``IndexesMissing``) and the job's lease (``LeaseHeld``
        while a run holds it), and the account's feature flag on (``FlagDisabled``: a repair writes
        logs, as a run does; a verify without it only reads). ``ConfigError`` when the service has
        no log reader.
        """
        p = self._ports
        reader = p.reader
        if reader is None:
            raise ConfigError([("reader", "this service has no migrated logs to verify")])
        if require_binding:
            tenant = bound_tenant(company_sso_id, tenant, self._tenants)
        else:
            tenant = self.tenant_for(company_sso_id, tenant)
        if repair and not p.flags.is_enabled(company_sso_id):
            raise FlagDisabled(
                f"the CRM audit migration is not enabled for company {company_sso_id}: nothing was "
                "repaired (verify without --repair still reports)"
            )
        settings = VerifySettings(
            page_size=self._settings.page_size,
            sample=sample,
            repair=repair,
            batch_size=self._settings.batch_size,
            lease_seconds=self._settings.lease_seconds,
            halt_threshold=self._settings.halt_threshold,
        )
        return verify_account(
            company_sso_id,
            VerifyPorts(p.source, p.users, p.sso, p.contacts, reader, p.jobs, p.logs, p.clock, p.indexes),
            self._transformer,
            tenant=tenant,
            settings=settings,
            rng=random.Random(seed or 0) if sample is not None else None,
            owner=owner,
        )

    # -- the S2S write route ---------------------------------------------------------------------
    def migrate(self, records: Sequence[ActivityLog], *, require_binding: bool = False) -> BatchResult:
        """MigrateBatch over the log store: at most 20 records (``BatchTooLarge`` above).

        A write path like ``run``, refused as a run is, before anything is written: ``IndexesMissing``
        without migration 035's indexes; then, for each account the records name, in order of first
        appearance: ``TenantMismatch`` when a record's ``external_id`` is not ``crm:{tenant}:audit:{id}``
        (the one spelling a run writes) of the account's bound tenant, or names a tenant bound to
        another account (person ids overlap across tenants); with ``require_binding`` (HTTP) an unbound
        account is ``TenantUnbound``; ``FlagDisabled`` when the account's feature flag is off (its
        emergency stop); ``JobAlreadyRunning`` while the account is being rolled back (the hold
        ``run`` and ``trigger`` honour). docs/http.md lists the answers.
        """
        require_indexes(self._ports.indexes)
        if len(records) > MAX_BATCH_SIZE:
            raise BatchTooLarge(len(records), MAX_BATCH_SIZE)
        checked: set[str] = set()
        for record in records:
            company = record.company_sso_id
            bound_tenant(
                company,
                tenant_of_external_id(company, record.external_id),
                self._tenants,
                allow_unbound=not require_binding,
            )
            if company in checked:
                continue
            checked.add(company)
            if not self._ports.flags.is_enabled(company):
                raise FlagDisabled(
                    f"the CRM audit migration is not enabled for company {company}: nothing was written"
                )
            held = self._ports.jobs.rollback_under_way(company)
            if held is not None:
                raise JobAlreadyRunning(
                    f"company {company} is being rolled back (job {held.job_id}): nothing was written"
                )
        return migrate_batch(records, self._ports.logs)

    # -- helpers every entrypoint needs ----------------------------------------------------------
    def tenant_for(self, company_sso_id: str, tenant: str | None) -> str:
        """The tenant an operation on the account reads: the one guard of every tenant override
        (``enrich``, ``explain``, ``verify``; ``trigger`` applies the same ``bound_tenant``).

        A bound account: its bound tenant (``TenantMismatch`` if ``tenant`` names another). Unbound:
        ``tenant`` when given, else the tenant of the account's latest job (``JobNotFound`` if
        none) — and either is ``TenantMismatch`` when another account is bound to it, as
        ``trigger --allow-unbound-tenant`` refuses it: person ids overlap across tenants, so
        reading another account's tenant would put its CRM data on this account's logs.
        """
        if tenant is None and company_sso_id not in self._tenants:
            job = self._ports.jobs.latest(company_sso_id)
            if job is None:
                raise JobNotFound(
                    f"company {company_sso_id} has no job to take the tenant from: pass --tenant"
                )
            tenant = job.tenant
        return bound_tenant(company_sso_id, tenant, self._tenants, allow_unbound=True)

    def _run_ports(self) -> RunPorts:
        p = self._ports
        return RunPorts(
            p.source,
            p.users,
            p.sso,
            p.contacts,
            p.logs,
            p.jobs,
            p.clock,
            entities=p.entities,
            indexes=p.indexes,
        )
