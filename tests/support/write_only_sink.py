"""A service whose logs go to a sink that can only be written (a queue, an append-only file).

Type-checked on its own by tests/unit/test_service.py (mypy, the project's settings): the
``MigrationService(...)`` call below is where ``WriteOnlyPorts`` must satisfy ``ServicePorts``, so
a port bundle that asked the sink for rollback or counts would fail it. Imports the core only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from attrs import frozen

from crm_audit_transform import ActivityLog, MigrationService, Transformer, WriteResult
from crm_audit_transform.domain import EncodedLog
from crm_audit_transform.ports import (
    AuditSource,
    Clock,
    ContactDirectory,
    FeatureFlags,
    IndexState,
    JobStore,
    PeopleCounter,
    SsoDirectory,
    UserDirectory,
)


class WriteOnlySink:
    """``insert_batch`` and nothing else: keeps what it was given, in order (no dedup, as a queue)."""

    def __init__(self) -> None:
        self.written: list[ActivityLog] = []

    def insert_batch(self, logs: Sequence[ActivityLog | EncodedLog]) -> Sequence[WriteResult]:
        plain = [log for log in logs if isinstance(log, ActivityLog)]
        if len(plain) != len(logs):  # it has no log_encoder: an EncodedLog here is a wiring mistake
            raise TypeError("WriteOnlySink has no log encoder, yet got an encoded log")
        self.written.extend(plain)
        return tuple(WriteResult(log.external_id, "inserted") for log in plain)


@frozen
class WriteOnlyPorts:
    """The ports of a run and its trigger; no rollback, no read-back, no CDP to enrich."""

    source: AuditSource
    users: UserDirectory
    sso: SsoDirectory
    contacts: ContactDirectory
    people: PeopleCounter
    logs: WriteOnlySink
    jobs: JobStore
    flags: FeatureFlags
    clock: Clock
    indexes: IndexState
    migrated: None = None
    entities: None = None
    enrichment: None = None
    reader: None = None


def write_only_service(
    ports: WriteOnlyPorts, transformer: Transformer, tenants: Mapping[str, str]
) -> MigrationService:
    """The application service over ``ports``: trigger and run write to the sink alone."""
    return MigrationService(ports, transformer, tenants=tenants)
