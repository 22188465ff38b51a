"""A command aborted at once by Ctrl-C says what running that command again does.

The line said "progress up to the last saved batch is kept: run again to resume" for every command,
though only ``run`` resumes: ``verify`` starts over (it changes nothing), ``rollback`` goes on
deleting. ``crm_audit_adapters.abort_lines`` holds each command's line; these run the real CLI with
a Ctrl-C where each command opens its servers.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator

import pytest

from crm_audit_adapters.abort_lines import AGAIN, ELSE, aborted, command_of
from crm_audit_adapters.cli import exit_codes
from crm_audit_adapters.cli.state import CliState

cli_main = importlib.import_module("crm_audit_adapters.cli.main")  # the package exports its main()


def _ctrl_c(self: CliState) -> Iterator[None]:
    raise KeyboardInterrupt  # what the handler raises when a Ctrl-C lands as the command connects


@pytest.mark.parametrize(
    ("args", "again"),
    [
        (["run", "--company-sso-id", "c"], "the last saved batch is kept: run again to resume"),
        (["verify", "--company-sso-id", "c"], "run it again to start over"),
        (["verify", "--company-sso-id", "c", "--repair"], "the logs it repaired stay"),
        (["rollback", "--company-sso-id", "c", "--yes"], "run rollback again to delete the rest"),
        (["--settings", "none.toml", "cancel", "--company-sso-id", "c"], ELSE),
    ],
    ids=["run", "verify", "verify-repair", "rollback", "cancel"],
)
def test_the_interrupted_line_says_what_running_that_command_again_does(
    args: list[str], again: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(CliState, "runtime", _ctrl_c)
    monkeypatch.setattr(CliState, "settings", None)  # read by rollback before its prompt: not needed here
    monkeypatch.setenv("CRM_AUDIT_SETTINGS", "")
    with pytest.raises(SystemExit) as ended:
        cli_main.cli.main(args=args, prog_name="crm-audit-migrate")
    assert ended.value.code == exit_codes.INTERRUPTED
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: INTERRUPTED: aborted at once by Ctrl-C; "), lines
    assert again in lines[0]
    if args[0] != "run":
        assert "resume" not in lines[0]


class TestAbortLines:
    def test_only_run_says_it_resumes(self) -> None:
        assert [name for name, line in AGAIN.items() if "resume" in line] == ["run"]
        assert "resume" not in ELSE

    def test_a_command_without_a_line_of_its_own_or_none_gets_the_general_one(self) -> None:
        assert aborted("trigger") == aborted(None) == f"aborted at once by Ctrl-C; {ELSE}"

    @pytest.mark.parametrize(
        ("args", "command"),
        [
            (["verify", "--company-sso-id", "c"], "verify"),
            (["--settings", "run.toml", "rollback"], "rollback"),
            (["--debug", "dry-run", "--example"], "dry-run"),
            (["--settings=x.toml", "status"], "status"),
            (["--debug"], None),
            (["--", "run"], None),
        ],
    )
    def test_the_command_is_read_from_the_command_line(self, args: list[str], command: str | None) -> None:
        assert command_of(args) == command
