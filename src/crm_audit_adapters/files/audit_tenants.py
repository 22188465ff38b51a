"""The tenants an audits file names, read without building its rows."""

from __future__ import annotations

import os

from .audit_formats import FileFormat, format_of
from .errors import FileFormatError
from .lines import PathLike, json_objects
from .psql_csv import csv_records, split_record


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
