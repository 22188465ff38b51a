"""Use cases: plain functions and small classes that drive the ports.

``migrate_batch`` writes one batch; ``trigger`` guards and creates a job; ``run_job`` moves a job
from its cursor to the end (``run_shard`` one shard of a sharded job); ``migration_status``,
``rollback`` and ``explain_audit`` serve ops;
``verify_account`` proves an account's migration complete and repairs what is missing.
"""

from __future__ import annotations

from .cancel import cancel
from .explain import ExplainPorts, Explanation, explain_audit
from .guards import (
    DEFAULT_COVERAGE_THRESHOLD,
    FRESH,
    RESUME,
    TriggerPorts,
    check_guards,
    contact_coverage,
    new_job,
    trigger,
)
from .migrate_batch import MAX_BATCH_SIZE, migrate_batch
from .rollback import RollbackPorts, RollbackResult, rollback
from .run import HaltPoint, RunPorts, RunResult, run_job, run_loop
from .safety import bound_tenant, require_indexes
from .settings import RunSettings
from .shards import ShardJobs, run_shard, settle, shard_view, split_shards
from .status import MigrationStatus, migration_status, report_counts
from .verify import VerifyPorts, VerifySettings, verify_account

__all__ = [
    "DEFAULT_COVERAGE_THRESHOLD",
    "FRESH",
    "MAX_BATCH_SIZE",
    "RESUME",
    "ExplainPorts",
    "Explanation",
    "HaltPoint",
    "MigrationStatus",
    "RollbackPorts",
    "RollbackResult",
    "RunPorts",
    "RunResult",
    "RunSettings",
    "ShardJobs",
    "TriggerPorts",
    "VerifyPorts",
    "VerifySettings",
    "bound_tenant",
    "cancel",
    "check_guards",
    "contact_coverage",
    "explain_audit",
    "migrate_batch",
    "migration_status",
    "new_job",
    "report_counts",
    "require_indexes",
    "rollback",
    "run_job",
    "run_loop",
    "run_shard",
    "settle",
    "shard_view",
    "split_shards",
    "trigger",
    "verify_account",
]
