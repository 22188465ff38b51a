"""Ctrl-C Ctrl-C to ``dry-run --workers 2`` as a terminal sends it: exit 130, one line, no process left.

A terminal's Ctrl-C reaches the whole process group, and a double one sends two SIGINTs within
milliseconds. ``crm-audit-migrate`` runs here as the console script, in a session of its own, and
gets both at points told by what it has done (not by a clock): once it has opened its ``--audits``
file, once its page workers are alive, and once ``--out`` holds logs (a Ctrl-C while it loads is
tests/e2e/test_cli_startup_interrupt.py's). The runner is held still (SIGSTOP) while the point is
checked, and the first SIGINT is sent before it goes on: a point seen is the point it is at when
the Ctrl-C lands, not one it may have left. Before, some of those ended hung for ever after
printing ``error: INTERRUPTED`` (the interpreter's exit joined a page worker started but never
recorded by its pool), others by the signal itself (exit -2, not 130), or with a worker's traceback.
Each must end 130 with the documented line alone, and leave no process of its session behind;
so must a third Ctrl-C to a run whose fork server never answers (stopped).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import pytest
from processes import CLI, wait_for

from crm_audit_adapters.cli import exit_codes
from support.corpus_account import audit_docs, company_sso_id, contact_docs, dump_jsonl, sso_docs
from support.corpus_world import CORPUS

TENANT = "acme"
COPIES = 40
"""The tenant's 759 corpus rows repeated under new ids: ~30k rows, a dry run of a few seconds, so
that each point is seen while the run still reads (``mid_run``)."""
GAP_S = 0.05
"""Between the two SIGINTs: a quick Ctrl-C Ctrl-C at a terminal."""
BOUND_S = 90
"""How long a command may take to end after its Ctrl-C Ctrl-C (a bound, not a figure)."""
PROBE_S = 0.01
"""How often a probe stops the dry run to look for its point: every 10 ms, as it moves on quickly."""
ABORTED = "error: INTERRUPTED: aborted at once by Ctrl-C;"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    here = tmp_path_factory.mktemp("double-ctrl-c")
    docs = audit_docs(TENANT)
    stride = max(doc["id"] for doc in docs) + 1
    copies = [{**doc, "id": doc["id"] + copy * stride} for copy in range(COPIES) for doc in docs]
    (here / "audits.jsonl").write_text(dump_jsonl(copies), encoding="utf-8")
    (here / "contacts.jsonl").write_text(dump_jsonl(contact_docs(TENANT)), encoding="utf-8")
    (here / "sso.jsonl").write_text(dump_jsonl(sso_docs(TENANT)), encoding="utf-8")
    return [
        "dry-run",
        "--company-sso-id",
        company_sso_id(TENANT),
        "--tenant",
        TENANT,
        "--audits",
        str(here / "audits.jsonl"),
        "--users",
        str(CORPUS / "users.jsonl"),
        "--contacts",
        str(here / "contacts.jsonl"),
        "--sso-directory",
        str(here / "sso.jsonl"),
        "--workers",
        "2",
        "--no-progress",
    ]


def session_pids(session: int) -> list[int]:
    """The live processes of ``session`` (zombies are dead)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(stat[3]) == session and stat[0] not in ("Z", "X"):
            found.append(int(entry.name))
    return found


def end_session(session: int) -> None:
    """SIGKILL every process left in ``session`` and wait until none is: stopped ones too (SIGKILL
    ends a stopped process; SIGTERM or a closed pipe would wait for a SIGCONT), so a failed test
    leaves no runner, fork server or page worker behind, stopped and orphaned to init."""
    for pid in session_pids(session):
        with contextlib.suppress(ProcessLookupError):  # ended since it was listed
            os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not session_pids(session), timeout_s=BOUND_S, what="the session's processes to die")


def start_dry_run(
    inputs: list[str], out: Path, stderr: IO[str] | int = subprocess.PIPE
) -> subprocess.Popen[str]:
    """The dry run writing ``out``, in a session of its own (a terminal's process group), with no
    setting from this environment; its stderr piped, or to ``stderr``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_AUDIT_")}
    return subprocess.Popen(
        [CLI, *inputs, "--out", str(out)],
        env={**env, "CRM_AUDIT_SETTINGS": ""},
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        text=True,
        start_new_session=True,
    )


def double_ctrl_c(
    inputs: list[str], out: Path, ready: Callable[[subprocess.Popen[str]], bool], gap_s: float
) -> tuple[int, list[str]]:
    """Start the dry run, wait for ``ready``, send SIGINT twice ``gap_s`` apart to its process group;
    its exit code and stderr lines, once every process of its session has ended."""
    runner = start_dry_run(inputs, out)
    try:
        wait_for(
            lambda: held_at(runner, ready) or runner.poll() is not None,
            timeout_s=BOUND_S,
            what="the point",
            pause_max_s=PROBE_S,
        )
        assert runner.poll() is None, "the dry run ended before the point: no Ctrl-C was sent"
        os.killpg(runner.pid, signal.SIGINT)  # the runner's is pending: it handles it as it goes on
        os.kill(runner.pid, signal.SIGCONT)
        time.sleep(gap_s)
        os.killpg(runner.pid, signal.SIGINT)
        _, stderr = runner.communicate(timeout=BOUND_S)
        wait_for(lambda: not session_pids(runner.pid), timeout_s=BOUND_S, what="its processes to end")
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
        end_session(runner.pid)
    return runner.returncode, stderr.splitlines()


def held_at(runner: subprocess.Popen[str], ready: Callable[[subprocess.Popen[str]], bool]) -> bool:
    """Stop the runner (SIGSTOP) and look: true, and the runner left stopped, when it is at the
    point told by ``ready`` and still reads its ``--audits`` file (its last range not yet cut, so
    its command has not ended); else it goes on (SIGCONT) and false."""
    try:
        os.kill(runner.pid, signal.SIGSTOP)
    except ProcessLookupError:
        return False
    wait_for(lambda: stopped(runner.pid), timeout_s=BOUND_S, what="the runner to stop")
    if ready(runner) and reading(runner):
        return True
    os.kill(runner.pid, signal.SIGCONT)
    return False


def stopped(pid: int) -> bool:
    """The process is stopped (``T``), or gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("T", "Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return True


def reading(runner: subprocess.Popen[str]) -> bool:
    """The command runs: it has its ``--audits`` file open."""
    try:
        links = [os.readlink(fd) for fd in Path(f"/proc/{runner.pid}/fd").iterdir()]
    except OSError:  # it ended, or a descriptor closed while listed
        return False
    return any(link.endswith("audits.jsonl") for link in links)


def workers_alive(runner: subprocess.Popen[str]) -> bool:
    """The runner, the resource tracker, the fork server and a page worker (forked from it)."""
    return len(session_pids(runner.pid)) >= 4


class TestDoubleCtrlC:
    @pytest.mark.parametrize("point", ["reading", "workers_alive", "logs_written"])
    def test_ends_130_with_the_documented_line_and_no_process_left(
        self, tmp_path: Path, inputs: list[str], point: str
    ) -> None:
        out = tmp_path / "logs.jsonl"

        def logs_written(runner: subprocess.Popen[str]) -> bool:
            return out.exists() and out.stat().st_size > 0

        ready = {"reading": reading, "workers_alive": workers_alive, "logs_written": logs_written}[point]
        code, stderr = double_ctrl_c(inputs, out, ready, GAP_S)
        assert code == exit_codes.INTERRUPTED, stderr
        assert stderr, "no error line"
        assert stderr[-1].startswith(ABORTED), stderr
        # The documented line alone: no traceback, no warning, from the runner or a worker.
        assert [line for line in stderr if line.strip()] == [stderr[-1]]
        # What reached --out before it is whole: each line one log.
        for line in out.read_text(encoding="utf-8").splitlines() if out.exists() else ():
            assert json.loads(line)["company_sso_id"] == company_sso_id(TENANT)


def page_workers(runner: subprocess.Popen[str]) -> list[int]:
    """The page workers: the processes of the runner's session whose parent is the fork server."""
    parents = {pid: parent_of(pid) for pid in session_pids(runner.pid)}
    servers = {pid for pid, parent in parents.items() if parent == runner.pid and is_fork_server(pid)}
    return [pid for pid, parent in parents.items() if parent in servers]


def parent_of(pid: int) -> int | None:
    """``pid``'s parent, None once it has gone."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None


FORK_SERVER_MAIN = b"from multiprocessing.forkserver import main"
"""What the fork server's command line runs (``python -c``): multiprocessing's own start of it."""


def runs_fork_server_main(pid: int) -> bool:
    try:
        return FORK_SERVER_MAIN in Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return False


def is_fork_server(pid: int) -> bool:
    """Whether ``pid`` is a fork server: its command line runs the server's main, and its parent's
    does not. A page worker is forked from the server without an exec, so it has the server's
    command line: the command line alone (once ``b"forkserver" in cmdline``) took it for one."""
    parent = parent_of(pid)
    return runs_fork_server_main(pid) and parent is not None and not runs_fork_server_main(parent)


class TestStoppedWorker:
    def test_ctrl_c_twice_ends_130_though_a_page_worker_never_answers(
        self, tmp_path: Path, inputs: list[str]
    ) -> None:
        """A page worker stopped (SIGSTOP) mid-run: the first Ctrl-C waits for its batch, the second
        ends the command at once, 130 and the one line; the worker is ended, none is left. Before,
        the second Ctrl-C waited for the stopped worker for ever (the pool's close joined it)."""
        out = tmp_path / "logs.jsonl"
        runner = start_dry_run(inputs, out)
        try:
            wait_for(
                lambda: held_at(runner, lambda r: bool(page_workers(r))) or runner.poll() is not None,
                timeout_s=BOUND_S,
                what="page workers",
                pause_max_s=PROBE_S,
            )
            held = page_workers(runner)
            assert held, "the dry run ended before its page workers could be seen"
            for pid in held:
                os.kill(pid, signal.SIGSTOP)
            os.killpg(runner.pid, signal.SIGINT)
            os.kill(runner.pid, signal.SIGCONT)
            time.sleep(1.0)  # the first Ctrl-C: the run waits for the batch the stopped worker holds
            os.killpg(runner.pid, signal.SIGINT)
            _, stderr = runner.communicate(timeout=BOUND_S)
            wait_for(lambda: not session_pids(runner.pid), timeout_s=BOUND_S, what="its processes to end")
        finally:
            if runner.poll() is None:
                runner.kill()
                runner.wait()
            end_session(runner.pid)
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert runner.returncode == exit_codes.INTERRUPTED, lines
        assert lines, "no error line"
        assert lines[-1].startswith(ABORTED), lines
        assert [line for line in lines if "Traceback" in line] == []


class TestFrozenForkServer:
    def test_a_third_ctrl_c_ends_a_run_whose_fork_server_never_answers(
        self, tmp_path: Path, inputs: list[str]
    ) -> None:
        """The fork server stopped (SIGSTOP) before it forked a page worker: the runner waits on it
        for ever as it starts its workers, where it holds Ctrl-C (``fork_server.sigint_deferred``).
        A third Ctrl-C ends it, 130 and the one line. Before, every Ctrl-C was held for ever."""
        for attempt in range(3):  # the server forked a worker before it was seen: not this case
            ended = three_ctrl_c_to_a_frozen_server(tmp_path / f"attempt-{attempt}", inputs)
            if ended is not None:
                break
        assert ended is not None, "three times the fork server had forked before it could be stopped"
        code, lines = ended
        assert code == exit_codes.INTERRUPTED, lines
        assert lines, "no error line"
        assert lines[-1].startswith(ABORTED), lines
        assert lines == [lines[-1]]


def three_ctrl_c_to_a_frozen_server(here: Path, inputs: list[str]) -> tuple[int, list[str]] | None:
    """The dry run, its fork server stopped as soon as it is seen, then three Ctrl-Cs: its exit code
    and stderr lines once it has ended, and then the server (killed: let go, it would fork what the
    runner had asked for, a process whose start-up is gone); None when the server had forked a page
    worker already. stderr goes to a file: the stopped server holds it open, a pipe would not end."""
    here.mkdir()
    with (here / "stderr.txt").open("w", encoding="utf-8") as stderr:
        runner = start_dry_run(inputs, here / "logs.jsonl", stderr)
    servers: list[int] = []
    lines: list[str] | None = None
    try:
        wait_for(
            lambda: stop_fork_server(runner, servers) or runner.poll() is not None,
            timeout_s=BOUND_S,
            what="the fork server",
            pause_max_s=PROBE_S,
        )
        assert servers, "the dry run ended before its fork server could be seen"
        if page_workers(runner):
            return None
        for _ in range(3):
            os.killpg(runner.pid, signal.SIGINT)
            time.sleep(GAP_S)
        runner.wait(timeout=BOUND_S)
        lines = (here / "stderr.txt").read_text(encoding="utf-8").splitlines()
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
        for pid in servers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if lines is None:  # not this case, or failed: nothing of the run outlives the test
            end_session(runner.pid)
    try:
        wait_for(lambda: not session_pids(runner.pid), timeout_s=BOUND_S, what="its processes to end")
    finally:
        end_session(runner.pid)
    return runner.returncode, [line for line in lines if line.strip()]


def stop_fork_server(runner: subprocess.Popen[str], stopped: list[int]) -> bool:
    """Stop (SIGSTOP) the runner's fork server if it runs, and add it to ``stopped``; whether it did."""
    for pid in session_pids(runner.pid):
        if is_fork_server(pid):
            os.kill(pid, signal.SIGSTOP)
            stopped.append(pid)
            return True
    return False


class TestForkServerSeen:
    def test_a_process_forked_from_the_fork_server_is_not_taken_for_it(self) -> None:
        """Of a fork server and a process it forked, which share one command line, only the server
        is a fork server to these tests (``stop_fork_server`` stopped a page worker instead)."""
        start = (
            "import multiprocessing, time\n"
            "child = multiprocessing.get_context('forkserver').Process(target=time.sleep, args=(60,))\n"
            "child.start()\n"
            "print(child.pid, flush=True)\n"
            "time.sleep(60)\n"
        )
        with subprocess.Popen(
            [sys.executable, "-c", start], stdout=subprocess.PIPE, text=True, start_new_session=True
        ) as owner:
            try:
                assert owner.stdout is not None
                child = int(owner.stdout.readline())
                server = parent_of(child)
                assert server is not None
                assert runs_fork_server_main(child)  # the shared command line
                assert (is_fork_server(server), is_fork_server(child)) == (True, False)
            finally:
                end_session(owner.pid)
