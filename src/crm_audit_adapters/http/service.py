"""What the HTTP surface needs from the application: the same use cases the runner calls.

``crm_audit_adapters.bootstrap.Runtime`` implements it over the configured adapters.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from crm_audit_transform.domain import ActivityLog, BatchResult


class MigrationService(Protocol):
    def migrate(self, records: Sequence[ActivityLog]) -> BatchResult:
        """MigrateBatch: at most 20 records; raises BatchTooLarge above."""
        ...

    def trigger(
        self, company_sso_id: str, tenant: str | None, date_range_start: dt.datetime | None
    ) -> Mapping[str, Any]:
        """Bind the tenant, start a job after the guards; returns its status document.

        No unbound override here: an account served over HTTP must have a tenant binding.
        """
        ...

    def status(self, company_sso_id: str) -> Mapping[str, Any]:
        """Status document (``not_started`` when there is no job), with ``accuracy_pct``."""
        ...

    def rollback(self, company_sso_id: str) -> int:
        """Delete this account's migrated logs; returns how many."""
        ...
