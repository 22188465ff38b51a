"""The confirmation ``indexes down`` and ``rollback`` ask before they change anything, at a terminal only."""

from __future__ import annotations

import sys

import click

from . import exit_codes


def stdin_is_a_terminal() -> bool:
    """Whether someone can answer a prompt: stdin is a terminal (not a pipe, a file, a closed stream)."""
    return sys.stdin is not None and sys.stdin.isatty()


def confirm_or_decline(question: str, *, command: str, act: str, nothing: str) -> None:
    """Ask ``question``; return when the operator says yes.

    ``DECLINED`` (exit 9; ``nothing`` says what stayed: "nothing was deleted") when the operator says
    no or gives no answer (EOF, Ctrl-C at the prompt), and at once without a terminal: a script or a
    pipe that means to ``act`` says ``--yes``, and an answer piped in (``yes |``) is no operator's.
    The caller checks its settings (and reaches its server) first: a command that cannot run asks
    nothing.
    """
    if not stdin_is_a_terminal():
        raise exit_codes.CliError(
            "DECLINED",
            f"{command} asks for confirmation and stdin is not a terminal: give --yes to {act} without "
            f"asking; {nothing}",
        )
    try:
        confirmed = click.confirm(question, err=True)
    except click.Abort:  # EOF or Ctrl-C at the prompt: reported here, so --json prints its document
        click.echo(err=True)  # end the prompt's line
        raise exit_codes.CliError("DECLINED", f"no answer to the confirmation; {nothing}") from None
    if not confirmed:
        raise exit_codes.CliError("DECLINED", f"{command} declined; {nothing}")
