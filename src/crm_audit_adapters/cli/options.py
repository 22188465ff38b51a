"""What every command shares on its command line and its output: the account option and ``--json``.

``--json`` output is one JSON document on stdout per command, always an object with ``"command"``
(the subcommand's name) and ``"schema"`` (its version, bumped on a breaking change), then the
command's own keys (docs/runner.md lists each command's). ``emit(command, doc, as_json, human)``
prints that document, or calls ``human()`` for the table form. A command added later uses the same
helper, so every ``--json`` answer has the same envelope. When the command fails before printing its
document, the CLI's one error handler prints ``error_document`` instead (``{"command", "schema",
"error": {"code", "message", "exit_code"}}``): one document on stdout whatever the exit code::

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
from typing import Final, TypeVar

import click

__all__ = [
    "JSON_SCHEMA_VERSION",
    "company_option",
    "echo_json",
    "emit",
    "error_document",
    "json_flag",
    "json_option",
    "keep_for_error",
    "non_empty",
    "optional_company_option",
    "workers_option",
]

JSON_SCHEMA_VERSION: Final = 1
_Command = TypeVar("_Command", bound=Callable[..., object])

# Shared by every context of one invocation (click's ``Context.meta``), so the group's error
# handler sees what its subcommand asked for and printed.
_AS_JSON: Final = "crm_audit_adapters.cli.as_json"
_COMMAND: Final = "crm_audit_adapters.cli.command"
_PRINTED: Final = "crm_audit_adapters.cli.json_printed"
_PARTIAL: Final = "crm_audit_adapters.cli.json_partial"


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


def _remember_json(ctx: click.Context, _: click.Parameter, value: bool) -> bool:
    """Record ``--json`` and the command's name where the group's error handler finds them."""
    if value:
        ctx.meta[_AS_JSON] = True
        ctx.meta[_COMMAND] = ctx.info_name
    return value


def json_flag(
    help_text: str = "Print one JSON document (docs/runner.md: --json schemas).",
) -> Callable[[_Command], _Command]:
    """The ``--json`` option (as ``as_json``); every command taking ``--json`` uses it, so a refusal
    prints the error document too. It is eager: read before the other options, so a usage error in
    one of them (missing, empty, of the wrong type) prints the document as well."""
    return click.option(
        "--json", "as_json", is_flag=True, is_eager=True, callback=_remember_json, help=help_text
    )


json_option = json_flag()


def emit(
    command: str, doc: Mapping[str, object], as_json: bool, human: Callable[[], None] | None = None
) -> None:
    """Print ``doc`` as the command's JSON document, or run ``human()`` for the human form.

    Without ``human`` the human form is ``key  value`` lines of ``doc``.
    """
    if as_json:
        echo_json({"command": command, "schema": JSON_SCHEMA_VERSION, **doc})
    elif human is not None:
        human()
    else:
        width = max((len(key) for key in doc), default=0)
        for key, value in doc.items():
            click.echo(f"{key:<{width}}  {_plain(value)}")


def echo_json(value: object) -> None:
    """Print ``value`` as the invocation's JSON document (so no error document follows it)."""
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.meta[_PRINTED] = True


def keep_for_error(doc: Mapping[str, object]) -> None:
    """Keys the error document carries beside ``error`` if the command fails now (``enqueue``: the
    tasks already sent)."""
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.meta[_PARTIAL] = dict(doc)


def error_document(ctx: click.Context, code: str, message: str, exit_code: int) -> None:
    """Print the error document if the failed command was given ``--json`` and printed none yet.

    ``{"command", "schema", …kept keys, "error": {"code", "message", "exit_code"}}`` — the CLI's
    form of the HTTP error envelope (``http.answers.error_answer``). ``message`` must already be
    scrubbed of secrets. A usage error prints one once ``--json`` was read (it is eager); an unknown
    option or command, met before any option is read, prints none.
    """
    meta = ctx.meta
    if not meta.get(_AS_JSON) or meta.get(_PRINTED):
        return
    error = {"code": code, "message": message, "exit_code": exit_code}
    kept = meta.get(_PARTIAL, {})
    echo_json({"command": meta[_COMMAND], "schema": JSON_SCHEMA_VERSION, **kept, "error": error})


def _plain(value: object) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_plain(v)}" for k, v in value.items()) or "-"
    if isinstance(value, list | tuple):
        return ", ".join(_plain(v) for v in value) or "-"
    return "-" if value is None else str(value)
