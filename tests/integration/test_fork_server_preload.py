"""What the fork server imports is all a runner's process imports on its way to its first page.

A module a shard process or a page pool's worker imports after the fork is imported again by each
of them (pymongo, httpx and what they bring: 319 modules, 0.2 s of CPU a process). An interpreter
imports the preload, as the fork server does, and forks a process for each check, as the server
forks a shard process or a worker: that process does what such a process does before its first
query (builds its runtime, its clients and ports, the run's modules, a worker's lookup copies), with
every server unreachable, and lists what that imported anew. A preload holding the one before it is
imported by the same interpreter, which imports only what it adds (``STAGES``: two interpreters,
where one per preload and role made five, about 2 s of CPU each).
"""

from __future__ import annotations

import functools
import itertools
import json
import subprocess
import sys
import textwrap
from collections.abc import Sequence

import pytest

from crm_audit_adapters.fork_server import RUN_PRELOAD, RUNNER_PORTS
from crm_audit_adapters.page_pool import pipeline, worker
from crm_audit_adapters.shard_processes import PRELOAD

OURS = (
    "crm_audit_adapters",
    "crm_audit_transform",
    "pymongo",
    "bson",
    "psycopg",
    "httpx",
    "httpcore",
    "tenacity",
)
"""Packages whose modules must all come from the preload (standard-library odds and ends may not)."""

BEFORE_FIRST_QUERY = textwrap.dedent(
    """
    import contextlib, importlib, json, os, sys, traceback


    def first_query(role):
        from crm_audit_adapters.mongo.retry import RetryPolicy
        from crm_audit_adapters.settings import Settings
        from crm_audit_adapters.usman_config import UsmanConfig

        settings = Settings(
            database_url="postgresql://nobody@127.0.0.1:1/none",
            mongo_uri="mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=1&connectTimeoutMS=1",
            usman=UsmanConfig(base_url="http://127.0.0.1:1", token="t"),
        )
        if role == "shard":  # its whole runtime, as SettingsShardRun builds it
            from crm_audit_adapters.bootstrap import build_runtime
            from crm_audit_adapters.collector import run_loop_collection
            from crm_audit_transform.usecases.shards import run_shard

            runtime = build_runtime(settings)
            for port in ("source", "users", "sso", "logs", "contacts", "jobs", "indexes", "service"):
                with contextlib.suppress(Exception):  # MongoDB is unreachable: its ports fail at the ping
                    getattr(runtime, port)
            runtime.sso.close()
            with run_loop_collection():
                pass
        else:  # a worker: the lookup ports' copies, each opening a client of its own
            from crm_audit_adapters.crm_postgres import PostgresUserDirectory, ReadOnlySession
            from crm_audit_adapters.usman import UsmanClient

            PostgresUserDirectory(ReadOnlySession.from_dsn(settings.database_url)).users_by_ids
            UsmanClient(settings.usman).close()
        from crm_audit_adapters.mongo import MongoContactDirectory
        from crm_audit_adapters.mongo.contacts import ContactsAt

        copy = MongoContactDirectory.__new__(MongoContactDirectory)
        copy.__setstate__((ContactsAt(settings.mongo_uri, "cdp", "contacts"), RetryPolicy(attempts=1)))
        with contextlib.suppress(Exception):
            copy.contacts_by_crm_ids("company", [1])  # a worker's copy opens its own client
        copy.close()
        RetryPolicy(attempts=1).attempts_of("postgres", retry_if=lambda error: False)  # a first query's


    for preload, roles in json.loads(sys.argv[1]):
        for name in preload:
            importlib.import_module(name)
        preloaded = set(sys.modules)
        for role in roles:
            sys.stdout.flush()
            pid = os.fork()  # as the fork server forks a shard process or a worker
            if pid == 0:
                try:
                    first_query(role)
                    after = sorted(set(sys.modules) - preloaded)
                    print(json.dumps([preload, role, sorted(preloaded), after]))
                    sys.stdout.flush()
                except BaseException:
                    traceback.print_exc()
                    os._exit(1)
                os._exit(0)
            if os.waitpid(pid, 0)[1]:
                sys.exit(f"the {role} check after {preload} failed")
    """
)

BEFORE_RUNNER_PORTS = (
    "crm_audit_adapters.bootstrap",
    "crm_audit_adapters.crm_postgres",
    "crm_audit_adapters.mongo",
)
"""The shard processes' preload before ``RUNNER_PORTS``, which left the drivers out."""
POOL = (worker.__name__, *pipeline.WRITER_ENCODERS, *worker.PORT_MODULES, *RUNNER_PORTS)
"""A runner's page pool's preload, when the pool starts its own server."""
STAGES: tuple[tuple[tuple[tuple[str, ...], tuple[str, ...]], ...], ...] = (
    ((BEFORE_RUNNER_PORTS, ("shard",)), (PRELOAD, ("shard",)), (RUN_PRELOAD, ("shard", "worker"))),
    ((POOL, ("worker",)),),
)
"""Each interpreter's preloads, in the order it imports them, and the roles checked after each."""


def holds(preload: Sequence[str], before: Sequence[str]) -> bool:
    """Whether importing ``preload`` imports each of ``before``: named, or the package of one named."""
    return all(any(name == b or name.startswith(f"{b}.") for name in preload) for b in before)


@functools.cache
def checked() -> dict[tuple[tuple[str, ...], str], tuple[frozenset[str], tuple[str, ...]]]:
    """For each preload and role of ``STAGES``: what the interpreter holds once it imported the
    preload, and what the process it forked imported after, on its way to its first query as that
    role (``BEFORE_FIRST_QUERY``). Each interpreter's preloads hold the ones before them, so that
    it holds what a fresh one importing that preload alone would."""
    runs = []
    for stages in STAGES:
        for (earlier, _), (later, _) in itertools.pairwise(stages):
            assert holds(later, earlier), (later, earlier)
        runs.append(
            subprocess.Popen(
                [sys.executable, "-c", BEFORE_FIRST_QUERY, json.dumps(stages)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    found = {}
    for run in runs:
        out, err = run.communicate(timeout=120)
        assert run.returncode == 0, err
        for line in out.splitlines():
            preload, role, preloaded, after = json.loads(line)
            found[(tuple(preload), role)] = (frozenset(preloaded), tuple(after))
    return found


def modules_of(preload: Sequence[str], role: str) -> tuple[frozenset[str], tuple[str, ...]]:
    """What the fork server holds once it imported ``preload`` (one of ``STAGES``), and what a
    process it forked imported after, on its way to its first query as ``role``."""
    return checked()[(tuple(preload), role)]


def imported_after(preload: Sequence[str], role: str) -> list[str]:
    """Our modules and our drivers' (``OURS``) that ``role`` imported after ``preload``."""
    return [name for name in modules_of(preload, role)[1] if name.split(".")[0] in OURS]


def test_a_shard_process_imports_nothing_of_ours_or_of_its_drivers_after_the_fork() -> None:
    assert imported_after(PRELOAD, "shard") == []


def test_a_runners_pool_worker_imports_nothing_of_ours_or_of_its_drivers_after_the_fork() -> None:
    assert imported_after(POOL, "worker") == []


def test_without_the_runner_ports_the_drivers_came_after_the_fork() -> None:
    """What the check catches: the preload before ``RUNNER_PORTS`` left pymongo and httpx out."""
    late = imported_after(BEFORE_RUNNER_PORTS, "shard")
    assert {"pymongo", "httpx", "tenacity"} <= {name.split(".")[0] for name in late}


def test_run_preload_holds_both_preloads_and_leaves_nothing_after_the_fork() -> None:
    """``run --workers`` starts the server before it knows whether it forks shards or workers."""
    assert set(PRELOAD) | set(POOL) <= set(RUN_PRELOAD)
    assert imported_after(RUN_PRELOAD, "shard") == []
    assert imported_after(RUN_PRELOAD, "worker") == []


NOT_A_RUNS = (
    "crm_audit_transform.usecases.verify",
    "crm_audit_transform.verification",
    "crm_audit_transform.testing",
    "crm_audit_adapters.bootstrap.dry_run",
    "crm_audit_adapters.bootstrap.http_app",
)
"""Modules no run process uses: verifying's, the dry run's in-memory stores, the HTTP app's wiring."""


def test_the_run_preload_leaves_out_what_no_run_process_uses() -> None:
    """The fork server imports ``RUN_PRELOAD`` while ``run --workers N`` starts, and the first shard
    waits for it: verifying's modules and the dry run's stores (~18 modules) are not in it. (What an
    interpreter holds once it imported the preload: the shard checks' interpreter, shared.)"""
    loaded, _ = modules_of(RUN_PRELOAD, "shard")
    assert sorted(loaded.intersection(NOT_A_RUNS)) == []


EARLY_START = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path
    from crm_audit_adapters.console import start_fork_server_for

    def fork_server_running():
        children = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read_text().split()
        return any(b"forkserver" in Path(f"/proc/{pid}/cmdline").read_bytes() for pid in children)

    started = start_fork_server_for(json.loads(sys.argv[1]))
    deadline = time.monotonic() + (30 if started else 0.5)  # a child's command line shows once it runs
    while not (running := fork_server_running()) and time.monotonic() < deadline:
        time.sleep(0.02)
    print(json.dumps({
        "started": started,
        "fork_server": running,
        "cli_loaded": "crm_audit_adapters.cli" in sys.modules,
        "drivers_loaded": "pymongo" in sys.modules,
        "multiprocessing_loaded": "multiprocessing" in sys.modules,
    }))
    """
)


@pytest.mark.parametrize(
    ("args", "started"),
    [
        (["run", "--company-sso-id", "c", "--workers", "2"], True),
        (["run", "--workers=3", "--company-sso-id", "c"], True),
        (["run", "--company-sso-id", "c", "--workers", "1"], False),
        (["run", "--company-sso-id", "c"], False),
        (["status", "--company-sso-id", "c", "--workers", "2"], False),
        (["run", "--workers", "two"], False),
        (["--settings", "s.toml", "run", "--workers", "2"], False),  # left to the launcher, as before
    ],
)
def test_the_console_starts_the_fork_server_for_run_with_workers_before_the_cli(
    args: list[str], started: bool
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", EARLY_START, json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {
        "started": started,
        "fork_server": started,
        "cli_loaded": False,
        "drivers_loaded": False,
        "multiprocessing_loaded": started,  # nothing imported for any other command
    }


FORKED_MODULES = textwrap.dedent(
    """
    import json, multiprocessing, sys
    from crm_audit_adapters.fork_server import RUN_PRELOAD, RUNNER_PORTS, ensure_fork_server
    from crm_audit_adapters.shard_processes import PRELOAD

    which = sys.argv[1]
    if which == "pool":  # the pool starts its own server when nothing started one first (runtime)
        from crm_audit_adapters.page_pool import ProcessPagePipeline, TransformerRecipe
        from crm_audit_transform.config import load_default_config

        ProcessPagePipeline(2, TransformerRecipe(load_default_config()), preload=RUNNER_PORTS).close()
    else:
        ensure_fork_server(RUN_PRELOAD if which == "run" else PRELOAD)
    with multiprocessing.get_context("forkserver").Pool(1) as pool:
        seen = pool.apply(eval, ("sorted(__import__('sys').modules)",))  # a process it forked
    print(json.dumps(seen))
    """
)
"""Prints the modules a process forked from the fork server has, the server started for ``argv[1]``."""

COMMAND_LINE_ONLY = ("click", "rich", "pygments", "httpx._main")
"""Modules ``import httpx`` brings only for httpx's command line (when installed)."""


@pytest.mark.parametrize("which", ["run", "shard", "pool"])
def test_a_forked_process_has_httpx_without_its_command_line(which: str) -> None:
    """Every fork server of ours imports httpx, and none imports its command line: click, rich and
    pygments came with it (81 modules, ~0.15 s a preload) before any worker could be forked."""
    done = subprocess.run(
        [sys.executable, "-c", FORKED_MODULES, which],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert "httpx" in seen
    cli = [name for name in seen if name in COMMAND_LINE_ONLY or name.split(".")[0] in COMMAND_LINE_ONLY]
    assert cli == []
