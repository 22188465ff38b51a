"""``python -m crm_audit_adapters`` (and ``python -m crm_audit_adapters.console``) is the console
script where none is on ``PATH``: the same commands, exit codes and Ctrl-C handling, its help naming
it as typed. The first was refused (no ``__main__``); the second exited 0 doing nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_cli_startup_interrupt import CTRL_C_AT_IMPORT

from crm_audit_adapters import SCRIPT, module_run
from crm_audit_adapters.cli import exit_codes

FORMS = ["crm_audit_adapters", "crm_audit_adapters.console"]
CLI = Path(sys.executable).with_name(SCRIPT)


def module_form(
    module: str, *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m MODULE ARGS``, with no settings file and the script's directory off ``PATH``."""
    environment = {**os.environ, "CRM_AUDIT_SETTINGS": "", "PATH": "/usr/bin:/bin", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


@pytest.mark.parametrize("module", FORMS)
class TestTheModuleForm:
    def test_help_names_the_program_as_typed(self, tmp_path: Path, module: str) -> None:
        """``--help``: the group's help, its usage line ``python -m MODULE``, exit 0."""
        done = module_form(module, "--help", cwd=tmp_path)
        assert (done.returncode, done.stderr) == (exit_codes.OK, "")
        assert done.stdout.startswith(f"Usage: python -m {module} [OPTIONS] COMMAND [ARGS]...")
        assert "rollback" in done.stdout

    def test_a_usage_error_is_the_scripts_code_and_points_at_the_module_form(
        self, tmp_path: Path, module: str
    ) -> None:
        """A missing option: ``USAGE``, exit 2, the hint naming the command as the operator can run it."""
        done = module_form(module, "status", cwd=tmp_path)
        assert done.returncode == exit_codes.USAGE
        assert done.stderr.rstrip().endswith(f"(see 'python -m {module} status --help')")

    def test_a_dry_run_with_workers_writes_what_the_script_writes(self, tmp_path: Path, module: str) -> None:
        """The worker processes (the fork server imports ``__main__`` again, as ``__mp_main__``) do
        not run the CLI in turn: the same logs as the installed script, exit 0."""
        args = ("dry-run", "--example", "--workers", "2", "--no-progress", "--out")
        done = module_form(module, *args, "module.jsonl", cwd=tmp_path)
        assert done.returncode == exit_codes.OK, done.stderr
        script = subprocess.run(
            [str(CLI), *args, "script.jsonl"],
            cwd=tmp_path,
            env={**os.environ, "CRM_AUDIT_SETTINGS": ""},
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert script.returncode == exit_codes.OK, script.stderr
        written = (tmp_path / "module.jsonl").read_bytes()
        assert written.count(b"\n") > 0
        assert written == (tmp_path / "script.jsonl").read_bytes()

    @pytest.mark.parametrize(
        "at",
        [
            "crm_audit_adapters.console",  # ``__main__``'s import of it, once the package's first line ran
            "signal",  # the console module's own imports, before ``main``
            "crm_audit_adapters.cli",  # the CLI's load, after ``main`` installed its handler
        ],
    )
    def test_a_ctrl_c_while_it_loads_is_one_line_and_exit_130(
        self, tmp_path: Path, module: str, at: str
    ) -> None:
        """As the script: held from the package's first line, which ``-m`` imports first."""
        (tmp_path / "sitecustomize.py").write_text(CTRL_C_AT_IMPORT, encoding="utf-8")
        env = {"PYTHONPATH": str(tmp_path), "CTRL_C_AT_IMPORT_OF": at}
        done = module_form(module, "--version", cwd=tmp_path, env=env)
        assert (done.returncode, done.stderr.splitlines(), done.stdout) == (
            exit_codes.INTERRUPTED,
            ["error: INTERRUPTED: Ctrl-C while the command was starting; nothing was done"],
            "",
        )


@pytest.mark.parametrize(
    "flags",
    [
        ["-um", "crm_audit_adapters"],  # ``-m`` ending a group of flags: no word ``-m``
        ["-mcrm_audit_adapters"],  # the module's name in the same word
        ["-W", "ignore", "-m", "crm_audit_adapters"],  # ``-W``'s value is no option
        ["-m", "crm_audit_adapters.__main__"],  # the package's ``__main__`` named
    ],
)
def test_a_ctrl_c_while_it_loads_is_held_however_the_interpreter_is_told_the_module(
    tmp_path: Path, flags: list[str]
) -> None:
    """The hold reads ``-m`` as the interpreter does: these printed ``KeyboardInterrupt``'s
    traceback, exit 1, as ``python -Im crm_audit_adapters`` did."""
    (tmp_path / "sitecustomize.py").write_text(CTRL_C_AT_IMPORT, encoding="utf-8")
    env = {**os.environ, "CRM_AUDIT_SETTINGS": "", "PYTHONPATH": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, *flags, "--version"],
        cwd=tmp_path,
        env={**env, "CTRL_C_AT_IMPORT_OF": "crm_audit_adapters.console"},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert (done.returncode, done.stderr.splitlines(), done.stdout) == (
        exit_codes.INTERRUPTED,
        ["error: INTERRUPTED: Ctrl-C while the command was starting; nothing was done"],
        "",
    )


@pytest.mark.parametrize(
    ("orig_argv", "module"),
    [
        (["python", "-m", "crm_audit_adapters", "run"], "crm_audit_adapters"),
        (["python", "-Im", "crm_audit_adapters"], "crm_audit_adapters"),
        (["python", "-Esm", "crm_audit_adapters.console"], "crm_audit_adapters.console"),
        (["python", "-mcrm_audit_adapters", "-m", "x"], "crm_audit_adapters"),
        (["python", "-X", "dev", "-W", "error", "-m", "crm_audit_adapters"], "crm_audit_adapters"),
        (["python", "-Xm", "-Wm", "-m", "crm_audit_adapters"], "crm_audit_adapters"),
        (["python", "-W", "-m", "x"], None),  # ``-m`` is ``-W``'s value; ``x`` a script
        (["python", "--check-hash-based-pycs", "always", "-m", "crm_audit_adapters"], "crm_audit_adapters"),
        (["python", "script.py", "-m", "crm_audit_adapters"], None),
        (["python", "-c", "pass", "-m", "crm_audit_adapters"], None),
        (["python", "-Ic", "-m"], None),
        (["python", "--", "-m", "crm_audit_adapters"], None),
        (["python", "-", "-m", "crm_audit_adapters"], None),
        (["python", "-m"], None),
        (["python"], None),
    ],
)
def test_the_module_run_is_read_as_the_interpreter_reads_its_options(
    orig_argv: list[str], module: str | None
) -> None:
    assert module_run(orig_argv) == module
