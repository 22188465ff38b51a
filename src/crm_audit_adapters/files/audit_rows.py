"""Audit rows streamed from a JSONL or CSV file, each with its line number."""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator

from crm_audit_transform.domain import AuditRow

from .audit_csv import csv_rows_of
from .audit_formats import FileFormat, format_of
from .audit_jsonl import jsonl_rows
from .lines import LineWindow, OnError, PathLike, SetAside
from .psql_csv import DEFAULT_MAX_RECORD_BYTES


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
    return (row for _, row in numbered if row is not SetAside.LINE)


def numbered_audit_rows(
    path: PathLike,
    tenant: str | None = None,
    *,
    file_format: FileFormat | None = None,
    jsonb_changes: bool = False,
    on_error: OnError | None = None,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    window: LineWindow | None = None,
) -> Generator[tuple[int, AuditRow | SetAside], None, None]:
    """``read_audit_rows`` with each row's (first) line number, for errors that name the line, and
    ``(its number, SetAside.LINE)`` after each line handed to ``on_error`` or passed over for its
    length (``lines.SetAside``): a reader's caller gets control back in a run of such lines.

    ``window`` (JSONL only: a CSV record may span lines, and its columns are named by the header)
    reads the lines within it (``lines.LineWindow``)."""
    chosen = format_of(path, file_format)
    if chosen == "jsonl":
        return jsonl_rows(path, tenant, on_error, max_record_bytes, window)
    if window is not None:
        raise ValueError("a window of lines is read from a JSONL file only")
    if chosen == "csv":
        return csv_rows_of(path, tenant, jsonb_changes, on_error, max_record_bytes)
    raise ValueError(f"cannot tell the format of {os.fspath(path)!r}: pass file_format='jsonl' or 'csv'")
