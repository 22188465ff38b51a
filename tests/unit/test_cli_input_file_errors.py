"""An input file that cannot be stat'ed for another reason than its absence is a usage error that
says why: click called a symlink loop, or a path through a file, "does not exist"."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from crm_audit_adapters.cli import cli, exit_codes

DRY_RUN = ["dry-run", "--company-sso-id", "c", "--tenant", "t", "--out", "-"]


def usage_line(args: list[str]) -> str:
    """The ``USAGE`` line for ``args`` (``dry-run`` has no ``--json``), after checking its exit code."""
    result = CliRunner().invoke(cli, args, env={"CRM_AUDIT_SETTINGS": ""})
    assert result.exit_code == exit_codes.USAGE, result.output
    assert result.stdout == ""
    (line,) = [line for line in result.stderr.splitlines() if line.strip()]
    assert line.startswith("error: USAGE: ")
    return line


@pytest.fixture
def loop(tmp_path: Path) -> Path:
    """Two symlinks naming each other."""
    (tmp_path / "a.jsonl").symlink_to(tmp_path / "b.jsonl")
    (tmp_path / "b.jsonl").symlink_to(tmp_path / "a.jsonl")
    return tmp_path / "a.jsonl"


@pytest.mark.parametrize("option", ["--audits", "--users", "--contacts", "--sso-directory", "--config"])
def test_a_symlink_loop_is_named_as_one(option: str, loop: Path) -> None:
    """Fails on the old code: "File '…' does not exist."."""
    line = usage_line([*DRY_RUN, option, str(loop)])
    assert f"{loop} is a symlink loop" in line
    assert "does not exist" not in line


def test_a_path_through_a_file_says_it_cannot_be_read(tmp_path: Path) -> None:
    """A file used as a directory is ``ENOTDIR``, not an absent file."""
    (tmp_path / "plain").write_text("")
    path = tmp_path / "plain" / "audits.jsonl"
    line = usage_line([*DRY_RUN, "--audits", str(path)])
    assert f"{path}: cannot read: Not a directory" in line
    assert "does not exist" not in line


def test_a_missing_file_still_does_not_exist(tmp_path: Path) -> None:
    """Absence keeps click's own wording."""
    path = tmp_path / "nope.jsonl"
    line = usage_line([*DRY_RUN, "--audits", str(path)])
    assert f"'{path}' does not exist" in line
