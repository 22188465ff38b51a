"""A reader that closes stdout early (``… | head -1``) ends the command quietly, as Unix tools end; a
stdin or stdout closed from the start is what it is to them too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from crm_audit_adapters.cli import exit_codes
from crm_audit_adapters.cli.main import BROKEN_PIPE

CLI = Path(sys.executable).with_name("crm-audit-migrate")


def test_dry_run_into_a_closed_pipe_stops_without_an_error(tmp_path: Path) -> None:
    """dry-run --out - whose reader took one line and left: no error line, exit 141 (SIGPIPE's)."""
    with subprocess.Popen(
        [str(CLI), "dry-run", "--example", "--out", "-"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as process:
        assert process.stdout is not None
        assert process.stderr is not None
        first = process.stdout.readline()
        # The example writes far more than a pipe buffer holds, so the writer meets the closed pipe.
        process.stdout.close()
        stderr = process.stderr.read().decode()
        code = process.wait(timeout=120)
    assert first.startswith(b'{"company_sso_id"')
    assert "error:" not in stderr
    assert "Traceback" not in stderr
    assert "Exception ignored" not in stderr
    assert code == BROKEN_PIPE == 141


@pytest.mark.parametrize("args", [("--help",), ("--version",), ("status", "--help")])
def test_help_and_version_into_a_closed_pipe_stop_without_an_error(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    """``--help | head -0``: the rule of every other output, exit 141 and no word. The group's own
    ``--help`` and ``--version`` ended exit 1 (click's catch of a broken pipe)."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader has gone before the first byte is written
    try:
        done = subprocess.run(
            [str(CLI), *args],
            cwd=tmp_path,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (BROKEN_PIPE, "")


def _with_closed(stream: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The script run with its stdin (``<&-``) or stdout (``>&-``) closed, as a shell does it."""
    env = {"PATH": "/usr/bin:/bin", "CRM_AUDIT_SETTINGS": "", "CRM_AUDIT_MONGO_URI": "mongomock://"}
    return subprocess.run(
        ["bash", "-c", f'exec "$0" "$@" {stream}&-', str(CLI), *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL if stream == "<" else None,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL if stream == ">" else None,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_prompt_on_a_closed_stdin_is_no_answer(tmp_path: Path) -> None:
    """``rollback <&-``: no terminal to ask, DECLINED (exit 9) as with ``</dev/null``, nothing asked.
    Python raised ``RuntimeError: lost sys.stdin``, reported INTERNAL (exit 1)."""
    done = _with_closed("<", "rollback", "--company-sso-id", "acct", cwd=tmp_path)
    assert done.returncode == exit_codes.DECLINED, done.stderr
    assert "error: DECLINED: rollback asks for confirmation and stdin is not a terminal" in done.stderr
    assert "Delete every" not in done.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("config",),
        ("config", "--json"),
        ("--help",),
        ("dry-run", "--example", "--out", "logs.jsonl", "--no-progress"),  # its report goes to stdout
        ("dry-run", "--example", "--out", "-", "--report", "report.json", "--no-progress"),
    ],
)
def test_a_closed_stdout_is_a_file_error(tmp_path: Path, args: tuple[str, ...]) -> None:
    """``>&-``: what the command writes to stdout cannot be written, FILE_ERROR (exit 7), as any Unix
    tool fails. click dropped every line written to a missing stdout: the document, the help or the
    dry run's report were lost with exit 0 (``--out -`` ended INTERNAL)."""
    done = _with_closed(">", *args, cwd=tmp_path)
    assert done.returncode == exit_codes.BAD_INPUT, done.stderr
    assert "error: FILE_ERROR: " in done.stderr
    # The line says what could not be written: stdout (it said "[Errno 9] Bad file descriptor").
    assert "stdout" in done.stderr.partition("error: FILE_ERROR: ")[2], done.stderr
    assert "Traceback" not in done.stderr
    assert "Exception ignored" not in done.stderr


def _into(
    stdout: int | None,
    stderr: int | None,
    *args: str,
    cwd: Path,
    buffered: bool,
    stdin: int = subprocess.DEVNULL,
) -> subprocess.CompletedProcess[str]:
    """The script with stdout and stderr on the given descriptors (None: a pipe read back here), and
    Python's standard streams buffered (its default) or not (``PYTHONUNBUFFERED``); ``stdin``
    ``/dev/null`` unless given."""
    env = {"PATH": "/usr/bin:/bin", "CRM_AUDIT_SETTINGS": "", "CRM_AUDIT_MONGO_URI": "mongomock://"}
    if not buffered:
        env["PYTHONUNBUFFERED"] = "1"
    return subprocess.run(
        [str(CLI), *args],
        cwd=cwd,
        env=env,
        stdin=stdin,
        stdout=subprocess.PIPE if stdout is None else stdout,
        stderr=subprocess.PIPE if stderr is None else stderr,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("buffered", [True, False], ids=["buffered", "unbuffered"])
@pytest.mark.parametrize("args", [("--version",), ("--help",), ("config", "--json")])
def test_a_full_stdout_is_a_file_error_naming_stdout(
    tmp_path: Path, args: tuple[str, ...], buffered: bool
) -> None:
    """``>/dev/full``: FILE_ERROR (exit 7) saying stdout could not be written, whatever Python's
    buffering. It said ``[Errno 28] No space left on device``, naming nothing; and buffered (Python's
    default, without ``PYTHONUNBUFFERED``) the exit's flush failed again: ``Exception ignored`` and
    exit 120."""
    with open("/dev/full", "w") as full:
        done = _into(full.fileno(), None, *args, cwd=tmp_path, buffered=buffered)
    assert (done.returncode, done.stderr) == (
        exit_codes.BAD_INPUT,
        "error: FILE_ERROR: cannot write to stdout: No space left on device\n",
    )


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("buffered", [True, False], ids=["buffered", "unbuffered"])
def test_a_full_stderr_is_a_file_error_naming_stderr(tmp_path: Path, buffered: bool) -> None:
    """``rollback --json 2>/dev/full`` at a terminal: its prompt cannot be shown, so nothing is deleted
    and the error document on stdout says stderr could not be written, exit 7. The error line's own
    write to stderr failed in turn and ended the command with a traceback nobody saw, exit 1."""
    leader, terminal = os.openpty()  # stdin a terminal: the prompt is asked (without one, DECLINED)
    os.write(leader, b"\x04")  # and answered with an end of file (Ctrl-D), as /dev/null answered it
    try:
        with open("/dev/full", "w") as full:
            done = _into(
                None,
                full.fileno(),
                "rollback",
                "--company-sso-id",
                "acct",
                "--json",
                cwd=tmp_path,
                buffered=buffered,
                stdin=terminal,
            )
    finally:
        os.close(terminal)
        os.close(leader)
    assert done.returncode == exit_codes.BAD_INPUT, done.stdout
    assert json.loads(done.stdout)["error"] == {
        "code": "FILE_ERROR",
        "message": "cannot write to stderr: No space left on device",
        "exit_code": exit_codes.BAD_INPUT,
    }


def test_a_dry_run_with_a_closed_stderr_is_a_file_error(tmp_path: Path) -> None:
    """``dry-run --example 2>&-``: its progress line cannot be written, FILE_ERROR (exit 7) as for a
    closed stdout. It ended INTERNAL (exit 1): the progress line was given Python's ``None``."""
    done = subprocess.run(
        ["bash", "-c", 'exec "$0" "$@" 2>&-', str(CLI), "dry-run", "--example", "--out", "logs.jsonl"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "CRM_AUDIT_SETTINGS": ""},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        timeout=120,
        check=False,
    )
    assert done.returncode == exit_codes.BAD_INPUT
