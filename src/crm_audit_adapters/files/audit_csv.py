"""Audit rows of psql's CSV export of an ``audits`` table: a header, then one record a row."""

from __future__ import annotations

from collections.abc import Generator
from typing import Final

from crm_audit_transform.domain import AuditRow

from .audit_fields import record_row
from .errors import FileFormatError
from .lines import OnError, PathLike, report
from .psql_csv import csv_records, split_record, split_record_keeping_bytes

_REQUIRED_COLUMNS: Final = frozenset({"id", "auditable_type", "action", "created_at"})


def csv_rows_of(
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
            row = record_row(path, number, record, tenant, typed=False, jsonb_changes=jsonb_changes)
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
