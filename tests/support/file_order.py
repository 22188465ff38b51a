"""The order the suite's test files are handed to pytest-xdist's workers: the longest first.

``scripts/check`` runs ``pytest -n N --dist loadfile --no-loadscope-reorder``: each worker takes a
whole test file at a time, in collection order. pytest-xdist's own reorder (its default) puts the
files with the most tests first, which left the long process-driving files, a few tests each, to
the end of the session, where one worker ran them while the others had nothing left. Handing the
longest files out first (longest processing time first) lets the many short files fill in around
them. ``LONGEST`` is measured, not derived: per-file seconds of one quiet full run on the 2-core
machine (README, "Tests and what is real in them"). tests/unit/test_file_order.py fails when a listed
file no longer exists (renamed or removed, it would drop out silently); a new long one merely runs in
its collection place until it is added. The order changes which worker runs a file
and when, never what a test does: every file still runs whole in one process.
"""

from __future__ import annotations

import pytest

__all__ = ["LONGEST", "pytest_collection_modifyitems"]

LONGEST: tuple[str, ...] = (
    # seconds a file took on one worker of the measured run (-n 2), descending; 11 s and over
    "tests/e2e/test_cli_processes.py",  # 78
    "tests/e2e/test_celery_workers.py",  # 52
    "tests/integration/test_files_audit_ranges.py",  # 28
    "tests/e2e/test_cli_shard_processes.py",  # 27
    "tests/unit/test_usecases_verify.py",  # 24
    "tests/integration/test_files_long_repeats.py",  # 21
    "tests/integration/test_files_shard_edge.py",  # 21
    "tests/integration/test_run_page_pool.py",  # 20
    "tests/web/test_routes.py",  # 19
    "tests/e2e/test_cli_double_ctrl_c.py",  # 19
    "tests/integration/test_run_fault_injection.py",  # 18
    "tests/integration/test_fork_server_preload.py",  # 17
    "tests/e2e/test_celery_shards.py",  # 16
    "tests/integration/test_files_resume_repeats.py",  # 16
    "tests/e2e/test_cli_errors.py",  # 15
    "tests/e2e/test_readme.py",  # 14
    "tests/e2e/test_cli_dry_run.py",  # 13
    "tests/e2e/test_cli_ops.py",  # 12
    "tests/integration/test_usman.py",  # 12
    "tests/property/test_transform_properties.py",  # 12
    "tests/web/test_api_fuzz.py",  # 12
    "tests/e2e/test_cli_broken_pipe.py",  # 12
    "tests/integration/test_crm_postgres_harness.py",  # 11
    "tests/integration/test_verify_postgres_mongo.py",  # 11
)
_RANK = {path: rank for rank, path in enumerate(LONGEST)}


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Move the files of ``LONGEST`` to the front, in its order; every other file keeps its place
    after them, and the tests of each file keep theirs (a stable sort on the file's rank)."""
    root = config.rootpath

    def rank(item: pytest.Item) -> int:
        try:
            path = item.path.relative_to(root).as_posix()
        except ValueError:  # a test outside the repository (pytest given another directory)
            return len(LONGEST)
        return _RANK.get(path, len(LONGEST))

    items.sort(key=rank)
