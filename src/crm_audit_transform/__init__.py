"""crm-audit-transform: the pure core of the CRM audit → CDP activity-log migration.

Values in, outcomes out: no I/O, no clock, no globals. Adapters (``crm_audit_adapters``) implement
the ports in ``crm_audit_transform.ports``; ``crm_audit_transform.testing`` ships in-memory ones.
"""

from __future__ import annotations

from .chain import RowDraft, RuleChain, Stage, StageObserver
from .config import MappingConfig, load_config, load_default_config
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
    UserId,
    WriteResult,
)
from .enrichment_tally import EnrichmentTally
from .errors import (
    AlreadyCompleted,
    AuditedChangesError,
    BadEncoding,
    BatchTooLarge,
    ConfigError,
    ConnectionRejected,
    ContactsNotMigrated,
    CrmAuditError,
    DependencyMissing,
    DirectoryRefused,
    DirectoryUnavailable,
    FlagDisabled,
    GuardError,
    IndexConflict,
    IndexesMissing,
    JobAlreadyRunning,
    JobNotFound,
    LeaseHeld,
    LimitExceeded,
    MalformedYaml,
    NotAMapping,
    ResumeOrFresh,
    SourceUnavailable,
    StoreUnavailable,
    TenantMismatch,
    TenantUnbound,
    Unavailable,
    UnknownTenant,
    UnsupportedTag,
)
from .halting import HaltRule
from .jobs import JobShard, MigrationJob
from .loading import JsonbText, LoaderLimits, load_audited_changes
from .lookup import LookupContext, LookupPorts, LookupRequest, fetch_lookups
from .lookup_cache import LookupCache
from .rules import MappedCategory, Rejection
from .service import MigrationService, ServicePorts
from .tally import Tally
from .transformer import PageResult, PreparedRow, StageDecision, Transformer, external_id
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
    "ConnectionRejected",
    "Contact",
    "ContactsNotMigrated",
    "CrmAuditError",
    "CrmUser",
    "DependencyMissing",
    "DirectoryRefused",
    "DirectoryUnavailable",
    "EnrichmentTally",
    "EntityRef",
    "Failed",
    "FieldChange",
    "FlagDisabled",
    "GuardError",
    "HaltRule",
    "IndexConflict",
    "IndexesMissing",
    "JobAlreadyRunning",
    "JobNotFound",
    "JobShard",
    "JsonbText",
    "LeaseHeld",
    "LimitExceeded",
    "LoaderLimits",
    "LookupCache",
    "LookupContext",
    "LookupPorts",
    "LookupRequest",
    "MalformedYaml",
    "MappedCategory",
    "MappingConfig",
    "Migrated",
    "MigrationJob",
    "MigrationService",
    "NotAMapping",
    "Outcome",
    "PageResult",
    "PreparedRow",
    "Rejection",
    "ResumeOrFresh",
    "RowDraft",
    "RuleChain",
    "Scalar",
    "ScopeBounds",
    "ServicePorts",
    "Skipped",
    "SourceUnavailable",
    "Stage",
    "StageDecision",
    "StageObserver",
    "StoreUnavailable",
    "Tally",
    "TenantMismatch",
    "TenantUnbound",
    "Transformer",
    "Unavailable",
    "UnknownTenant",
    "UnsupportedTag",
    "UserId",
    "Value",
    "WriteResult",
    "__version__",
    "external_id",
    "fetch_lookups",
    "load_audited_changes",
    "load_config",
    "load_default_config",
]
