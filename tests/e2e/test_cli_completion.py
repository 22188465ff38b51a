"""Shell completion as docs/runner.md documents it: click's scripts, loaded into a real bash."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT_DIR = Path(sys.executable).parent
"""Where the venv put the ``crm-audit-migrate`` console script."""


def completion_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PATH": f"{SCRIPT_DIR}{os.pathsep}{os.environ.get('PATH', '')}", **extra}


@pytest.mark.parametrize(
    ("shell", "marker"),
    [
        ("bash", "complete -o nosort -F _crm_audit_migrate_completion crm-audit-migrate"),
        ("zsh", "#compdef crm-audit-migrate"),
        ("fish", "complete --no-files --command crm-audit-migrate"),
    ],
)
def test_each_shell_gets_a_completion_script(shell: str, marker: str) -> None:
    """``_CRM_AUDIT_MIGRATE_COMPLETE={shell}_source crm-audit-migrate`` prints that shell's script."""
    result = subprocess.run(
        ["crm-audit-migrate"],
        env=completion_env(_CRM_AUDIT_MIGRATE_COMPLETE=f"{shell}_source"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert marker in result.stdout


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ("crm-audit-migrate ro", ["rollback"]),
        ("crm-audit-migrate rollback --", ["--company-sso-id", "--yes", "--json", "--help"]),
        ("crm-audit-migrate indexes ", ["up", "down", "status"]),
    ],
)
def test_the_documented_bash_line_completes_commands_options_and_choices(
    words: str, expected: list[str]
) -> None:
    """The eval line of the docs, run in bash, makes the completion function offer the right words."""
    current = ' ""' if words.endswith(" ") else ""  # bash's word list ends with the empty word typed
    script = (
        'eval "$(_CRM_AUDIT_MIGRATE_COMPLETE=bash_source crm-audit-migrate)"\n'
        f"COMP_WORDS=({words}{current})\n"
        "COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))\n"
        "_crm_audit_migrate_completion crm-audit-migrate\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    result = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", script],
        env=completion_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == expected
