"""What the HTTP surface needs from the application: the same use cases the runner calls."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from crm_audit_transform.domain import ActivityLog, BatchResult
from crm_audit_transform.ports import ActivityLogStore
from crm_audit_transform.usecases import (
    DEFAULT_COVERAGE_THRESHOLD,
    MigrateBatch,
    MigrationStatus,
    TriggerPorts,
    migration_status,
    rollback,
    trigger,
)


class MigrationService(Protocol):
    def migrate(self, records: Sequence[ActivityLog]) -> BatchResult:
        """MigrateBatch: at most 20 records; raises BatchTooLarge above."""
        ...

    def trigger(
        self, company_sso_id: str, tenant: str, date_range_start: dt.datetime | None
    ) -> Mapping[str, Any]:
        """Start a job after the guards; returns its status document."""
        ...

    def status(self, company_sso_id: str) -> Mapping[str, Any]:
        """Status document (``not_started`` when there is no job), with ``accuracy_pct``."""
        ...

    def rollback(self, company_sso_id: str) -> int:
        """Delete this account's migrated logs; returns how many."""
        ...


class UseCaseService:
    """``MigrationService`` over the core's use cases and any adapters of their ports.

    Trigger creates the job row; a worker (``crm-audit-migrate run``) moves it. The same ports the
    runner wires are passed in, so both surfaces share one behaviour.
    """

    def __init__(
        self,
        *,
        trigger_ports: TriggerPorts,
        logs: ActivityLogStore,
        scope: Sequence[str],
        coverage_threshold: float = DEFAULT_COVERAGE_THRESHOLD,
    ) -> None:
        self._ports = trigger_ports
        self._logs = logs
        self._migrate = MigrateBatch(logs)
        self._scope = tuple(scope)
        self._threshold = coverage_threshold

    def migrate(self, records: Sequence[ActivityLog]) -> BatchResult:
        return self._migrate(records)

    def trigger(
        self, company_sso_id: str, tenant: str, date_range_start: dt.datetime | None
    ) -> Mapping[str, Any]:
        job = trigger(
            company_sso_id,
            tenant,
            self._ports,
            scope=self._scope,
            date_range_start=date_range_start,
            coverage_threshold=self._threshold,
        )
        return MigrationStatus.of(job).as_dict()

    def status(self, company_sso_id: str) -> Mapping[str, Any]:
        return migration_status(company_sso_id, self._ports.jobs).as_dict()

    def rollback(self, company_sso_id: str) -> int:
        result = rollback(company_sso_id, jobs=self._ports.jobs, logs=self._logs, clock=self._ports.clock)
        return result.deleted
