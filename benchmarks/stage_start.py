"""The fork server started first, as ``crm-audit-migrate run --workers N`` starts it: before the
process imports the package (``scale_stages.py`` and ``pool_timeline.py`` call this first thing).

The command starts its fork server (``console.start_fork_server_for``) before it loads its CLI, so
the server's preload overlaps the command's imports and set-up. The stages that start the server
first did so after their own imports (``scale_pipeline.early_fork_server``): their set-up was then
shorter than the preload, and the worker's fork waited 0.2–0.4 s for it inside the timed run
(benchmarks/RESULTS.md, issue 15 goal 2, the worker's start).
"""

from __future__ import annotations

EARLY_STAGES = ("end_to_end_shards", "end_to_end_shards_one")
"""Stages that start the fork server first, besides every ``end_to_end_workers_early*`` one."""


def starts_early(stage: str) -> bool:
    """Whether ``stage`` (a ``scale_stages`` name) starts the fork server first."""
    return stage.startswith("end_to_end_workers_early") or stage in EARLY_STAGES


def start_fork_server_for(stage: str) -> bool:
    """Start the fork server now for ``stage`` if it starts it first, with the command's own call;
    whether it did (False in a tree without that call: the stage starts the server itself)."""
    if not starts_early(stage):
        return False
    try:
        from crm_audit_adapters.console import start_fork_server_for as command_start
    except ImportError:
        return False
    return command_start(["run", "--workers", "2"])
