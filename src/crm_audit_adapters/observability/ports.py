"""Port decorators that measure: each wraps one port of a run and forwards every call unchanged.

They keep Prometheus out of the core: the run loop calls its ports as always, and these count
lookups and time batch writes on the way through.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping, Sequence

import attrs

from crm_audit_transform.domain import ActivityLog, Contact, CrmUser, EncodedLog, UserId, WriteResult
from crm_audit_transform.errors import DirectoryUnavailable
from crm_audit_transform.packed import PackedOutcomes
from crm_audit_transform.ports import (
    ActivityLogWriter,
    AuditSource,
    Clock,
    ContactDirectory,
    EncodingLogWriter,
    EnrichmentStore,
    EntityDirectory,
    FeatureFlags,
    IndexState,
    JobStore,
    LogEncoder,
    MigratedLogReader,
    MigratedLogs,
    PackedLogWriter,
    PeopleCounter,
    SsoDirectory,
    UserDirectory,
)
from crm_audit_transform.service import ServicePorts
from crm_audit_transform.usecases.run import RunPorts

from ..built_once import built_once
from .metrics import MigrationMetrics, process_metrics


class TimedActivityLogWriter:
    """``ActivityLogWriter`` whose ``insert_batch`` feeds ``crm_audit_batch_write_seconds``.

    A wrapper must forward every optional port method its writer has, or the run loop, which
    asks for them with ``isinstance``, silently stops using them behind metrics: ``log_encoder``
    here, ``insert_packed`` in ``TimedPackedLogWriter`` (``timed_log_writer`` picks the class).
    """

    __slots__ = ("_metrics", "_writer")

    def __init__(self, inner: ActivityLogWriter, metrics: MigrationMetrics) -> None:
        self._writer = inner
        self._metrics = metrics

    def log_encoder(self) -> LogEncoder | None:
        """The wrapped writer's (``ports.EncodingLogWriter``), so its logs can still be encoded ahead."""
        return self._writer.log_encoder() if isinstance(self._writer, EncodingLogWriter) else None

    def insert_batch(self, logs: Sequence[ActivityLog | EncodedLog]) -> Sequence[WriteResult]:
        started = time.perf_counter()
        try:
            return self._writer.insert_batch(logs)
        finally:
            self._metrics.batch_write.observe(time.perf_counter() - started)


class TimedPackedLogWriter(TimedActivityLogWriter):
    """``TimedActivityLogWriter`` of a ``ports.PackedLogWriter``: ``insert_packed`` is forwarded and
    timed as ``insert_batch`` is (one observation a step), so ``run --metrics-port`` keeps writing a
    worker's packed steps from their arrays."""

    __slots__ = ("_packed",)

    def __init__(self, inner: PackedLogWriter, metrics: MigrationMetrics) -> None:
        super().__init__(inner, metrics)
        self._packed = inner

    def insert_packed(self, outcomes: PackedOutcomes) -> Sequence[WriteResult] | None:
        started = time.perf_counter()
        try:
            return self._packed.insert_packed(outcomes)
        finally:
            self._metrics.batch_write.observe(time.perf_counter() - started)


def timed_log_writer(inner: ActivityLogWriter, metrics: MigrationMetrics) -> TimedActivityLogWriter:
    """``inner`` with its batch writes timed: a ``TimedPackedLogWriter`` when it is a
    ``ports.PackedLogWriter``, else a ``TimedActivityLogWriter`` (which claims no ``insert_packed``)."""
    if isinstance(inner, PackedLogWriter):
        return TimedPackedLogWriter(inner, metrics)
    return TimedActivityLogWriter(inner, metrics)


class CountedUserDirectory:
    __slots__ = ("_inner", "_metrics")

    def __init__(self, inner: UserDirectory, metrics: MigrationMetrics) -> None:
        self._inner = inner
        self._metrics = metrics

    def users_by_ids(self, tenant: str, ids: Collection[UserId]) -> Mapping[UserId, CrmUser]:
        self._metrics.lookup_calls.labels("users").inc()
        self._metrics.lookup_ids.labels("users").inc(len(ids))
        return self._inner.users_by_ids(tenant, ids)


class CountedSsoDirectory:
    """Counts USMAN calls, and the emails of a failed call as degraded actors."""

    __slots__ = ("_inner", "_metrics")

    def __init__(self, inner: SsoDirectory, metrics: MigrationMetrics) -> None:
        self._inner = inner
        self._metrics = metrics

    def sso_ids_by_emails(self, company_sso_id: str, emails: Collection[str]) -> Mapping[str, str]:
        self._metrics.lookup_calls.labels("sso").inc()
        self._metrics.lookup_ids.labels("sso").inc(len(emails))
        try:
            return self._inner.sso_ids_by_emails(company_sso_id, emails)
        except DirectoryUnavailable as exc:
            # An answer that leaves some emails unanswered degrades those only (lookup.fetch_lookups).
            unanswered = getattr(exc, "unanswered", None)
            self._metrics.usman_degraded.inc(len(emails) if unanswered is None else len(unanswered))
            raise


class CountedContactDirectory:
    __slots__ = ("_inner", "_metrics")

    def __init__(self, inner: ContactDirectory, metrics: MigrationMetrics) -> None:
        self._inner = inner
        self._metrics = metrics

    def contacts_by_crm_ids(
        self, company_sso_id: str, crm_person_ids: Collection[int]
    ) -> Mapping[int, Contact]:
        self._metrics.lookup_calls.labels("contacts").inc()
        self._metrics.lookup_ids.labels("contacts").inc(len(crm_person_ids))
        return self._inner.contacts_by_crm_ids(company_sso_id, crm_person_ids)


def observed_ports(ports: RunPorts, metrics: MigrationMetrics | None = None) -> RunPorts:
    """``ports`` with the lookups counted and the batch writes timed."""
    metrics = metrics or process_metrics()
    return attrs.evolve(
        ports,
        users=CountedUserDirectory(ports.users, metrics),
        sso=CountedSsoDirectory(ports.sso, metrics),
        contacts=CountedContactDirectory(ports.contacts, metrics),
        logs=timed_log_writer(ports.logs, metrics),
    )


class ObservedPorts:
    """A ``ServicePorts`` whose lookups are counted and batch writes timed; the rest passes through.

    Each port is read from ``inner`` when first asked for, so a composition root that builds its
    adapters lazily still opens only what an operation needs.
    """

    def __init__(self, inner: ServicePorts, metrics: MigrationMetrics | None = None) -> None:
        self._inner = inner
        self._metrics = metrics or process_metrics()

    @built_once
    def users(self) -> UserDirectory:
        return CountedUserDirectory(self._inner.users, self._metrics)

    @built_once
    def sso(self) -> SsoDirectory:
        return CountedSsoDirectory(self._inner.sso, self._metrics)

    @built_once
    def contacts(self) -> ContactDirectory:
        return CountedContactDirectory(self._inner.contacts, self._metrics)

    @built_once
    def logs(self) -> ActivityLogWriter:
        return timed_log_writer(self._inner.logs, self._metrics)

    @property
    def migrated(self) -> MigratedLogs | None:
        return self._inner.migrated

    @property
    def source(self) -> AuditSource:
        return self._inner.source

    @property
    def people(self) -> PeopleCounter:
        return self._inner.people

    @property
    def jobs(self) -> JobStore:
        return self._inner.jobs

    @property
    def flags(self) -> FeatureFlags:
        return self._inner.flags

    @property
    def clock(self) -> Clock:
        return self._inner.clock

    @property
    def indexes(self) -> IndexState:
        return self._inner.indexes

    @property
    def entities(self) -> EntityDirectory | None:
        return self._inner.entities

    @property
    def enrichment(self) -> EnrichmentStore | None:
        return self._inner.enrichment

    @property
    def reader(self) -> MigratedLogReader | None:
        return self._inner.reader
