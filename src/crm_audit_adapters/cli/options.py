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

import contextlib
import datetime as dt
import errno
import json
import os
import stat
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar

import click

from crm_audit_transform.ports import Clock
from crm_audit_transform.timestamps import as_utc

from ..strict_json import dumps, has_surrogate

__all__ = [
    "CUT_TO",
    "ID_OPTIONS",
    "JSON_SCHEMA_VERSION",
    "SHOWN_CHARS",
    "bounded",
    "company_option",
    "date_range_start_option",
    "echo_json",
    "emit",
    "error_document",
    "error_document_in",
    "existing_file",
    "json_flag",
    "json_option",
    "keep_for_error",
    "non_empty",
    "optional_company_option",
    "read_ahead",
    "refuse_future_cutoff",
    "regular_file",
    "remember_json",
    "remember_json_in",
    "shown_word",
    "stored_non_empty",
    "stored_text",
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


def stored_text(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A click callback for a value looked up in PostgreSQL or MongoDB (an account id, a tenant
    schema): refused when it holds bytes that are not UTF-8 (Python's lone surrogates, PEP 383).

    Both servers hold UTF-8 text only, so such a value names no account or schema, and their drivers
    refuse to encode it: the command ended ``INTERNAL`` (exit 1) instead of a usage error (exit 2).
    The dry run does not use it: its files may hold such bytes, and its tenant then matches them."""
    if value is not None and has_surrogate(value):
        raise click.BadParameter("holds bytes that are not UTF-8 (the CRM and the CDP store UTF-8 text only)")
    return value


def stored_non_empty(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``non_empty``, then ``stored_text``: an account id."""
    return stored_text(ctx, param, non_empty(ctx, param, value))


company_option = click.option(
    "--company-sso-id",
    "company",
    required=True,
    callback=stored_non_empty,
    help="The CDP account (company SSO id).",
)
optional_company_option = click.option(
    "--company-sso-id", "company", callback=stored_non_empty, help="The CDP account (company SSO id)."
)
METRICS_PORT: Final = click.IntRange(1, 65_535)
"""``--metrics-port`` of ``run`` and ``worker``: a TCP port. Outside it, the socket's own bind raised
``OverflowError`` (``INTERNAL``) for 65,536 and up, and 0 would serve on a port nobody is told."""
workers_option = click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Processes that load and transform the pages; one writer in id order either way "
    "(docs/runner.md: --workers).",
)


def _utc_cutoff(_: click.Context, __: click.Parameter, value: dt.datetime | None) -> dt.datetime | None:
    """The cutoff in UTC (a naive value is UTC); refused when outside ``datetime``'s range once in
    UTC (``0001-01-01T00:00:00+01:00``: the HTTP route's ``INVALID_DATE_RANGE_START``). One in the
    future is refused by the command, on the service's clock (``refuse_future_cutoff``)."""
    if value is None:
        return None
    try:
        return as_utc(value, naive="utc")
    except OverflowError:
        raise click.BadParameter(f"{value.isoformat()} is out of range in UTC") from None


def refuse_future_cutoff(cutoff: dt.datetime | None, clock: Clock) -> None:
    """``click.BadParameter`` (``USAGE``, exit 2) for a ``--date-range-start`` after ``clock.now()``:
    nothing would be in scope, so the job would start at 100 % and never migrate a row.

    ``clock`` is the service's (``MigrationService.clock``), the one its guards read, as the HTTP
    route reads it: the wall clock here may disagree with a runtime built on another
    (``Overrides.clock``), and a cutoff between the two would end ``INTERNAL`` (the guards'
    ``ValueError``), or be refused though the service would take it."""
    if cutoff is not None and cutoff > clock.now():
        raise click.BadParameter(
            f"{cutoff.isoformat()} is in the future",
            ctx=click.get_current_context(silent=True),
            param_hint="'--date-range-start'",
        )


def date_range_start_option(help_text: str) -> Callable[[_Command], _Command]:
    """``--date-range-start``: a date, a time (UTC) or a time with its offset, as ``_utc_cutoff``
    reads it; ``trigger`` and ``enqueue`` take the same spellings, and refuse a cutoff in the future
    once their runtime is built (``refuse_future_cutoff``)."""
    return click.option(
        "--date-range-start",
        type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S%z"]),
        callback=_utc_cutoff,
        help=help_text,
    )


class _ExistingFile(click.Path):
    """An existing file (symlinks followed) whose ``stat`` failing for another reason than its absence
    says why: click reports every ``stat`` error as "does not exist", which is false for a symlink
    loop (``ELOOP``), a directory on the path that cannot be searched (``EACCES``) or a file on it
    (``ENOTDIR``). The usage error is the same (``USAGE``, exit 2); only its wording changes."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str | bytes | os.PathLike):
            try:
                os.stat(value)
            except OSError as exc:
                shown = os.fsdecode(value)
                if exc.errno == errno.ELOOP:
                    self.fail(f"{shown} is a symlink loop ({exc.strerror}): it names no file", param, ctx)
                if exc.errno != errno.ENOENT:
                    self.fail(f"{shown}: cannot read: {exc.strerror}", param, ctx)
        return super().convert(value, param, ctx)


existing_file: Final = _ExistingFile(exists=True, dir_okay=False, path_type=Path)
"""The type of an input file option read by a reader that checks the file's kind itself
(``dry-run --config``): an existing file, or a usage error saying why it cannot be read."""


class _RegularFile(_ExistingFile):
    """An existing regular file (symlinks followed): a device, a FIFO or a socket is refused before
    it is opened. ``/dev/zero`` is one endless line and a FIFO with no writer blocks ``open``, so a
    command reading either would never end."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        path = super().convert(value, param, ctx)
        try:
            mode = os.stat(path).st_mode
        except OSError as exc:
            self.fail(f"{os.fsdecode(path)}: cannot read: {exc.strerror}", param, ctx)
        if not stat.S_ISREG(mode):
            self.fail(f"{os.fsdecode(path)} is not a regular file (a device, a FIFO or a socket)", param, ctx)
        return path


regular_file: Final = _RegularFile(exists=True, dir_okay=False, path_type=Path)
"""The type of an input file option (``--audits``, ``--users``, …): an existing regular file."""


def _remember_json(ctx: click.Context, _: click.Parameter, value: bool) -> bool:
    """Record ``--json`` and the command's name where the group's error handler finds them."""
    if value:
        remember_json(ctx, ctx.info_name)
    return value


def remember_json(ctx: click.Context, command: str | None) -> None:
    """Note that the invocation asked for ``--json`` for ``command`` (its name): an error from now on
    prints the error document (``error_document``)."""
    remember_json_in(ctx.meta, command)


def remember_json_in(meta: MutableMapping[str, Any], command: str | None) -> None:
    """``remember_json`` for the invocation whose ``click.Context.meta`` is ``meta``."""
    meta[_AS_JSON] = True
    meta[_COMMAND] = command


ID_OPTIONS: Final = frozenset({"--company-sso-id", "--tenant", "--audit-id"})
"""The options whose value is an id (an account, a tenant schema, an audit row), in every command that
takes them. Written ``--company-sso-id --json``, the value is missing: click took the next word,
``--json``, for the id, and the command then ran for an account named ``--json``, its ``--json``
unread. A word starting with ``-`` after one of them is a usage error (``read_ahead``); an id that
really starts with ``-`` is given joined to its option, ``--company-sso-id=-x``."""


SHOWN_CHARS: Final = 256
"""The longest command-line word a usage message quotes whole; a longer one is cut to its first
``CUT_TO`` characters and its length (``shown_word``), in the form of the files adapters' messages
(``files.errors.cut``). Longer than their 80: a word here is often a file's path, which the message
names whole up to a file name's 255 bytes beyond its directory's (a test's ``tmp_path`` is 84)."""
CUT_TO: Final = 200


def printable(text: str) -> str:
    """``text`` from the database as terminal text: a character that does not print (a newline, ESC,
    CR, BEL, a bidi override) as its escape (``\\n``, ``\\x1b``), so a crafted value (an
    ``external_id``, a ``company_sso_id``) can neither add a line nor rewrite the screen."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def shown_word(word: str) -> str:
    """``word`` as a message quotes it: whole up to ``SHOWN_CHARS``, else cut (``111… (5000 characters)``)."""
    return word if len(word) <= SHOWN_CHARS else f"{word[:CUT_TO]}… ({len(word)} characters)"


def bounded(message: str, words: Sequence[str]) -> str:
    """``message`` with each word of the command line (``words``) that it echoes cut by ``shown_word``:
    as written or quoted (``repr``, click's ``'…'``), an ``--option=value``'s value too, and an integer
    as click writes it back (``+0012`` as ``12``). click quotes a refused value whole: an ``explain
    --audit-id`` of 5,000 digits put 5,000 characters in the ``USAGE`` line and its ``--json``
    document, and so did any option's value, an unknown option or an extra argument."""
    echoed: set[str] = set()
    for word in words:
        echoed.add(word)
        if word.startswith("-") and "=" in word:
            echoed.add(word.partition("=")[2])
    for word in list(echoed):
        with contextlib.suppress(ValueError):  # no integer, or past Python's digits (echoed as text)
            echoed.add(str(int(word)))
    for word in sorted((w for w in echoed if len(w) > SHOWN_CHARS), key=len, reverse=True):
        message = message.replace(repr(word), repr(shown_word(word))).replace(word, shown_word(word))
    return message


def read_ahead(command: click.Command, ctx: click.Context, args: Sequence[str]) -> None:
    """Read ``args``, the command's words, before click parses them: note ``--json``, and refuse a
    value that is an option.

    * ``--json`` is noted (``remember_json``) wherever it stands before a ``--`` and is not an option's
      value, so that any usage error of the command line prints the error document, one click meets
      as it parses (an unknown option, a missing value) included: those came before ``--json`` was
      read, and printed none.
    * An option that takes a value, followed by one of the command's own options (``--sample
      --json``), or an id option (``ID_OPTIONS``) followed by any word starting with ``-``, is missing
      its value: ``click.BadOptionUsage`` (``USAGE``, exit 2). click took that word for the value.
      The ``--opt=value`` form is never refused: the value is then explicit.
    """
    params = [p for p in command.get_params(ctx) if isinstance(p, click.Option)]
    names = {name for p in params for name in (*p.opts, *p.secondary_opts)}
    valued = {name for p in params if not p.is_flag and not p.count and p.nargs == 1 for name in p.opts}
    refused: tuple[str, str] | None = None
    i = 0
    while i < len(args):
        word = args[i]
        if word == "--":
            break
        if word == "--json" and word in names:
            remember_json(ctx, ctx.info_name)
        elif word in valued and i + 1 < len(args):
            value = args[i + 1]
            if value in names or (word in ID_OPTIONS and value.startswith("-")):
                refused = refused or (word, value)  # the word is read as what it is, not skipped
            else:
                i += 1
        i += 1
    if refused is not None and not ctx.resilient_parsing:  # shell completion parses what it can
        option, value = refused
        why = "is an option" if value in names else f"looks like an option (give such an id as {option}=…)"
        raise click.BadOptionUsage(option, f"Option '{option}' requires an argument: {value!r} {why}.", ctx)


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
    """Print ``value`` as the invocation's JSON document (so no error document follows it).

    The document is valid UTF-8 JSON, as ``strict_json`` writes it: a text holding bytes that are
    not UTF-8 (the ``--settings`` file's name in an error message) shows each such byte as U+FFFD,
    and a ``not_utf8`` member maps its JSON Pointer to its bytes. stdout writes a lone surrogate
    as its raw byte (``surrogateescape``), which no JSON reader takes."""
    text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    if has_surrogate(text):
        plain = json.loads(json.dumps(value, default=str))  # what ``default`` made, as texts too
        # Only an object has room for ``not_utf8``; a list (``status --all``) holds what MongoDB
        # returned, UTF-8 by then, and is escaped here in case.
        text = dumps(plain, indent=2) if isinstance(plain, dict) else json.dumps(plain, indent=2)
    click.echo(text)
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
    error_document_in(ctx.meta, code, message, exit_code)


def error_document_in(meta: MutableMapping[str, Any], code: str, message: str, exit_code: int) -> None:
    """``error_document`` for the invocation whose ``click.Context.meta`` is ``meta``: where no context
    is current any more (a Ctrl-C as click read the options or closed the command's context)."""
    if not meta.get(_AS_JSON) or meta.get(_PRINTED):
        return
    error = {"code": code, "message": message, "exit_code": exit_code}
    kept = meta.get(_PARTIAL, {})
    echo_json({"command": meta[_COMMAND], "schema": JSON_SCHEMA_VERSION, **kept, "error": error})
    meta[_PRINTED] = True


def _plain(value: object) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_plain(v)}" for k, v in value.items()) or "-"
    if isinstance(value, list | tuple):
        return ", ".join(_plain(v) for v in value) or "-"
    return "-" if value is None else str(value)
