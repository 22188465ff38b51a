"""The ports ``MigrationService`` drives, read when an operation needs them (``service``)."""

from __future__ import annotations

from typing import Protocol

from ..ports import (
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
    PeopleCounter,
    SsoDirectory,
    UserDirectory,
)


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
