"""run_account and run_account_shard: a Celery task's run loop runs with the CLI run's collector settings."""

from __future__ import annotations

import gc
from typing import Any, cast

import pytest

from crm_audit_adapters.bootstrap import Runtime
from crm_audit_adapters.celery import account_run
from crm_audit_adapters.collector import RUN_LOOP_FIRST_THRESHOLD


class _Service:
    """Answers a run with the collector settings it ran under: (first threshold, anything frozen)."""

    def run(self, company_sso_id: str, **_: Any) -> tuple[int, bool]:
        return gc.get_threshold()[0], gc.get_freeze_count() > 0

    def run_shard(self, company_sso_id: str, shard: int, **_: Any) -> tuple[int, bool]:
        return gc.get_threshold()[0], gc.get_freeze_count() > 0


class _Runtime:
    def service_over(self, ports: object) -> _Service:
        return _Service()


@pytest.mark.parametrize("shard", [None, 1])
def test_a_tasks_run_loop_has_the_run_commands_collector_settings_restored_after(
    shard: int | None,
) -> None:
    """Inside the task's run, young passes start every RUN_LOOP_FIRST_THRESHOLD allocations and the
    setup is frozen, as around ``run``'s loop; after it, the process's settings are as they were."""
    before = (gc.get_threshold(), gc.get_freeze_count())
    runtime = cast(Runtime, _Runtime())
    if shard is None:
        seen: Any = account_run.run_account(runtime, "c", owner="o", should_stop=lambda: False)
    else:
        seen = account_run.run_account_shard(runtime, "c", shard, owner="o", should_stop=lambda: False)
    assert seen == (RUN_LOOP_FIRST_THRESHOLD, True)
    assert before[0][0] != RUN_LOOP_FIRST_THRESHOLD
    assert (gc.get_threshold(), gc.get_freeze_count()) == before
