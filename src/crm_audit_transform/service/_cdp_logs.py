"""``MigrationService`` on the logs in the CDP: enrich the stored ones, verify an account's migration
(and repair it), and the S2S write route (``migrate``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ..domain import ActivityLog, BatchResult
from ..enrichment import EnrichmentPlan
from ..enrichment.enrich import EnrichPorts, enrich_existing
from ..enrichment_tally import EnrichmentTally
from ..errors import BatchTooLarge, ConfigError, CrmAuditError, FlagDisabled
from ..ports.log_stores import MigratedLogsById
from ..usecases.migrate_batch import MAX_BATCH_SIZE, migrate_batch
from ..usecases.migrate_hold import refuse_rolled_back, settle_after_write
from ..usecases.safety import bound_tenant, require_indexes, tenant_of_external_id
from ._base import ServiceBase

if TYPE_CHECKING:
    from ..verification import VerifyReport


class CdpLogOperations(ServiceBase):
    """enrich · verify · migrate (``MigrationService`` documents the service)."""

    __slots__ = ()

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
        with ``seed`` (callers pass a fresh one for a new draw; None means 0): each None or an integer
        of its range, else ``VerifyOptionInvalid`` before anything is read (``verification.check_draw``,
        the bounds the runner and the HTTP route take). ``repair`` needs a
        job (``JobNotFound``), 035's indexes (``IndexesMissing``) and the job's lease (``LeaseHeld``
        while a run holds it), and the account's feature flag on (``FlagDisabled``: a repair writes
        logs, as a run does; a verify without it only reads). ``ConfigError`` when the service has
        no log reader.
        """
        # Here, not at the top: a run's processes never load the verification's modules.
        from ..verification import check_draw

        check_draw(sample, seed)
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
        # Imported by the one method that verifies: a run's processes (a shard's, a pool worker's)
        # never load the verification's modules (benchmarks/RESULTS.md, "Tenth round: what an
        # operator waits for").
        from ..usecases.verify import VerifyPorts, VerifySettings, verify_account

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
            VerifyPorts(
                p.source,
                p.users,
                p.sso,
                p.contacts,
                reader,
                p.jobs,
                p.logs,
                p.clock,
                p.indexes,
                entities=p.entities,
            ),
            self._transformer,
            tenant=tenant,
            settings=settings,
            rng=random.Random(seed or 0) if sample is not None else None,
            owner=owner,
        )

    def migrate(self, records: Sequence[ActivityLog], *, require_binding: bool = False) -> BatchResult:
        """MigrateBatch over the log store: at most 20 records (``BatchTooLarge`` above).

        A write path like ``run``, refused as a run is, before anything is written: ``IndexesMissing``
        without migration 035's indexes; then, for each account the records name, in order of first
        appearance: ``TenantMismatch`` when a record's ``external_id`` is not ``crm:{tenant}:audit:{id}``
        (the one spelling a run writes) of the account's bound tenant, or names a tenant bound to
        another account (person ids overlap across tenants); with ``require_binding`` (HTTP) an unbound
        account is ``TenantUnbound``; ``FlagDisabled`` when the account's feature flag is off (its
        emergency stop); ``JobAlreadyRunning`` while the account is being rolled back (the hold
        ``run`` and ``trigger`` honour), ``JobNotRunnable`` once its job is rolled back (as ``run``;
        a new ``trigger`` opens it again). A batch that met a rollback starting while it was written
        deletes the logs it inserted and is refused ``JobNotRunnable`` after the write, at once
        (``usecases.migrate_hold``: no wait for the rollback, no rollback run here). docs/http.md
        lists the answers. A record whose ``customer_id`` is not the account's contact its
        ``metadata.crm_person_id`` names is ``skipped: contact_not_found``, as a run skips such a
        row (``migrate_batch``).
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
            refuse_rolled_back(company, self._ports.jobs)
        result = migrate_batch(records, self._ports.logs, contacts=self._ports.contacts)
        inserted: dict[str, list[str]] = {}
        for record, written in zip(records, result.results, strict=True):
            if written.status == "inserted":
                inserted.setdefault(record.company_sso_id, []).append(written.external_id)
        if inserted:
            # The store that wrote them deletes them, when the batch met a rollback (migrate_hold).
            writer, migrated = self._ports.logs, self._ports.migrated
            by_id = (
                writer
                if isinstance(writer, MigratedLogsById)
                else migrated
                if isinstance(migrated, MigratedLogsById)
                else None
            )
            refusals: list[CrmAuditError] = []
            for company in sorted(inserted):  # every account settled, the first refusal raised
                try:
                    settle_after_write(company, self._ports.jobs, inserted[company], by_id)
                except CrmAuditError as exc:
                    refusals.append(exc)
            if refusals:
                raise refusals[0]
        return result
