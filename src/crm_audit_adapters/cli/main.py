"""The ``crm-audit-migrate`` command group: global options and the one place errors become exit codes."""

from __future__ import annotations

import contextlib
import contextvars
import os
import select
import signal
import sys
import traceback
from collections.abc import MutableMapping, Sequence
from typing import Any, Final

import click

from .. import SCRIPT
from ..abort_lines import aborted, command_of, words_before_values
from ..console import interrupt_reported
from ..redaction import scrub
from . import exit_codes
from .options import bounded, error_document, error_document_in, read_ahead, remember_json_in
from .standard_streams import open_standard_streams, settle
from .state import CliState, Overrides

_SECRET_ENVIRONMENT = (
    "CRM_AUDIT_DATABASE_URL",
    "CRM_AUDIT_MONGO_URI",
    "CRM_AUDIT_USMAN_TOKEN",
    "CRM_AUDIT_USMAN_BASE_URL",
    "CRM_AUDIT_HTTP_PASSWORD",
    "CRM_AUDIT_SESSION_SECRET",
)
# Options of the group that may also be written after the subcommand (``status --debug``).
_GLOBAL_FLAGS = ("--debug",)
_GLOBAL_VALUED = ("--settings",)


def _hoist_global_options(args: list[str]) -> list[str]:
    """``CMD … --settings F --debug`` → ``--settings F --debug CMD …`` (up to a ``--``)."""
    hoisted: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest.extend(args[i:])
            break
        if arg in _GLOBAL_FLAGS or (arg.partition("=")[0] in _GLOBAL_VALUED and "=" in arg):
            hoisted.append(arg)
        elif arg in _GLOBAL_VALUED and i + 1 < len(args):
            hoisted.extend(args[i : i + 2])
            i += 1
        else:
            rest.append(arg)
        i += 1
    return hoisted + rest


def _refuse_global_values_missing(args: list[str]) -> None:
    """``click.BadOptionUsage`` for a ``--settings`` with no value, or followed by a word starting with
    ``-`` (``--settings --debug``), as for a command's option whose value is missing
    (``options.read_ahead``): after the command, the first was an unknown option of the command, and
    the second took ``--debug`` for the file's name. A file so named is given joined,
    ``--settings=-f.toml``."""
    i = 0
    while i < len(args) and args[i] != "--":
        if args[i] in _GLOBAL_VALUED:
            option = args[i]
            value = args[i + 1] if i + 1 < len(args) else None
            if value is None or (value.startswith("-") and value != "-"):
                why = "" if value is None else f": {value!r} is an option (give such a file as {option}=…)"
                raise click.BadOptionUsage(option, f"Option '{option}' requires an argument{why}.")
            i += 1
        i += 1


def _report(
    error: BaseException,
    state: CliState | None,
    meta: MutableMapping[str, Any] | None = None,
    *,
    debug: bool = False,
) -> int:
    """Print ``error: CODE: message`` (secrets scrubbed) and return the exit code; under ``--debug``
    (``state.debug``, or ``debug`` where no command's state exists) the traceback first.

    Given the invocation's ``meta`` (``click.Context.meta``), a command run with ``--json`` that
    printed no document yet also gets the error document on stdout (``options.error_document_in``),
    and each value of its command line the message echoes is cut when long (``options.bounded``), as
    in a usage error: ``--tenant`` of 5,000 characters, quoted whole by ``UNKNOWN_TENANT`` or
    ``TENANT_MISMATCH``. After the scrub, so that a cut never hides part of a secret from it.
    """
    if debug or (state is not None and state.debug):
        # The error's own traceback (outside a command: the ``EOFError``, not click's ``Abort`` from
        # it), else the one being handled (a Ctrl-C, reported as an ``INTERRUPTED`` made here).
        trace = traceback.format_exception(error) if error.__traceback__ else [traceback.format_exc()]
        _to_stderr(scrub("".join(trace), _secrets(state)), nl=False)
    line = scrub(exit_codes.one_line(error), _secrets(state))
    if meta is not None:
        line = bounded(line, meta.get(_WORDS, ()))
    _to_stderr(f"error: {line}")
    code = exit_codes.exit_code_for(error)
    if meta is not None:
        name = exit_codes.error_code(error)
        with contextlib.suppress(OSError):  # stdout is what failed (closed): the line above says it
            error_document_in(meta, name, line.removeprefix(f"{name}: "), code)
    return code


def _usage_message(error: click.ClickException, words: Sequence[str]) -> str:
    """click's message for ``error`` as the line and the document give it: each value of the command
    line (``words``) it echoes cut when long (``options.bounded``), and on one line, as every error's
    (``exit_codes.one_line``): click writes a choice's missing argument over four lines (``Choose
    from:`` and a tab-indented line per choice)."""
    lines = bounded(error.format_message(), words).splitlines()
    return " ".join(line.strip() for line in lines if line.strip())


def _to_stderr(text: str, *, nl: bool = True) -> None:
    """``text`` on stderr, if it can take it: a stderr that cannot (full, closed) is the error
    being reported, or it fails as the command ends; either way the exit code still says it."""
    with contextlib.suppress(OSError):
        click.echo(text, err=True, nl=nl)


def _json_asked_of_command(ctx: click.Context, args: Sequence[str]) -> None:
    """Before the group's usage error is reported: when the command line names a command and asks for
    ``--json``, the error document is printed for it, as for the command's own usage errors."""
    _json_asked_in(ctx.meta, args)


def _json_asked_in(meta: MutableMapping[str, Any], args: Sequence[str]) -> None:
    """``_json_asked_of_command`` for the invocation whose context's ``meta`` this is."""
    words = args[: args.index("--")] if "--" in args else args
    command = command_of(args)
    if command is not None and "--json" in words:
        remember_json_in(meta, command)


_WORDS: Final = "crm_audit_adapters.cli.words"
"""The command line after the program's name, in the invocation's ``meta``."""
_INVOCATION: Final[contextvars.ContextVar[MutableMapping[str, Any] | None]] = contextvars.ContextVar(
    "crm_audit_adapters.cli.invocation", default=None
)
"""The ``click.Context.meta`` of the invocation under way (or last run), shared by its every context:
what it asked of ``--json`` and whether it printed its document, for a Ctrl-C that lands where its
contexts are gone (``interrupted``)."""


def interrupted(args: Sequence[str], *, debug: bool = False) -> int:
    """Report a Ctrl-C that landed outside a command's handling of it — as click read the options,
    closed the command's context, or as its error was reported — and return ``INTERRUPTED`` (130):
    ``error: INTERRUPTED: …`` on stderr and, when the command line (``args``, after the program's
    name) asks for ``--json``, the error document on stdout, unless the command printed its own.

    The invocation's ``meta`` says what the command read and printed; the command line says what the
    options not yet read would have (``--json`` noted as for a usage error of the group)."""
    interrupt_reported()
    meta = _INVOCATION.get()
    if meta is None:  # before the group's context was made
        meta = {}
    _json_asked_in(meta, args)
    error = exit_codes.CliError("INTERRUPTED", aborted(command_of(args)))
    return _report(error, None, meta, debug=debug)


def _debug_asked(args: Sequence[str]) -> bool:
    """Whether ``args``, the command line after the program's name, ask for ``--debug``: anywhere
    before a ``--`` and not as ``--settings``' value, as ``_hoist_global_options`` reads it. For an
    error outside a command, where no ``CliState`` was made (or it is gone with its context)."""
    return any(word in _GLOBAL_FLAGS for word in words_before_values(args))


def _secrets(state: CliState | None) -> list[str | None]:
    loaded = state.loaded_settings if state is not None else None
    values: list[str | None] = [os.environ.get(name) for name in _SECRET_ENVIRONMENT]
    return values + list(loaded.secrets() if loaded is not None else ())


BROKEN_PIPE: Final = 128 + signal.SIGPIPE
"""Exit code when stdout's reader went away (``… | head -1``): what a shell reports for a Unix tool
that SIGPIPE ended (141)."""


def _reader_gone(error: BaseException) -> bool:
    """True when ``error`` comes from writing to a stdout whose reader has closed it.

    A broken pipe to a server (a socket) is a dependency going down, not this: it must still be
    reported. So the pipe must be stdout, and stdout must be a pipe with no reader left.
    """
    seen: BaseException | None = error
    while seen is not None and not isinstance(seen, BrokenPipeError):
        seen = seen.__cause__ or seen.__context__
    return seen is not None and _stdout_has_no_reader()


def _stdout_has_no_reader() -> bool:
    try:
        fd = sys.stdout.fileno()
    except (OSError, ValueError):  # not a real file (an in-process test runner's buffer)
        return False
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    # A pipe's write end whose read end is closed polls as POLLERR on Linux and the BSDs.
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))


def _exit_quietly() -> None:
    """Stop at once, silently, as a Unix tool does on SIGPIPE (``dry-run --out - | head -1``)."""
    # Point stdout at /dev/null: the interpreter flushes it at exit, and that must not fail again.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(BROKEN_PIPE)


class _Command(click.Command):
    """A subcommand whose usage errors name it: ``--json`` and a missing value are read first
    (``options.read_ahead``), and an error click's parser raises without a context (``Option
    '--sample' requires an argument.``) is given the command's, so that it gets the ``(see '… --help')``
    hint and, under ``--json``, the error document, as every other usage error does."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        read_ahead(self, ctx, args)
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as error:
            if error.ctx is None:
                error.ctx = ctx
            raise


class _Group(click.Group):
    """Turns every error of a command into ``error: CODE: message`` and its documented exit code."""

    command_class = _Command

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        _INVOCATION.set(ctx.meta)  # before a word is read: a Ctrl-C from here on finds it
        ctx.meta[_WORDS] = tuple(args)
        try:
            if not ctx.resilient_parsing:  # shell completion parses what it can
                _refuse_global_values_missing(args)
            return super().parse_args(ctx, _hoist_global_options(args))
        except click.UsageError as error:
            if error.ctx is None:  # the hint, and the document below
                error.ctx = ctx
            _json_asked_of_command(ctx, args)  # ``--json status``: the group has no --json
            raise
        except OSError as error:
            # ``--help`` and ``--version`` are written here, as the options are read. A reader gone
            # (``--help | head -0``) must end as any command's output does (141): click's own catch
            # of a broken pipe, in ``click.Command.main``, would end it with exit 1 and no word.
            if _reader_gone(error):
                _exit_quietly()
            raise

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError:
            _json_asked_of_command(ctx, args)  # ``staus --json``: no such command
            raise

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as usage:
            if usage.ctx is None:  # raised by a command's own code (main prints those with a context)
                message = _usage_message(usage, ctx.meta.get(_WORDS, ()))
                error_document(ctx, exit_codes.error_code(usage), message, usage.exit_code)
            raise
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except KeyboardInterrupt:
            # The run's first Ctrl-C stops after its batch; this is the second (or one outside a run).
            interrupt_reported()  # a further Ctrl-C must not cut this report or the closing short
            error = exit_codes.CliError("INTERRUPTED", aborted(ctx.invoked_subcommand))
            # Its options may not all have been read (``--json`` among them): the command line says.
            _json_asked_in(ctx.meta, ctx.meta.get(_WORDS, ()))
            ctx.exit(_report(error, ctx.find_object(CliState), ctx.meta))
        except Exception as error:
            if _reader_gone(error):
                _exit_quietly()
            ctx.exit(_report(error, ctx.find_object(CliState), ctx.meta))

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """click's ``main``, except that every error it would print is ``error: CODE: message``."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        words = sys.argv[1:] if args is None else args
        _INVOCATION.set(None)  # this invocation's, once the group's context is made
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.Abort as abort:
            interrupt_reported()
            # No command's state is left to say ``--debug``: the command line does, as it would have.
            debug = _debug_asked(words)
            if isinstance(abort.__cause__, KeyboardInterrupt):
                # click's own catch (``Abort() from`` the interrupt): a Ctrl-C that landed outside a
                # command's handling of it, as it parsed options, closed its context, or reported
                # its error (a handler's, where the sibling ``except KeyboardInterrupt`` is not reached).
                sys.exit(interrupted(words, debug=debug))
            if isinstance(abort.__cause__, Exception):
                # click's catch of an ``EOFError`` (``Abort() from`` it) that left a command's own
                # handling: a read that met an end of file (a closed stdin) where no prompt was asked.
                # Not the operator declining: the error it is, as the same error inside a command.
                sys.exit(_report(abort.__cause__, None, debug=debug))
            # A prompt that read EOF or Ctrl-C (``Abort() from None``): the operator gave no answer.
            _to_stderr("")  # end the prompt's line
            error = exit_codes.CliError("DECLINED", "no answer to the confirmation; nothing was changed")
            sys.exit(_report(error, None))
        except OSError as error:  # writing --help or --version, before any command (a closed stdout)
            if _reader_gone(error):
                _exit_quietly()
            sys.exit(_report(error, None, debug=_debug_asked(words)))
        except click.ClickException as error:
            hint = ""
            if isinstance(error, click.UsageError) and error.ctx is not None:
                hint = f" (see '{error.ctx.command_path} --help')"
            name = exit_codes.error_code(error)
            message = _usage_message(error, words)
            _to_stderr(f"error: {name}: {message}{hint}")
            code = exit_codes.exit_code_for(error) if isinstance(error, click.FileError) else error.exit_code
            if isinstance(error, click.UsageError) and error.ctx is not None:
                error_document(error.ctx, name, message, code)  # when --json was read
            sys.exit(code)
        sys.exit(code if isinstance(code, int) else exit_codes.OK)


# No command is a usage error of one line (click's "Missing command."), as every other: by default
# click raises its help text as the error's message, "error: USAGE: Usage: …" over some thirty lines.
@click.group(cls=_Group, no_args_is_help=False, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--settings",
    "settings_path",
    type=click.Path(dir_okay=False),
    envvar="CRM_AUDIT_SETTINGS",
    help="TOML settings file (environment variables override it). Like --debug, it may also follow "
    "the subcommand.",
)
@click.option("--debug", is_flag=True, help="Show the traceback of an error (secrets scrubbed).")
@click.version_option(package_name="crm-audit-transform")
@click.pass_context
def cli(ctx: click.Context, settings_path: str | None, debug: bool) -> None:
    """Migrate one account's CRM audit history into the CDP activity timeline.

    \b
    Ops walk-through:
      crm-audit-migrate indexes up
      crm-audit-migrate trigger  --company-sso-id ID      (its tenant: CRM_AUDIT_TENANTS)
      crm-audit-migrate run      --company-sso-id ID      (Ctrl-C stops cleanly; run again to resume)
      crm-audit-migrate status   --company-sso-id ID [--json]
      crm-audit-migrate cancel   --company-sso-id ID      (then trigger --resume or --fresh)
      crm-audit-migrate rollback --company-sso-id ID
      crm-audit-migrate enrich   --company-sso-id ID [--dry-run]   (logs already in the CDP)
      crm-audit-migrate verify   --company-sso-id ID [--json] [--repair]   (proof; exit 0 or 10)
    Try it without any server: crm-audit-migrate dry-run --example
    """
    overrides = ctx.obj if isinstance(ctx.obj, Overrides) else Overrides()
    ctx.obj = CliState(settings_path=settings_path, debug=debug, overrides=overrides)


def main() -> None:
    """Console-script entry point (``console.main``; ``python -m crm_audit_adapters`` too)."""
    open_standard_streams()
    try:
        cli(prog_name=prog_name())
    except KeyboardInterrupt:  # after click's catch: as the group reported an error or ended
        args = sys.argv[1:]
        sys.exit(interrupted(args, debug=_debug_asked(args)))
    finally:
        settle()  # a stream whose write failed: the exit's flush must not fail on it again


def prog_name() -> str:
    """The name ``--help`` and the usage hints give the program: ``crm-audit-migrate``, or what was
    typed to run it as a module (``python -m crm_audit_adapters``, ``__main__``), where no script
    may be on ``PATH`` and that name would send the operator to a command that is not there."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    name = getattr(spec, "name", None)
    if isinstance(name, str) and name.split(".")[0] == "crm_audit_adapters":
        return f"python -m {name.removesuffix('.__main__')}"
    return SCRIPT
