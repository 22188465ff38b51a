"""The tenants an audits file names, read without building its rows."""

from __future__ import annotations

import os

from .audit_formats import FileFormat, format_of
from .errors import FileFormatError
from .lines import PathLike, json_objects
from .psql_csv import LongRecord, csv_records, leading_fields, split_record


def file_tenants(path: PathLike, *, file_format: FileFormat | None = None) -> frozenset[str] | None:
    """The tenants an audits file's rows name, or None when it names none (a psql CSV without a
    ``tenant`` column: its rows are the tenant it was exported from).

    One pass that reads only each row's ``tenant``; a line or record that cannot be read is passed
    over (reading the rows reports it). For telling a mistyped ``--tenant`` from a tenant without rows.
    """
    chosen = format_of(path, file_format)
    found: set[str] = set()

    def add(tenant: object) -> None:
        if isinstance(tenant, str):
            found.add(tenant)

    if chosen == "jsonl":
        # A line too long to hold is read for its tenant only, wherever it lies (long_lines).
        objects = json_objects(
            path,
            lambda _error: None,
            on_long_line=lambda _, members: add(members.get("tenant")),
            keep=frozenset({"tenant"}),
        )
        for _, record in objects:
            add(record.get("tenant"))
        return frozenset(found)
    if chosen != "csv":
        raise ValueError(f"cannot tell the format of {os.fspath(path)!r}: pass file_format='jsonl' or 'csv'")
    column = -1  # the tenant column, once the header is read

    def add_long(_: int, record: LongRecord) -> None:  # its head's fields (psql_csv.leading_fields)
        if 0 <= column < len(fields := leading_fields(record.head)):
            add(fields[column])

    records = csv_records(path, on_long=add_long)
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
        if column < len(fields):
            add(fields[column])
    return frozenset(found)
