"""``MigrationService``'s runs: trigger a job, run it (or one shard), dry-run an account, and the
refusals every run shares (the flag, the tenant binding, a job no run takes up).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Final

from attrs import evolve

from ..domain import Outcome
from ..errors import ConfigError, FlagDisabled, JobNotFound, JobNotRunnable, TenantMismatch
from ..jobs import CANCELLED, IN_PROGRESS, ROLLED_BACK, MigrationJob
from ..usecases import MigrationStatus, RunResult
from ..usecases.cancel import cancel
from ..usecases.guards import TriggerPorts, new_job, trigger
from ..usecases.run import run_job
from ..usecases.safety import bound_tenant, require_indexes
from ..usecases.shards import run_shard
from ..usecases.side_by_side import run_side_by_side
from ._base import ServiceBase

NOT_RUNNABLE: Final = frozenset({CANCELLED, ROLLED_BACK})
"""A job in these states is never run again: ``run`` refuses it (``JobNotRunnable``), nothing is written."""

FLAG_DISABLED_REASON: Final = "flag_disabled"
"""The ``halted_reason`` of a job cancelled because a run found its account's feature flag off."""


def _never() -> bool:
    return False


class RunOperations(ServiceBase):
    """trigger · run · run_shard · dry_run (``MigrationService`` documents the service)."""

    __slots__ = ()

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
        ``AlreadyCompleted`` or ``ResumeOrFresh`` (guards.py gives the order); ``MappingChanged`` for a
        resume under another mapping than the job's. ``ConfigError`` for
        ``"fresh"`` when the service has no ``migrated`` port to roll back with.
        """
        p = self._ports
        migrated = p.migrated
        if restart == "fresh" and migrated is None:
            raise ConfigError([("migrated", "this service has no migrated logs to roll back")])
        job = trigger(
            company_sso_id,
            bound_tenant(company_sso_id, tenant, self._tenants, allow_unbound=allow_unbound_tenant),
            TriggerPorts(
                p.flags,
                p.contacts,
                p.people,
                p.jobs,
                p.source,
                p.clock,
                p.indexes,
                migrated,
                self._settings.lease_ttl,
            ),
            scope=self._transformer.scope,
            date_range_start=date_range_start,
            coverage_threshold=self._coverage_threshold,
            restart=restart,
            shards=shards,
            mapping_mark=self._transformer.mapping_mark,
        )
        return MigrationStatus.of(job)

    def run(
        self,
        company_sso_id: str,
        *,
        owner: str,
        should_stop: Callable[[], bool] = _never,
        on_progress: Callable[[MigrationJob], None] | None = None,
        on_outcomes: Callable[[Sequence[Outcome]], None] | None = None,
    ) -> RunResult:
        """Start or resume the account's job from its cursor (``run_job``); ``owner`` names the lease.

        A sharded job runs its unfinished shards one after another (``run_shard``), stopping at the
        first that does not leave the job in progress — or, with a ``ShardLauncher`` (the service's
        ``shards``), side by side, up to its ``workers`` at once, each under a lease of its own
        named by the launcher, not ``owner`` (``usecases.side_by_side``: ``on_progress`` then sees
        the whole job, its counts summed over the shards; a lost shard process is ``WorkerLost``).
        ``JobNotFound`` without a job; ``JobNotRunnable`` when it is ``cancelled`` or
        ``rolled_back`` (no run takes it up: ``trigger`` with ``restart="resume"`` or ``"fresh"``
        first); ``LeaseHeld`` while another runner holds it (or one of its shards);
        ``TenantMismatch`` when the job reads another tenant than the account is bound to (a job
        triggered before the binding was configured): nothing is written. A job cancelled *while*
        it runs comes back ``cancelled`` in the result (its run stopped at its next batch); a
        ``completed`` or ``halted`` one comes back untouched.

        ``on_outcomes`` receives each saved step's outcomes (``run_job``'s hook), of every shard run
        here; shards run side by side run in other processes, whose outcomes it cannot see: with a
        ``ShardLauncher`` and a sharded job, giving it is a ``ValueError``, before anything is run.
        """
        job = self._runnable(company_sso_id)
        if job is not None and job.shards and self._shard_launcher is not None:
            if on_outcomes is not None:
                raise ValueError("on_outcomes cannot see shards run side by side in other processes")
            p = self._ports
            return run_side_by_side(
                job,
                self._shard_launcher,
                jobs=p.jobs,
                clock=p.clock,
                settings=self._settings,
                should_stop=should_stop,
                on_progress=on_progress,
            )
        if job is not None and job.shards:
            result: RunResult | None = None
            for index in range(len(job.shards)):
                result = self.run_shard(
                    company_sso_id,
                    index,
                    owner=owner,
                    should_stop=should_stop,
                    on_progress=on_progress,
                    on_outcomes=on_outcomes,
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
            on_outcomes=on_outcomes,
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
        on_outcomes: Callable[[Sequence[Outcome]], None] | None = None,
    ) -> RunResult:
        """Run one shard of the account's sharded job under its own lease (``run_shard``).

        ``on_outcomes`` receives each saved step's outcomes of the shard's rows (``run_shard``'s hook).
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
            on_outcomes=on_outcomes,
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
