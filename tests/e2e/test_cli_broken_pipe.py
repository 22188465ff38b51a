"""A reader that closes stdout early (``… | head -1``) ends the command quietly, as Unix tools end; a
stdin or stdout closed from the start is what it is to them too."""

from __future__ import annotations

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
    """``rollback <&-``: the prompt gets no answer, DECLINED (exit 9) as with ``</dev/null``. Python
    raised ``RuntimeError: lost sys.stdin``, reported INTERNAL (exit 1)."""
    done = _with_closed("<", "rollback", "--company-sso-id", "acct", cwd=tmp_path)
    assert done.returncode == exit_codes.DECLINED, done.stderr
    assert "error: DECLINED: no answer to the confirmation" in done.stderr


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
    assert "Traceback" not in done.stderr
    assert "Exception ignored" not in done.stderr
