"""A Ctrl-C that lands where no command handles it ends ``INTERRUPTED`` (exit 130), never ``DECLINED``;
an end of file there is the error it is.

click catches a ``KeyboardInterrupt`` that leaves a command's invocation and raises ``Abort`` from
it; a prompt that reads Ctrl-C or EOF raises ``Abort`` from nothing. ``_Group.main`` took every
``Abort`` for an unanswered prompt: a Ctrl-C as a command reported its error (inside
``_Group.invoke``'s handler, where the sibling ``except KeyboardInterrupt`` is not reached) ended
``DECLINED: no answer to the confirmation; nothing was changed``, exit 9, and the error was lost.
A prompt's own ``Abort`` still ends ``DECLINED`` (tests/e2e/test_cli_errors.py's "declined" rows).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest

from crm_audit_adapters.abort_lines import aborted
from crm_audit_adapters.cli import exit_codes

cli_main = importlib.import_module("crm_audit_adapters.cli.main")  # the package exports its main()


def test_a_ctrl_c_while_an_error_is_reported_ends_interrupted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "audits.jsonl"
    bad.write_text("not json\n", encoding="utf-8")
    reported: list[BaseException] = []
    report = cli_main._report

    def ctrl_c_as_the_first_line_is_written(error: BaseException, *args: Any) -> int:
        reported.append(error)
        if len(reported) == 1:
            raise KeyboardInterrupt  # what the handler raises when the Ctrl-C lands in the write
        code: int = report(error, *args)
        return code

    monkeypatch.setattr(cli_main, "_report", ctrl_c_as_the_first_line_is_written)
    monkeypatch.setenv("CRM_AUDIT_SETTINGS", "")
    files = ("--users", str(bad), "--contacts", str(bad), "--sso-directory", str(bad))
    args = ["dry-run", "--company-sso-id", "c", "--tenant", "t", "--audits", str(bad), *files]
    with pytest.raises(SystemExit) as ended:
        cli_main.cli.main(args=args, prog_name="crm-audit-migrate")
    assert ended.value.code == exit_codes.INTERRUPTED
    assert exit_codes.error_code(reported[0]) == "BAD_INPUT"  # the error being reported
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert lines == [f"error: INTERRUPTED: {aborted('dry-run')}"]


def test_an_end_of_file_outside_a_prompt_is_the_error_it_is_not_declined(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """click turns an ``EOFError`` that leaves a command's handling into ``Abort() from`` it, as it
    does a Ctrl-C. ``_Group.main`` took it for an unanswered prompt: ``DECLINED``, exit 9, though no
    question was asked. It ends as the same error inside a command does: ``INTERNAL``, exit 1."""

    def end_of_file(args: list[str]) -> list[str]:
        raise EOFError  # a read that met a closed stdin as the command line was read

    monkeypatch.setattr(cli_main, "_hoist_global_options", end_of_file)
    monkeypatch.setenv("CRM_AUDIT_SETTINGS", "")
    with pytest.raises(SystemExit) as ended:
        cli_main.cli.main(args=["status", "--company-sso-id", "c"], prog_name="crm-audit-migrate")
    assert ended.value.code == exit_codes.INTERNAL
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert lines == ["error: INTERNAL: EOFError"]
