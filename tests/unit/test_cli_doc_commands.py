"""The ``crm-audit-migrate`` lines of the docs' shell blocks name only commands and options that exist,
and docs/runner.md's rollback section gives each code the exit code the CLI ends with."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from crm_audit_adapters.cli import cli, exit_codes

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
RUNNER_DOC = ROOT / "docs" / "runner.md"
_BASH = re.compile(r"^```bash\n(.*?)^```", re.S | re.M)


def command_lines(path: Path) -> list[list[str]]:
    """Each ``crm-audit-migrate`` command of the file's bash blocks, as the shell splits it: comments
    dropped, lines continued, optional parts' brackets dropped; ``&&``, ``;`` and ``|`` (one option or
    the other) end a command."""
    found: list[list[str]] = []
    for block in _BASH.findall(path.read_text(encoding="utf-8")):
        for line in block.replace("\\\n", " ").splitlines():
            if "crm-audit-migrate" not in line:
                continue
            lexer = shlex.shlex(re.sub(r"[\[\]]", " ", line), posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            words: list[str] = []
            for token in [*lexer, ";"]:
                if token.strip("&|;"):
                    words.append(token)
                    continue
                if words[:1] == ["crm-audit-migrate"]:
                    found.append(words)
                words = []
    return found


def options_of(command: click.Command) -> set[str]:
    """Every spelling of each option, ``--no-…`` of a flag pair too."""
    return {
        name
        for param in command.params
        for name in [*getattr(param, "opts", []), *getattr(param, "secondary_opts", [])]
    }


@pytest.mark.parametrize("path", DOCS, ids=lambda path: path.name)
def test_each_documented_command_and_option_exists(path: Path) -> None:
    """A documented line naming a command or an option that is not there sends an operator to a usage
    error: each one's command is the CLI's, and each ``--option`` one its command (or the group) takes."""
    group_options = options_of(cli)
    for words in command_lines(path):
        args = [word for word in words[1:] if word not in group_options]
        if not args or args[0] in ("-h", "--help", "--version"):
            continue
        command = cli.commands.get(args[0])
        assert isinstance(command, click.Command), (path.name, words)
        options = options_of(command) | group_options
        for word in args[1:]:
            passed_on = command.context_settings.get("ignore_unknown_options", False)  # worker: Celery's
            if word.startswith("--") and not passed_on:
                assert word.split("=", 1)[0] in options, (path.name, words, word)
        if args[0] == "indexes":
            [action] = [word for word in args[1:] if not word.startswith("-")]
            assert action in ("up", "down", "status"), (path.name, words)


def test_the_runner_doc_shows_each_step_of_a_first_migration_and_of_a_rollback() -> None:
    """The walk-through runs indexes, trigger, run, status and verify; the rollback section rolls back."""
    text = RUNNER_DOC.read_text(encoding="utf-8")
    blocks = dict(re.findall(r"^<!-- commands: ([\w-]+) -->\n```bash\n(.*?)^```", text, re.S | re.M))
    first = [line.split()[1] for line in blocks["first-migration"].splitlines() if line.startswith("crm-")]
    assert first == ["indexes", "indexes", "trigger", "run", "status", "verify"]
    assert "rollback" in blocks["rollback"]


def _section(text: str, heading: str) -> str:
    start = text.index(f"\n{heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else len(text)]


def test_the_rollback_sections_exit_codes_are_the_clis() -> None:
    """Each row of the rollback section's table gives its code the exit code of ``exit_codes.CODES``."""
    section = _section(RUNNER_DOC.read_text(encoding="utf-8"), "## Rollback: undoing a migration")
    rows = re.findall(r"^\| `([A-Z_]+)` \| (\d+) \|", section, re.M)
    assert {code for code, _ in rows} >= {"JOB_ALREADY_RUNNING", "LEASE_HELD", "DECLINED", "INTERRUPTED"}
    for code, exit_code in rows:
        assert exit_codes.CODES[code] == int(exit_code), code
    for code, exit_code in re.findall(r"`([A-Z_]+)` \(exit (\d+)", section):
        assert exit_codes.CODES[code] == int(exit_code), code
