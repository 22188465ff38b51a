"""What every command shares on its command line and its output: the account option and ``--json``.

``--json`` output is one JSON document on stdout per command, always an object with ``"command"``
(the subcommand's name) and ``"schema"`` (its version, bumped on a breaking change), then the
command's own keys (docs/runner.md lists each command's). ``emit(command, doc, as_json, human)``
prints that document, or calls ``human()`` for the table form. A command added later uses the same
helper, so every ``--json`` answer has the same envelope::

    @cli.command()
    @company_option
    @json_option
    def cancel(company: str, as_json: bool) -> None:
        ...
        emit("cancel", {"company_sso_id": company, "status": status}, as_json,
             lambda: click.echo(f"cancelled {company}"))
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Final

import click

__all__ = [
    "JSON_SCHEMA_VERSION",
    "company_option",
    "emit",
    "json_option",
    "non_empty",
    "optional_company_option",
    "workers_option",
]

JSON_SCHEMA_VERSION: Final = 1


def non_empty(_: click.Context, __: click.Parameter, value: str | None) -> str | None:
    """A click callback refusing a blank value (``--company-sso-id ""`` would match no account)."""
    if value is not None and not value.strip():
        raise click.BadParameter("must not be empty")
    return value


company_option = click.option(
    "--company-sso-id",
    "company",
    required=True,
    callback=non_empty,
    help="The CDP account (company SSO id).",
)
optional_company_option = click.option(
    "--company-sso-id", "company", callback=non_empty, help="The CDP account (company SSO id)."
)
workers_option = click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Processes that load and transform the pages; one writer in id order either way "
    "(docs/runner.md: --workers).",
)
json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON document (docs/runner.md: --json schemas)."
)


def emit(
    command: str, doc: Mapping[str, object], as_json: bool, human: Callable[[], None] | None = None
) -> None:
    """Print ``doc`` as the command's JSON document, or run ``human()`` for the human form.

    Without ``human`` the human form is ``key  value`` lines of ``doc``.
    """
    if as_json:
        envelope = {"command": command, "schema": JSON_SCHEMA_VERSION, **doc}
        click.echo(json.dumps(envelope, indent=2, ensure_ascii=False, default=str))
    elif human is not None:
        human()
    else:
        width = max((len(key) for key in doc), default=0)
        for key, value in doc.items():
            click.echo(f"{key:<{width}}  {_plain(value)}")


def _plain(value: object) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_plain(v)}" for k, v in value.items()) or "-"
    if isinstance(value, list | tuple):
        return ", ".join(_plain(v) for v in value) or "-"
    return "-" if value is None else str(value)
