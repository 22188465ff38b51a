"""Every usage error is one line on stderr, ``error: USAGE: message (see '… --help')``, and its
``--json`` document's message that line's message, as docs/runner.md ("Errors and exit codes") says
of every failure, usage errors included.

Two were not: no command at all raised click's help text as the message (``error: USAGE: Usage: …``,
some thirty lines), and a choice argument left out (``indexes``) wrote ``Choose from:`` and a
tab-indented line per choice, in the line and the document alike.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from crm_audit_adapters.cli import cli, exit_codes


def run(args: list[str]) -> tuple[int, list[str], str]:
    result = CliRunner().invoke(cli, args, prog_name="crm-audit-migrate", env={"CRM_AUDIT_SETTINGS": ""})
    return result.exit_code, result.stderr.splitlines(), result.stdout


@pytest.mark.parametrize(
    "args", [[], ["--debug"], ["--settings", "x.toml"]], ids=["none", "debug", "settings"]
)
def test_no_command_is_one_usage_line(args: list[str]) -> None:
    """Fails on the old code with no words at all: the whole help after ``error: USAGE:``."""
    code, err, out = run(args)
    assert (code, err, out) == (
        exit_codes.USAGE,
        ["error: USAGE: Missing command. (see 'crm-audit-migrate --help')"],
        "",
    )


def test_a_missing_choice_is_one_line_in_the_line_and_the_document() -> None:
    """Fails on the old code: four lines in each."""
    code, err, out = run(["indexes", "--json"])
    message = "Missing argument '{up|down|status}'. Choose from: up, down, status"
    assert (code, err) == (
        exit_codes.USAGE,
        [f"error: USAGE: {message} (see 'crm-audit-migrate indexes --help')"],
    )
    assert json.loads(out)["error"] == {"code": "USAGE", "message": message, "exit_code": exit_codes.USAGE}


@pytest.mark.parametrize(
    "args",
    [
        ["indexes", "sideways", "--json"],
        ["status", "--json"],
        ["trigger", "--json"],
        ["verify", "--company-sso-id", "c", "--sample", "-1", "--json"],
        ["explain", "--company-sso-id", "c", "--audit-id", "x", "--json"],
        ["nosuch", "--json"],
    ],
)
def test_every_usage_error_is_one_line(args: list[str]) -> None:
    code, err, out = run(args)
    assert code == exit_codes.USAGE
    assert len(err) == 1, err
    assert err[0].startswith("error: USAGE: ")
    message = json.loads(out)["error"]["message"]
    assert "\n" not in message
    assert message in err[0]


def test_help_is_still_there_when_asked_for() -> None:
    code, err, out = run(["--help"])
    assert (code, err) == (exit_codes.OK, [])
    assert out.startswith("Usage: crm-audit-migrate [OPTIONS] COMMAND [ARGS]...")
