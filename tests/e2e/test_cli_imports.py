"""``crm-audit-migrate`` loads a driver only in the commands that use it.

Every command is a process of its own, and a driver's import costs about 0.1 s of CPU each
(pymongo, psycopg, httpx; Celery and Starlette more): a dry run needs none, ``status`` no HTTP
client. Each case runs in a fresh interpreter and lists the drivers it has loaded at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

DRIVERS = ("celery", "httpx", "mongomock", "psycopg", "pymongo", "starlette", "uvicorn")

# What a dry run on one process never uses: the process pool (--workers), the retry library of the
# adapters that reach a server, and the OpenSSL that ``secrets`` loads (verify's sample seed).
UNUSED_BY_A_DRY_RUN = (
    "crm_audit_adapters.page_pool",
    "multiprocessing",
    "concurrent.futures.process",
    "tenacity",
    "secrets",
    "_hashlib",
)

SCRIPT = """
import json, sys
from crm_audit_adapters.cli import cli
code = cli.main(sys.argv[1:], prog_name="crm-audit-migrate", standalone_mode=False)
print(json.dumps([name for name in {drivers!r} if name in sys.modules]))
"""


def drivers_loaded(tmp_path: Path, *args: str, drivers: tuple[str, ...] = DRIVERS) -> list[str]:
    """The ``drivers`` (modules) a fresh ``crm-audit-migrate ARGS`` process has imported when the
    command returns."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_AUDIT_")}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(drivers=drivers), *args],
        cwd=tmp_path,
        env={**env, "CRM_AUDIT_SETTINGS": ""},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    loaded: list[str] = json.loads(done.stdout.splitlines()[-1])
    return loaded


class TestDriversLoadedByCommand:
    @pytest.mark.parametrize(
        "args",
        [
            pytest.param(("--version",), id="the group alone"),
            pytest.param(("--help",), id="--help"),
            pytest.param(("config",), id="config"),
        ],
    )
    def test_a_command_that_reaches_no_server_loads_no_driver(
        self, tmp_path: Path, args: tuple[str, ...]
    ) -> None:
        """Neither pymongo, psycopg nor httpx (nor Celery, Starlette) for commands that use none."""
        assert drivers_loaded(tmp_path, *args) == []

    @pytest.mark.parametrize("workers", ["1", "2"])
    def test_a_dry_run_loads_no_driver(self, tmp_path: Path, workers: str) -> None:
        """No pymongo, psycopg or httpx: the documents and the contacts file's Extended JSON go through
        the mongo adapter's codecs, which need only ``bson`` (the package loads its stores lazily)."""
        args = ("dry-run", "--example", "--no-progress", "--out", "logs.jsonl", "--workers", workers)
        assert drivers_loaded(tmp_path, *args) == []

    def test_a_dry_run_on_one_process_loads_no_pool_and_no_retries(self, tmp_path: Path) -> None:
        """A dry run's start-up is part of its time (about 7 % of 100,000 rows): without ``--workers``
        it imports neither the process pool nor what only the server adapters and ``verify`` use."""
        args = ("dry-run", "--example", "--no-progress", "--out", "logs.jsonl")
        assert drivers_loaded(tmp_path, *args, drivers=UNUSED_BY_A_DRY_RUN) == []
