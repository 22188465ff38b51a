"""What the HTTP surface calls: the part of ``crm_audit_transform.service.MigrationService`` it serves.

The app takes any object of this shape; ``crm_audit_adapters.bootstrap`` passes the one
``MigrationService`` every entrypoint shares.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Protocol

from crm_audit_transform.domain import ActivityLog, BatchResult
from crm_audit_transform.ports import Clock
from crm_audit_transform.usecases import MigrationStatus, RollbackResult
from crm_audit_transform.verification import VerifyReport


class HttpService(Protocol):
    @property
    def clock(self) -> Clock:
        """The time the service's guards read: a trigger's ``date_range_start`` after its ``now()`` is
        refused (400 ``INVALID_DATE_RANGE_START``) on this clock, as the service refuses it."""
        ...

    def migrate(self, records: Sequence[ActivityLog], *, require_binding: bool = False) -> BatchResult:
        """MigrateBatch: at most 20 records; raises BatchTooLarge above. Refused as a run is: the
        account's tenant (``external_id``'s; ``require_binding``: refuse an unbound account), its
        feature flag, a rollback under way (``MigrationService.migrate``)."""
        ...

    def trigger(
        self,
        company_sso_id: str,
        tenant: str | None = None,
        *,
        date_range_start: dt.datetime | None = None,
        restart: str | None = None,
    ) -> MigrationStatus:
        """Bind the tenant, start (or ``restart="resume"|"fresh"``) a job after the guards; its status.

        No unbound override here: an account served over HTTP must have a tenant binding.
        """
        ...

    def cancel(self, company_sso_id: str) -> MigrationStatus:
        """Cancel the in-progress job; its status. ``JobNotFound`` when none is in progress."""
        ...

    def status(self, company_sso_id: str) -> MigrationStatus:
        """The latest job's status (``not_started`` when there is no job)."""
        ...

    def rollback(self, company_sso_id: str) -> RollbackResult:
        """Delete this account's migrated logs."""
        ...

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
        """Verify the account (docs/verify.md); ``require_binding``: refuse an unbound account."""
        ...
