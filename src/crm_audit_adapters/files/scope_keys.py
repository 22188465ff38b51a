"""What a pass over an audits file's scope reads of each row: its id, type and time."""

from __future__ import annotations

import datetime as dt
from collections.abc import Generator, Iterator
from typing import Any, NamedTuple

from crm_audit_transform.domain import AuditRow, UnreadableTime
from crm_audit_transform.loading import JsonbText

from .audit_fields import record_row
from .audit_formats import FileFormat, format_of
from .audit_jsonl import NotPlain, audit_objects, plain_jsonl_columns
from .audit_rows import numbered_audit_rows
from .errors import FileFormatError
from .lines import (
    LineWindow,
    OnError,
    PathLike,
    SetAside,
    fast_object,
    lines_from_end,
    parse_timestamp,
    report,
)
from .psql_csv import DEFAULT_MAX_RECORD_BYTES


class ScopeKeys(NamedTuple):
    """What a pass over the scope reads of a row: its id, auditable_type and created_at, and the
    bytes of text its row holds (``text_bytes``: what a page's byte budget counts)."""

    id: int
    auditable_type: str
    created_at: dt.datetime | UnreadableTime | None
    size: int = 0


def text_bytes(changes: Any, comment: str | bytes | None) -> int:
    """What a row holds in text (a page's byte budget, ``FileAuditSource``): its ``audited_changes``
    (text, bytes or jsonb text) and comment, by length. A jsonb object decoded from a JSONL line is
    not measured (each line is capped, 64 MiB)."""
    size = len(comment) if comment else 0
    if isinstance(changes, str | bytes):
        return size + len(changes)
    return size + len(changes.text) if isinstance(changes, JsonbText) else size


def row_keys(row: AuditRow) -> ScopeKeys:
    """A row's ``ScopeKeys``."""
    return ScopeKeys(row.id, row.auditable_type, row.created_at, text_bytes(row.audited_changes, row.comment))


def numbered_scope_keys(
    path: PathLike,
    tenant: str | None = None,
    *,
    file_format: FileFormat | None = None,
    jsonb_changes: bool = False,
    on_error: OnError | None = None,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    window: LineWindow | None = None,
) -> Generator[tuple[int, ScopeKeys | SetAside], None, None]:
    """``numbered_audit_rows``'s rows as ``ScopeKeys``: the same rows, errors and ``SetAside`` marks.

    A plain JSONL line (``plain_jsonl_columns``) gives its keys without an ``AuditRow``; its
    ``audited_changes`` is not looked at beyond its type. Any other line, and every CSV record,
    goes the way of ``numbered_audit_rows``. A scope pass reads the whole file before a run: this is
    a third cheaper than building every row. ``window``: as ``numbered_audit_rows``'s.
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
            window=window,
        )
        for number, found in rows:
            yield number, (found if found is SetAside.LINE else row_keys(found))
        return
    for number, record in audit_objects(path, tenant, on_error, max_record_bytes, window):
        if record is SetAside.LINE:
            yield number, record
            continue
        columns = plain_jsonl_columns(record, tenant)
        if columns is None:
            continue
        if columns is not NotPlain.NOT_PLAIN:
            try:
                timestamp = parse_timestamp(columns[4])
            except ValueError:
                pass  # record_row words the error
            else:
                size = text_bytes(columns[5], columns[13])
                yield number, ScopeKeys(columns[1], columns[2], timestamp, size)
                continue
        try:
            row = record_row(path, number, record, tenant, typed=True, jsonb_changes=False)
        except FileFormatError as error:
            report(error, on_error)
            yield number, SetAside.LINE
            continue
        if row is not None:
            yield number, row_keys(row)


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
        columns = None if record is None else plain_jsonl_columns(record, tenant)
        if columns is None and record is not None:
            continue  # another tenant's line
        if columns is None or columns is NotPlain.NOT_PLAIN:
            yield None
            return
        try:
            timestamp = parse_timestamp(columns[4])
        except ValueError:
            yield None
            return
        yield ScopeKeys(columns[1], columns[2], timestamp)
