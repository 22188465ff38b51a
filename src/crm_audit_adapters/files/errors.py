"""The files adapters' errors: a line or record that cannot become a value; a write that failed."""

from __future__ import annotations

import os

from crm_audit_transform.errors import CrmAuditError
from crm_audit_transform.loading import JsonbText

__all__ = ["FileChangedWhileRead", "FileFormatError", "FileWriteError", "OutputLocked"]


class FileFormatError(CrmAuditError):
    """A line of an input file is malformed; ``line`` is 1-based (a CSV record's first line).

    ``audit_id`` is set when the line is an audit row whose id could still be read, so a caller
    can report that record as failed (``invalid_audit_row``) instead of losing track of it;
    ``auditable_type`` when its type could be read too (a file source does not count a line of a
    type outside the run's scope, as a database's query never reads such a row).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        line: int,
        message: str,
        *,
        audit_id: int | None = None,
        auditable_type: str | None = None,
    ) -> None:
        super().__init__(f"{os.fspath(path)}, line {line}: {message}")
        self.path = os.fspath(path)
        self.line = line
        self.message = message
        self.audit_id = audit_id
        self.auditable_type = auditable_type


class FileChangedWhileRead(FileFormatError):
    """The input file changed while a run read it (cut short, rewritten, replaced): ``BAD_INPUT``.

    A ``FileFormatError`` like any other, with one difference for whoever kept what the run wrote
    before it: those logs were built from the file as it was, so a run again into the same ``--out``
    would keep them, stale, next to the new file's (docs/files.md, "A file that changes").
    """


class FileWriteError(CrmAuditError):
    """Writing to a local file or to stdout failed (disk full, a closed descriptor): ``FILE_ERROR``.

    Not ``StoreUnavailable``: that says a dependency is down and a retry may succeed, while a full
    disk or a bad ``--out`` needs the operator (docs/runner.md, exit codes). The message names the
    target (the path, or ``<stdout>``); the ``OSError`` is the ``__cause__``.
    """

    code = "FILE_ERROR"


class OutputLocked(CrmAuditError):
    """Another process is writing this log file (it holds the file's ``flock``): ``OUTPUT_LOCKED``.

    Two writers of one file would each read its keys once, then both append every log: the file
    would hold each log twice. The second is refused before it reads or writes anything; run the
    parts of an export one after the other with the same ``--out``, or give each its own file.
    """

    code = "OUTPUT_LOCKED"

    def __init__(self, path: str) -> None:
        super().__init__(
            f"{path} is being written by another process (another dry run with the same --out?):"
            " wait for it to finish, or name another file"
        )
        self.path = path


SHOWN_CHARS = 80
"""The longest text an error message quotes whole; longer is cut to its first 60 characters."""


def cut(text: str) -> str:
    """``text`` for an error message, cut short: one line of a file may hold megabytes in one field."""
    return text if len(text) <= SHOWN_CHARS else f"{text[:60]}… ({len(text)} characters)"


def shown(value: object) -> str:
    """What ``value`` is, for an error message, never what it holds: its type and size
    (``a string of 10 characters``, ``an integer of 4 digits``, ``a list of 2 items``, ``4 bytes, not
    UTF-8 from byte 3``, ``null``).

    Error messages reach the CLI's error line, the HTTP server's log and ``--outcomes`` files, where
    a row's value (a password in ``audited_changes``, a contact's e-mail) must not: the message names
    the row by its position (file, line, audit id, field) and the fault, and the operator reads the
    value in the file itself.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        # str() of an int past 4,300 digits raises (Python's limit): a JSON line may hold one.
        digits = len(str(abs(value))) if value.bit_length() <= 13_000 else "over 3,900"
        return f"an integer of {_counted(digits, 'digit')}"
    if isinstance(value, float):
        return "a number with a fraction or an exponent"
    if isinstance(value, str):
        return f"a string of {_counted(len(value), 'character')}" if value else "an empty string"
    if isinstance(value, bytes | bytearray):
        try:
            bytes(value).decode("utf-8")
        except UnicodeDecodeError as exc:
            return f"{_counted(len(value), 'byte')}, not UTF-8 from byte {exc.start}"
        return _counted(len(value), "byte")
    if isinstance(value, list | tuple):
        return f"a list of {_counted(len(value), 'item')}"
    if isinstance(value, dict):
        return f"an object of {_counted(len(value), 'member')}"
    if isinstance(value, JsonbText):  # a member too deep or of too many values to decode: its text
        kind = {"[": "an array", "{": "an object"}.get(value.text[:1], "a number")
        return f"{kind} of {len(value.text)} characters of JSON, not decoded"
    return f"a value of type {type(value).__name__}"


def _counted(count: int | str, noun: str) -> str:
    return f"1 {noun}" if count == 1 else f"{count} {noun}s"
