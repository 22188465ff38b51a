"""The walk-through in ``crm-audit-migrate --help`` names only commands and options that exist."""

from __future__ import annotations

import re

import click
from click.testing import CliRunner

from crm_audit_adapters.cli import cli


def _walkthrough() -> list[list[str]]:
    text = CliRunner().invoke(cli, ["--help"]).output
    lines = [line.strip() for line in text.splitlines() if line.strip().startswith("crm-audit-migrate ")]
    return [re.sub(r"\(.*?\)", "", line).split() for line in lines]


def test_each_command_and_option_of_the_walkthrough_exists() -> None:
    """A line naming an option its command does not take would send an operator to a usage error."""
    lines = _walkthrough()
    assert len(lines) >= 8
    for words in lines:
        command = cli.commands[words[1]]
        assert isinstance(command, click.Command)
        options = {name for param in command.params for name in getattr(param, "opts", [])}
        for word in words[2:]:
            if word.startswith("--"):
                assert word.strip("[]") in options, (words[1], word)


def test_trigger_is_shown_without_a_tenant() -> None:
    """A bound account's trigger takes its tenant from CRM_AUDIT_TENANTS; ``--tenant`` alone is refused
    for an unbound one (TENANT_UNBOUND), so the help no longer shows it as part of the line."""
    [trigger] = [words for words in _walkthrough() if words[1] == "trigger"]
    assert "--tenant" not in trigger
    assert "--company-sso-id" in trigger
