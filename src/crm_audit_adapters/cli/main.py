"""The ``crm-audit-migrate`` command group: global options and the one place errors become exit codes."""

from __future__ import annotations

import sys
import traceback
from typing import Any

import click

from . import exit_codes
from .state import CliState, Overrides


class _Group(click.Group):
    """Turns every error of a command into one clear line and its documented exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as error:
            state = ctx.find_object(CliState)
            if state is not None and state.debug:
                traceback.print_exc(file=sys.stderr)
            code = exit_codes.exit_code_for(error)
            prefix = "internal error" if code == exit_codes.INTERNAL else "error"
            click.echo(f"{prefix}: {exit_codes.one_line(error)}", err=True)
            ctx.exit(code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--settings",
    "settings_path",
    type=click.Path(dir_okay=False),
    envvar="CRM_AUDIT_SETTINGS",
    help="TOML settings file (environment variables override it).",
)
@click.option("--debug", is_flag=True, help="Show the traceback of an error.")
@click.version_option(package_name="crm-audit-transform")
@click.pass_context
def cli(ctx: click.Context, settings_path: str | None, debug: bool) -> None:
    """Migrate one account's CRM audit history into the CDP activity timeline.

    \b
    Ops walk-through:
      crm-audit-migrate indexes up
      crm-audit-migrate trigger  --company-sso-id ID --tenant SCHEMA
      crm-audit-migrate run      --company-sso-id ID      (Ctrl-C stops cleanly; run again to resume)
      crm-audit-migrate status   --company-sso-id ID [--json]
      crm-audit-migrate cancel   --company-sso-id ID      (then trigger --resume or --fresh)
      crm-audit-migrate rollback --company-sso-id ID
      crm-audit-migrate enrich   --company-sso-id ID [--dry-run]   (logs already in the CDP)
    Try it without any server: crm-audit-migrate dry-run --example
    """
    overrides = ctx.obj if isinstance(ctx.obj, Overrides) else Overrides()
    ctx.obj = CliState(settings_path=settings_path, debug=debug, overrides=overrides)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="crm-audit-migrate")
