"""crm-audit-transform: the pure core of the CRM audit → CDP activity-log migration.

Values in, outcomes out: no I/O, no clock, no globals. Adapters (``crm_audit_adapters``) implement
the ports in ``crm_audit_transform.ports``; ``crm_audit_transform.testing`` ships in-memory ones.
"""

from __future__ import annotations

from .domain import (
    SOURCE_TAG,
    ActivityLog,
    Actor,
    AuditRow,
    BatchResult,
    Contact,
    CrmUser,
    EntityRef,
    Failed,
    FieldChange,
    Migrated,
    Outcome,
    ScopeBounds,
    Skipped,
    WriteResult,
)
from .errors import (
    AlreadyCompleted,
    AuditedChangesError,
    BadEncoding,
    BatchTooLarge,
    ConfigError,
    ContactsNotMigrated,
    CrmAuditError,
    DirectoryUnavailable,
    FlagDisabled,
    GuardError,
    JobAlreadyRunning,
    JobNotFound,
    LeaseHeld,
    LimitExceeded,
    MalformedYaml,
    NotAMapping,
    SourceUnavailable,
    StoreUnavailable,
    Unavailable,
    UnsupportedTag,
)
from .jobs import MigrationJob
from .loading import LoaderLimits, load_audited_changes
from .tally import Tally
from .values import Changes, Scalar, Value

__version__ = "0.1.0"

__all__ = [
    "SOURCE_TAG",
    "ActivityLog",
    "Actor",
    "AlreadyCompleted",
    "AuditRow",
    "AuditedChangesError",
    "BadEncoding",
    "BatchResult",
    "BatchTooLarge",
    "Changes",
    "ConfigError",
    "Contact",
    "ContactsNotMigrated",
    "CrmAuditError",
    "CrmUser",
    "DirectoryUnavailable",
    "EntityRef",
    "Failed",
    "FieldChange",
    "FlagDisabled",
    "GuardError",
    "JobAlreadyRunning",
    "JobNotFound",
    "LeaseHeld",
    "LimitExceeded",
    "LoaderLimits",
    "MalformedYaml",
    "Migrated",
    "MigrationJob",
    "NotAMapping",
    "Outcome",
    "Scalar",
    "ScopeBounds",
    "Skipped",
    "SourceUnavailable",
    "StoreUnavailable",
    "Tally",
    "Unavailable",
    "UnsupportedTag",
    "Value",
    "WriteResult",
    "__version__",
    "load_audited_changes",
]
