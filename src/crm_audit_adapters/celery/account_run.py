"""The one call a task makes into the application: run or resume an account's job.

Tasks do not orchestrate: this is the whole of what ``migrate_account`` asks of the runtime, so
the worker, the CLI's ``run`` and the HTTP app run the same use case with the same ports.
"""

from __future__ import annotations

from collections.abc import Callable

from crm_audit_transform.jobs import MigrationJob
from crm_audit_transform.usecases import RunResult, run_job

from ..bootstrap import Runtime
from ..observability import observed_ports


def run_account(
    runtime: Runtime,
    company_sso_id: str,
    *,
    owner: str,
    should_stop: Callable[[], bool],
    on_progress: Callable[[MigrationJob], None] | None = None,
) -> RunResult:
    """Run the account's in-progress job under ``owner``'s lease (see ``run_job``)."""
    return run_job(
        company_sso_id,
        observed_ports(runtime.run_ports()),
        runtime.transformer,
        owner=owner,
        settings=runtime.settings.run,
        should_stop=should_stop,
        on_progress=on_progress,
    )
