"""A Ctrl-C that lands as click reads the command line, or closes the command's context, prints the
``INTERRUPTED`` error document under ``--json``, as every other exit under ``--json`` does (exit 130).

Before, the group's ``main`` reported such a Ctrl-C with the error line alone: no context was left to
say ``--json`` was asked for, and none had read it yet when the Ctrl-C came before the command's
options were read. A document the command already printed is not followed by a second.
"""

from __future__ import annotations

import importlib
import json
from typing import Any

import click
import pytest

from crm_audit_adapters.abort_lines import aborted
from crm_audit_adapters.cli import exit_codes
from crm_audit_adapters.cli.options import JSON_SCHEMA_VERSION

cli_main = importlib.import_module("crm_audit_adapters.cli.main")  # the package exports its main()
STATUS = ["status", "--company-sso-id", "c"]


def ended(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str], str]:
    """Run the CLI on ``args``: its exit code, its stderr's lines and its stdout."""
    with pytest.raises(SystemExit) as exit_:
        cli_main.cli.main(args=args, prog_name="crm-audit-migrate")
    out, err = capsys.readouterr()
    code = exit_.value.code
    assert isinstance(code, int)
    return code, [line for line in err.splitlines() if line.strip()], out


def interrupted_document(command: str) -> dict[str, Any]:
    return {
        "command": command,
        "schema": JSON_SCHEMA_VERSION,
        "error": {"code": "INTERRUPTED", "message": aborted(command), "exit_code": exit_codes.INTERRUPTED},
    }


def ctrl_c(*_: Any, **__: Any) -> Any:
    raise KeyboardInterrupt


@pytest.fixture(autouse=True)
def no_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_AUDIT_SETTINGS", "")


@pytest.mark.parametrize(
    "args",
    [[*STATUS, "--json"], ["--json", *STATUS], ["--debug", *STATUS, "--json"]],
    ids=["after", "before-the-command", "debug"],
)
def test_a_ctrl_c_as_the_group_reads_the_command_line_prints_the_document(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    """Fails on the old code: the error line alone, stdout empty."""
    monkeypatch.setattr(cli_main, "_hoist_global_options", ctrl_c)
    code, err, out = ended(args, capsys)
    assert code == exit_codes.INTERRUPTED == 130
    assert err[-1] == f"error: INTERRUPTED: {aborted('status')}"
    assert json.loads(out) == interrupted_document("status")


def test_a_ctrl_c_before_the_commands_options_are_read_prints_the_document(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command's context exists, its ``--json`` unread. Fails on the old code (no document)."""
    monkeypatch.setattr(cli_main, "read_ahead", ctrl_c)
    code, err, out = ended([*STATUS, "--json"], capsys)
    assert (code, err) == (exit_codes.INTERRUPTED, [f"error: INTERRUPTED: {aborted('status')}"])
    assert json.loads(out) == interrupted_document("status")


def test_a_ctrl_c_as_the_context_closes_after_the_document_prints_no_second(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``config --json`` printed its document; the Ctrl-C as click closes its context ends 130 with
    the line, and stdout holds that one document."""
    close = click.Context._close_with_exception_info  # what leaving ``with ctx:`` calls

    def ctrl_c_once(self: click.Context, *exc_info: Any) -> bool | None:
        closed: bool | None = close(self, *exc_info)
        if self.parent is None:
            raise KeyboardInterrupt
        return closed

    monkeypatch.setattr(click.Context, "_close_with_exception_info", ctrl_c_once)
    code, err, out = ended(["config", "--json"], capsys)
    assert (code, err) == (exit_codes.INTERRUPTED, [f"error: INTERRUPTED: {aborted('config')}"])
    assert json.loads(out)["command"] == "config"
    assert "error" not in json.loads(out)


def test_without_json_a_ctrl_c_prints_no_document(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli_main, "_hoist_global_options", ctrl_c)
    code, err, out = ended([*STATUS, "--", "--json"], capsys)
    assert (code, err, out) == (exit_codes.INTERRUPTED, [f"error: INTERRUPTED: {aborted('status')}"], "")


def test_each_invocation_reads_its_own_command_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A second invocation in the process (a test, a service embedding the CLI) is not read as the
    first: its Ctrl-C prints no document for the first's ``--json``."""
    assert ended(["config", "--json"], capsys)[0] == exit_codes.OK
    monkeypatch.setattr(cli_main, "_hoist_global_options", ctrl_c)
    code, _, out = ended(STATUS, capsys)
    assert (code, out) == (exit_codes.INTERRUPTED, "")


def test_a_ctrl_c_as_a_usage_error_is_reported_prints_the_interrupted_document(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The Ctrl-C lands in the group's report of a usage error (no account named), after
    click's catch: it left the entry point as a ``KeyboardInterrupt`` (the console script's line
    alone). Now the entry point reports it as any other: the line, the document, exit 130."""
    to_stderr = cli_main._to_stderr
    calls: list[str] = []

    def ctrl_c_at_the_first_line(text: str, **kwargs: Any) -> None:
        calls.append(text)
        if len(calls) == 1:
            raise KeyboardInterrupt
        to_stderr(text, **kwargs)

    monkeypatch.setattr(cli_main, "_to_stderr", ctrl_c_at_the_first_line)
    monkeypatch.setattr("sys.argv", ["crm-audit-migrate", "status", "--json"])
    with pytest.raises(SystemExit) as exit_:
        cli_main.main()
    out, err = capsys.readouterr()
    assert exit_.value.code == exit_codes.INTERRUPTED
    assert calls[0].startswith("error: USAGE: ")
    assert err.splitlines()[-1] == f"error: INTERRUPTED: {aborted('status')}"
    assert json.loads(out) == interrupted_document("status")
