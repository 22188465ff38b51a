"""What a run drives: the ports of ``run_job`` and ``run_loop`` (``usecases.run``)."""

from __future__ import annotations

from attrs import field, frozen

from .._arguments import port_of
from ..ports import (
    ActivityLogWriter,
    AuditSource,
    Clock,
    ContactDirectory,
    EntityDirectory,
    IndexState,
    RunJobStore,
    SsoDirectory,
    UserDirectory,
)
from ..ports.guards import CLOCK_METHODS


@frozen
class RunPorts:
    """What a run drives; with ``entities`` it also names the linked entity of each association log.

    ``indexes`` is checked before anything is written: no run without migration 035's indexes.
    """

    source: AuditSource
    users: UserDirectory
    sso: SsoDirectory
    contacts: ContactDirectory
    logs: ActivityLogWriter
    jobs: RunJobStore
    clock: Clock = field(validator=port_of("Clock", CLOCK_METHODS))
    entities: EntityDirectory | None = None
    indexes: IndexState = field(kw_only=True)
