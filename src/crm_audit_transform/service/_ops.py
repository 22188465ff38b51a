"""``MigrationService``'s operator calls: a job's status, cancel, rollback, and one row explained."""

from __future__ import annotations

from ..errors import ConfigError
from ..jobs import MigrationJob
from ..usecases import Explanation, MigrationStatus, RollbackResult
from ..usecases.cancel import cancel
from ..usecases.explain import ExplainPorts, explain_audit
from ..usecases.rollback import RollbackPorts, rollback
from ..usecases.status import migration_status
from ._base import ServiceBase


class OperatorCalls(ServiceBase):
    """status · latest_job · cancel · rollback · explain (``MigrationService`` documents the service)."""

    __slots__ = ()

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
        return rollback(company_sso_id, RollbackPorts(p.jobs, migrated, p.clock, self._settings.lease_ttl))

    def explain(self, company_sso_id: str, audit_id: int, tenant: str | None = None) -> Explanation:
        """Each stage's decision for one audit row with the lookups a run would make.

        ``tenant`` as ``tenant_for``; ``Explanation.row`` is None when there is no such row.
        """
        p = self._ports
        return explain_audit(
            audit_id,
            company_sso_id=company_sso_id,
            tenant=self.tenant_for(company_sso_id, tenant),
            ports=ExplainPorts(p.source, p.users, p.sso, p.contacts, p.reader),
            transformer=self._transformer,
        )
