"""Use cases: plain functions and small classes that drive the ports.

``migrate_batch`` writes one batch; ``trigger`` guards and creates a job; ``run_job`` moves a job
from its cursor to the end (``run_shard`` one shard of a sharded job), its pages transformed by a
``PagePipeline`` (``pages.InProcessPages`` by default); ``migration_status``,
``rollback`` and ``explain_audit`` serve ops;
``verify_account`` proves an account's migration complete and repairs what is missing.

Services call them through ``MigrationService``; the names exported here are the values its methods
take and return. The use-case functions and their port bundles are internal (import them from
their modules, e.g. ``usecases.run``), free to change in any release.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .explain import Explanation
from .guards import DEFAULT_COVERAGE_THRESHOLD, FRESH, RESUME
from .migrate_batch import MAX_BATCH_SIZE
from .rollback import RollbackResult
from .run import HaltPoint, RunResult
from .settings import RunSettings
from .status import MigrationStatus

if TYPE_CHECKING:
    from .verify import VerifySettings

__all__ = [
    "DEFAULT_COVERAGE_THRESHOLD",
    "FRESH",
    "MAX_BATCH_SIZE",
    "RESUME",
    "Explanation",
    "HaltPoint",
    "MigrationStatus",
    "RollbackResult",
    "RunResult",
    "RunSettings",
    "VerifySettings",
]


if not TYPE_CHECKING:  # mypy sees the import above: a module __getattr__ would type any name as Any

    def __getattr__(name: str) -> Any:
        """``VerifySettings``, imported on first use: only verifying needs ``verify``'s modules, and a
        run's processes never import them."""
        if name == "VerifySettings":
            from .verify import VerifySettings

            return VerifySettings
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
