"""Audit rows from files: the corpus's JSONL, and psql's CSV of an ``audits`` table.

CSV is what ``psql \\copy (SELECT * FROM audits) TO f csv header`` (or ``COPY … TO STDOUT (FORMAT csv,
HEADER)``) writes: no tenant column, NULL as an empty unquoted field, timestamps in UTC.

Rows are streamed one line (one CSV record) at a time. ``audited_changes`` stays raw — YAML text,
or the decoded object of a jsonb column — so a value that cannot be loaded becomes that row's
failure in the transformer, not an error here. A line that cannot become an ``AuditRow`` at all
(not JSON, a missing id, a bad timestamp) raises ``FileFormatError`` naming its line, or goes to
``on_error`` when one is given; it is never dropped silently. A value that is not UTF-8 comes as its
``bytes``, as psycopg gives it from a ``SQL_ASCII`` database, so it fails that row alone (in the
loader for ``audited_changes``, here with the row's id for another column).
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import os
from collections.abc import Callable, Generator, Iterator, Mapping
from typing import Any, Final, Literal, NamedTuple, TypeAlias

from crm_audit_transform.domain import AuditRow, UnreadableTime, UserId
from crm_audit_transform.loading import JsonbText
from crm_audit_transform.numerals import is_int_text, parse_int

from .errors import FileFormatError
from .lines import (
    OnError,
    PathLike,
    TimeOutOfRange,
    fast_object,
    json_objects,
    lines_from_end,
    parse_timestamp,
    report,
)
from .psql_csv import DEFAULT_MAX_RECORD_BYTES, csv_records, split_record, split_record_keeping_bytes

__all__ = [
    "AUDIT_COLUMNS",
    "FileFormat",
    "ScopeKeys",
    "file_tenants",
    "format_of",
    "numbered_audit_rows",
    "numbered_scope_keys",
    "read_audit_rows",
    "scope_keys_from_end",
]

FileFormat = Literal["jsonl", "csv"]

AUDIT_COLUMNS: Final = (
    "id",
    "auditable_id",
    "auditable_type",
    "associated_id",
    "associated_type",
    "user_id",
    "user_type",
    "username",
    "action",
    "audited_changes",
    "version",
    "comment",
    "remote_address",
    "request_uuid",
    "created_at",
)
"""The columns of audited 5.8.0's ``audits`` table, in table order (what ``SELECT *`` gives)."""

_REQUIRED_COLUMNS: Final = frozenset({"id", "auditable_type", "action", "created_at"})
_SUFFIXES: Final[Mapping[str, FileFormat]] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
}


def format_of(path: PathLike, file_format: FileFormat | None = None) -> FileFormat | None:
    """``file_format`` when given, else the format the file's suffix names, else None."""
    return file_format or _SUFFIXES.get(os.path.splitext(os.fspath(path))[1].lower())


def read_audit_rows(
    path: PathLike,
    tenant: str | None = None,
    *,
    file_format: FileFormat | None = None,
    jsonb_changes: bool = False,
    on_error: OnError | None = None,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
) -> Iterator[AuditRow]:
    """Stream the audit rows of a JSONL or CSV file (format from the suffix unless given).

    ``tenant``: JSONL lines carry their own ``tenant``; given one, only that tenant's rows are read.
    psql's CSV has no tenant column, so ``tenant`` is required there (unless the file has one).
    ``jsonb_changes``: the CSV came from a jsonb ``audited_changes`` column (JSON text per field).
    """
    numbered = numbered_audit_rows(
        path,
        tenant,
        file_format=file_format,
        jsonb_changes=jsonb_changes,
        on_error=on_error,
        max_record_bytes=max_record_bytes,
    )
    return (row for _, row in numbered)


def numbered_audit_rows(
    path: PathLike,
    tenant: str | None = None,
    *,
    file_format: FileFormat | None = None,
    jsonb_changes: bool = False,
    on_error: OnError | None = None,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
) -> Generator[tuple[int, AuditRow], None, None]:
    """``read_audit_rows`` with each row's (first) line number, for errors that name the line."""
    chosen = format_of(path, file_format)
    if chosen == "jsonl":
        return _jsonl_rows(path, tenant, on_error, max_record_bytes)
    if chosen == "csv":
        return _csv_rows(path, tenant, jsonb_changes, on_error, max_record_bytes)
    raise ValueError(f"cannot tell the format of {os.fspath(path)!r}: pass file_format='jsonl' or 'csv'")


def _too_long(
    path: PathLike, tenant: str | None, on_error: OnError | None, max_line_bytes: int
) -> Callable[[int, dict[str, Any]], None]:
    """What a JSONL line longer than ``max_line_bytes`` becomes, from the members its head holds.

    A line is held whole, so one that long is never read: another tenant's line is passed over; a
    line whose ``id`` and ``tenant`` its head gives is that row's error (``on_error``: the dry run
    fails the row, ``invalid_audit_row``, as a PostgreSQL row past the loader's limits fails alone);
    a line whose id or tenant lies past its head stops the read, as any line with no readable id
    does: it cannot be told this tenant's row from another tenant's (whose ids overlap).
    """

    def handle(number: int, members: dict[str, Any]) -> None:
        line_tenant = members.get("tenant")
        if tenant is not None and isinstance(line_tenant, str) and line_tenant != tenant:
            return
        audit_id = members.get("id")
        if not isinstance(audit_id, int) or isinstance(audit_id, bool):
            audit_id = None
        why = f"line longer than {max_line_bytes} bytes: a line is read whole, so its row is not read"
        if audit_id is not None and line_tenant is None:
            why += " (its tenant comes after the long value: put tenant and id first)"
        error = FileFormatError(path, number, why, audit_id=audit_id)
        if audit_id is None or line_tenant is None:
            raise error
        report(error, on_error)

    return handle


def _jsonl_rows(
    path: PathLike, tenant: str | None, on_error: OnError | None, max_line_bytes: int
) -> Generator[tuple[int, AuditRow], None, None]:
    too_long = _too_long(path, tenant, on_error, max_line_bytes)
    objects = json_objects(
        path, on_error, keep_bytes=True, max_line_bytes=max_line_bytes, on_long_line=too_long
    )
    for number, record in objects:
        plain = _plain_jsonl_row(record, tenant)
        if plain is not _NotPlain.NOT_PLAIN:
            row = plain
        else:
            try:
                row = _row(path, number, record, tenant, typed=True, jsonb_changes=False)
            except FileFormatError as error:
                report(error, on_error)
                continue
        if row is not None:
            yield number, row


class _NotPlain(enum.Enum):
    NOT_PLAIN = enum.auto()


_TEXT: Final = frozenset({str, type(None)})
_ID: Final = frozenset({int, type(None)})
_CHANGES: Final = frozenset({str, dict, type(None)})  # YAML text, a jsonb object, NULL


_PlainColumns: TypeAlias = tuple[
    str, int, str, str, str, Any, Any, Any, Any, Any, Any, Any, Any, Any, Any, Any
]
"""A plain line's columns: tenant, id, auditable_type, action, created_at (text), then the rest."""


def _plain_jsonl_columns(record: dict[str, Any], tenant: str | None) -> _PlainColumns | _NotPlain | None:
    """A JSONL line's columns when every one has its usual type, None for another tenant's line, or
    ``NOT_PLAIN``.

    An export's lines are almost all like this; it skips ``_row``'s per-column calls. Anything
    else (a missing tenant, a wrong type, an empty required column, an ``audited_changes`` that is
    neither text nor an object) is ``NOT_PLAIN`` and goes through ``_row``, which words its error.
    """
    get = record.get
    line_tenant = get("tenant")
    if type(line_tenant) is not str:
        return _NotPlain.NOT_PLAIN
    if tenant is not None and line_tenant != tenant:
        return None
    audit_id, auditable_type, action = get("id"), get("auditable_type"), get("action")
    created_at, user_id, changes = get("created_at"), get("user_id"), get("audited_changes")
    auditable_id, associated_id, version = get("auditable_id"), get("associated_id"), get("version")
    associated_type, user_type, username = get("associated_type"), get("user_type"), get("username")
    comment, remote_address, request_uuid = get("comment"), get("remote_address"), get("request_uuid")
    if (
        type(audit_id) is not int
        or type(auditable_type) is not str
        or type(action) is not str
        or type(created_at) is not str
        or not auditable_type
        or not action
        or not created_at
        or type(changes) not in _CHANGES
        or type(auditable_id) not in _ID
        or type(associated_id) not in _ID
        or type(version) not in _ID
        or not (type(user_id) in _ID or (type(user_id) is str and user_id))
        or type(associated_type) not in _TEXT
        or type(user_type) not in _TEXT
        or type(username) not in _TEXT
        or type(comment) not in _TEXT
        or type(remote_address) not in _TEXT
        or type(request_uuid) not in _TEXT
    ):
        return _NotPlain.NOT_PLAIN
    return (
        line_tenant, audit_id, auditable_type, action, created_at, changes, auditable_id, associated_id,
        associated_type, user_id, user_type, username, version, comment, remote_address, request_uuid,
    )  # fmt: skip


def _plain_jsonl_row(record: dict[str, Any], tenant: str | None) -> AuditRow | _NotPlain | None:
    """``_row`` of a JSONL line whose every column has its usual type, or ``NOT_PLAIN``."""
    columns = _plain_jsonl_columns(record, tenant)
    if columns is None or columns is _NotPlain.NOT_PLAIN:
        return columns
    (
        line_tenant, audit_id, auditable_type, action, created_at, changes, auditable_id, associated_id,
        associated_type, user_id, user_type, username, version, comment, remote_address, request_uuid,
    ) = columns  # fmt: skip
    try:
        timestamp = parse_timestamp(created_at)
    except ValueError:
        return _NotPlain.NOT_PLAIN
    # AuditRow's fields in order, passed by position: a row is built per line, and keywords cost.
    return AuditRow(
        line_tenant, audit_id, auditable_type, auditable_id, action, changes, timestamp, associated_id,
        associated_type, user_id, user_type, username, version, comment, remote_address, request_uuid,
    )  # fmt: skip


def file_tenants(path: PathLike, *, file_format: FileFormat | None = None) -> frozenset[str] | None:
    """The tenants an audits file's rows name, or None when it names none (a psql CSV without a
    ``tenant`` column: its rows are the tenant it was exported from).

    One pass that reads only each row's ``tenant``; a line or record that cannot be read is passed
    over (reading the rows reports it). For telling a mistyped ``--tenant`` from a tenant without rows.
    """
    chosen = format_of(path, file_format)
    found: set[str] = set()
    if chosen == "jsonl":
        for _, record in json_objects(path, lambda _error: None):
            if isinstance(tenant := record.get("tenant"), str):
                found.add(tenant)
        return frozenset(found)
    if chosen != "csv":
        raise ValueError(f"cannot tell the format of {os.fspath(path)!r}: pass file_format='jsonl' or 'csv'")
    records = csv_records(path)
    first = next(records, None)
    header = [] if first is None else split_record(path, *first)
    if "tenant" not in header:
        return None
    column = header.index("tenant")
    for number, raw in records:
        try:
            fields = split_record(path, number, raw)
        except FileFormatError:
            continue
        if column < len(fields) and (tenant := fields[column]) is not None:
            found.add(tenant)
    return frozenset(found)


class ScopeKeys(NamedTuple):
    """What a pass over the scope reads of a row: its id, auditable_type and created_at."""

    id: int
    auditable_type: str
    created_at: dt.datetime | UnreadableTime | None


def numbered_scope_keys(
    path: PathLike,
    tenant: str | None = None,
    *,
    file_format: FileFormat | None = None,
    jsonb_changes: bool = False,
    on_error: OnError | None = None,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
) -> Generator[tuple[int, ScopeKeys], None, None]:
    """``numbered_audit_rows``'s rows as ``ScopeKeys``: the same rows, and the same errors.

    A plain JSONL line (``_plain_jsonl_columns``) gives its keys without an ``AuditRow``; its
    ``audited_changes`` is not looked at beyond its type. Any other line, and every CSV record,
    goes the way of ``numbered_audit_rows``. A scope pass reads the whole file before a run: this is
    a third cheaper than building every row.
    """
    chosen = format_of(path, file_format)
    if chosen != "jsonl":
        rows = numbered_audit_rows(
            path,
            tenant,
            file_format=file_format,
            jsonb_changes=jsonb_changes,
            on_error=on_error,
            max_record_bytes=max_record_bytes,
        )
        for number, found in rows:
            yield number, ScopeKeys(found.id, found.auditable_type, found.created_at)
        return
    too_long = _too_long(path, tenant, on_error, max_record_bytes)
    objects = json_objects(
        path, on_error, keep_bytes=True, max_line_bytes=max_record_bytes, on_long_line=too_long
    )
    for number, record in objects:
        columns = _plain_jsonl_columns(record, tenant)
        if columns is None:
            continue
        if columns is not _NotPlain.NOT_PLAIN:
            try:
                timestamp = parse_timestamp(columns[4])
            except ValueError:
                pass  # _row words the error
            else:
                yield number, ScopeKeys(columns[1], columns[2], timestamp)
                continue
        try:
            row = _row(path, number, record, tenant, typed=True, jsonb_changes=False)
        except FileFormatError as error:
            report(error, on_error)
            continue
        if row is not None:
            yield number, ScopeKeys(row.id, row.auditable_type, row.created_at)


def scope_keys_from_end(path: PathLike, tenant: str | None = None) -> Iterator[ScopeKeys | None]:
    """A JSONL file's rows (of ``tenant``) as ``ScopeKeys``, from its last line back.

    Only plain lines (every column of its usual type, ``created_at`` readable) are read this way.
    At the first line that is not one, ``None`` is given and the caller should stop: whether that
    line is a row or an error, and how it is worded, is for a forward read (``numbered_scope_keys``)
    to say. Ids are not checked for order here; the forward read does that.
    """
    for raw in lines_from_end(path):
        if not raw.strip():
            continue  # the newline ending the file, or a blank line
        record = fast_object(raw)
        columns = None if record is None else _plain_jsonl_columns(record, tenant)
        if columns is None and record is not None:
            continue  # another tenant's line
        if columns is None or columns is _NotPlain.NOT_PLAIN:
            yield None
            return
        try:
            timestamp = parse_timestamp(columns[4])
        except ValueError:
            yield None
            return
        yield ScopeKeys(columns[1], columns[2], timestamp)


def _csv_rows(
    path: PathLike,
    tenant: str | None,
    jsonb_changes: bool,
    on_error: OnError | None,
    max_record_bytes: int,
) -> Generator[tuple[int, AuditRow], None, None]:
    records = csv_records(path, max_record_bytes)
    header = _header(path, next(records, None), tenant)
    for number, raw in records:
        try:
            fields = split_record_keeping_bytes(path, number, raw)
            if len(fields) != len(header):
                message = f"{len(fields)} fields where the header has {len(header)}"
                raise FileFormatError(path, number, message)
            record = dict(zip(header, fields, strict=True))
            row = _row(path, number, record, tenant, typed=False, jsonb_changes=jsonb_changes)
        except FileFormatError as error:
            report(error, on_error)
            continue
        if row is not None:
            yield number, row


def _header(path: PathLike, first: tuple[int, bytes] | None, tenant: str | None) -> list[str]:
    if first is None:
        raise FileFormatError(path, 1, "empty file: expected a header line")
    names = split_record(path, *first)
    if any(name is None for name in names):
        raise FileFormatError(path, first[0], "the header has an empty column name")
    header = [str(name) for name in names]
    missing = (_REQUIRED_COLUMNS | {"audited_changes"}) - set(header)
    if missing:
        raise FileFormatError(path, first[0], f"the header lacks {', '.join(sorted(missing))}")
    if tenant is None and "tenant" not in header:
        raise FileFormatError(path, first[0], "no tenant column: pass the tenant the file was exported from")
    return header


class _Bad(Exception):
    pass


def _row(
    path: PathLike,
    number: int,
    record: Mapping[str, Any],
    tenant: str | None,
    *,
    typed: bool,
    jsonb_changes: bool,
) -> AuditRow | None:
    """The row of one line; None when it belongs to another tenant. ``typed``: JSON, else CSV text."""
    audit_id: int | None = None
    try:
        line_tenant = _text(record, "tenant")
        if tenant is not None and line_tenant is not None and line_tenant != tenant:
            return None
        if line_tenant is None and tenant is None:
            raise _Bad("tenant is missing: the line names none and none was given")
        audit_id = _integer(record, "id", typed)
        if audit_id is None:
            raise _Bad("id is missing")
        auditable_type, action = _text(record, "auditable_type"), _text(record, "action")
        created_at = _text(record, "created_at")
        if not auditable_type or not action or created_at == "":
            raise _Bad("auditable_type and action are required, and created_at may not be empty")
        try:
            # NULL (CSV's empty unquoted field, JSON null) is the row's own outcome: missing_created_at.
            timestamp = None if created_at is None else parse_timestamp(created_at)
        except TimeOutOfRange as exc:
            raise _Bad(str(exc)) from None
        except ValueError:
            raise _Bad(f"created_at is not a timestamp: {_shown(created_at)}") from None
        return AuditRow(
            tenant=line_tenant if line_tenant is not None else str(tenant),
            id=audit_id,
            auditable_type=auditable_type,
            auditable_id=_integer(record, "auditable_id", typed),
            action=action,
            audited_changes=_changes(record.get("audited_changes"), typed, jsonb_changes),
            created_at=timestamp,
            associated_id=_integer(record, "associated_id", typed),
            associated_type=_text(record, "associated_type"),
            user_id=_user_id(record, typed),
            user_type=_text(record, "user_type"),
            username=_text(record, "username"),
            version=_integer(record, "version", typed),
            comment=_text(record, "comment"),
            remote_address=_text(record, "remote_address"),
            request_uuid=_text(record, "request_uuid"),
        )
    except _Bad as bad:
        raise FileFormatError(path, number, str(bad), audit_id=audit_id) from None


def _integer(record: Mapping[str, Any], name: str, typed: bool) -> int | None:
    value = record.get(name)
    if value is None:
        return None
    if typed:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(value, str):
        try:
            return parse_int(value)  # strict: "1_0_0_1" and Arabic-Indic digits are not ids
        except ValueError:
            pass
    raise _Bad(f"{name} is not an integer: {_shown(value)}")


def _user_id(record: Mapping[str, Any], typed: bool) -> UserId | None:
    """An integer, or an opaque non-empty string (a UUID); CSV text of plain digits is an integer."""
    value = record.get("user_id")
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value:
        return parse_int(value) if not typed and is_int_text(value) else value
    raise _Bad(f"user_id is not an integer or a string: {_shown(value)}")


def _text(record: Mapping[str, Any], name: str) -> str | None:
    value = record.get(name)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bytes):
        raise _Bad(f"{name} is not UTF-8: {_shown(value)}")
    raise _Bad(f"{name} is not a string: {_shown(value)}")


def _shown(value: object) -> str:
    """``repr(value)`` for an error message, cut short: a line may hold megabytes in one column."""
    text = repr(value.text) if isinstance(value, JsonbText) else repr(value)
    return text if len(text) <= 80 else f"{text[:60]}… ({len(text)} characters)"


def _changes(
    value: Any, typed: bool, jsonb_changes: bool
) -> str | bytes | Mapping[str, Any] | JsonbText | None:
    """The raw column: YAML text, a jsonb object, or None; ``bytes`` when its text is not UTF-8.

    A jsonb value that is not an object (an array, a number) is handed on as its JSON text, which
    the YAML loader reads as that same non-mapping and reports as the row's failure. Bytes that are
    not UTF-8 are handed on as they are: the loader fails the row (``bad_encoding``), as it fails
    the same value read from a ``SQL_ASCII`` database.
    """
    if value is None or isinstance(value, dict | JsonbText | bytes):
        return value  # JsonbText: nested past json's recursion, decoded by the loader under its limits
    if typed:
        return value if isinstance(value, str) else json.dumps(value)
    if not jsonb_changes:
        return str(value)
    try:
        decoded = json.loads(value)
    except json.JSONDecodeError as exc:
        raise _Bad(f"audited_changes is not JSON: {exc.msg}") from None
    except (RecursionError, ValueError):  # too deep, or an integer past Python's 4,300 digits:
        return JsonbText(value)  # the loader decodes it under its limits and fails this row alone
    return decoded if isinstance(decoded, dict) else str(value)
