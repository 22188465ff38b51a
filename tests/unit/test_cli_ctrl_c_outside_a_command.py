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

    def ctrl_c_as_the_first_line_is_written(error: BaseException, *args: Any, **kwargs: Any) -> int:
        reported.append(error)
        if len(reported) == 1:
            raise KeyboardInterrupt  # what the handler raises when the Ctrl-C lands in the write
        code: int = report(error, *args, **kwargs)
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
    raised = end_of_file.__code__.co_firstlineno + 1
    # Named by where it was raised, never by its message (``exit_codes.one_line``).
    assert lines == [
        "error: INTERNAL: unexpected EOFError in end_of_file"
        f" (test_cli_ctrl_c_outside_a_command.py:{raised}); rerun with --debug for the traceback"
    ]


@pytest.mark.parametrize("debug", [["--debug"], ["status", "--debug"]], ids=["before", "after"])
def test_an_end_of_file_outside_a_command_shows_its_traceback_under_debug(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], debug: list[str]
) -> None:
    """``--debug`` shows the traceback of every error, this one too: no command's state said
    ``--debug`` here, and the line came alone. The ``EOFError``'s own, then the line."""

    def end_of_file(args: list[str]) -> list[str]:
        raise EOFError  # a read that met a closed stdin as the command line was read

    monkeypatch.setattr(cli_main, "_hoist_global_options", end_of_file)
    monkeypatch.setenv("CRM_AUDIT_SETTINGS", "")
    args = (
        [*debug, "status", "--company-sso-id", "c"]
        if debug == ["--debug"]
        else [*debug, "--company-sso-id", "c"]
    )
    with pytest.raises(SystemExit) as ended:
        cli_main.cli.main(args=args, prog_name="crm-audit-migrate")
    assert ended.value.code == exit_codes.INTERNAL
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert lines[0] == "Traceback (most recent call last):"
    assert lines[-2] == "EOFError"
    assert lines[-1].startswith("error: INTERNAL: unexpected EOFError in end_of_file (")
    assert not any("Abort" in line for line in lines)  # the error's traceback, not click's catch of it


@pytest.mark.parametrize(
    ("args", "asked"),
    [
        (["--debug", "status"], True),
        (["status", "--company-sso-id", "c", "--debug"], True),
        (["--settings", "--debug", "status"], False),  # the settings file's name
        (["dry-run", "--", "--debug"], False),
        (["status"], False),
    ],
)
def test_debug_is_read_from_the_command_line_as_the_group_reads_it(args: list[str], asked: bool) -> None:
    """Where no command's state exists, ``--debug`` is found where the group would take it."""
    assert cli_main._debug_asked(args) is asked
