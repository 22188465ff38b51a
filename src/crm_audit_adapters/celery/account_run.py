"""The one call a task makes into the application: run or resume an account's job (or one shard).

Tasks do not orchestrate: they call the application service (``MigrationService.run``), over the
runtime's ports with the lookups counted and the batch writes timed (``ObservedPorts``), so the
worker, the CLI's ``run`` and the HTTP app drive the same use cases with the same rules. A task's
run loop runs with the collector settings of the CLI's ``run`` (``collector.run_loop_collection``),
restored when it ends: a Celery process runs one task at a time.
"""

from __future__ import annotations

from collections.abc import Callable

from crm_audit_transform.jobs import MigrationJob
from crm_audit_transform.usecases import RunResult

from ..bootstrap import Runtime
from ..collector import run_loop_collection
from ..observability import ObservedPorts


def run_account(
    runtime: Runtime,
    company_sso_id: str,
    *,
    owner: str,
    should_stop: Callable[[], bool],
    on_progress: Callable[[MigrationJob], None] | None = None,
) -> RunResult:
    """Run the account's in-progress job under ``owner``'s lease (``MigrationService.run``)."""
    service = runtime.service_over(ObservedPorts(runtime))
    with run_loop_collection():
        return service.run(company_sso_id, owner=owner, should_stop=should_stop, on_progress=on_progress)


def run_account_shard(
    runtime: Runtime,
    company_sso_id: str,
    shard: int,
    *,
    owner: str,
    should_stop: Callable[[], bool],
    on_progress: Callable[[MigrationJob], None] | None = None,
) -> RunResult:
    """Run one shard of the account's sharded job under its own lease (``MigrationService.run_shard``)."""
    service = runtime.service_over(ObservedPorts(runtime))
    with run_loop_collection():
        return service.run_shard(
            company_sso_id, shard, owner=owner, should_stop=should_stop, on_progress=on_progress
        )
