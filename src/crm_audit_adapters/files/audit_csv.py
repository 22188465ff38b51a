"""Audit rows of psql's CSV export of an ``audits`` table: a header, then one record a row."""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Final

from crm_audit_transform.domain import AuditRow
from crm_audit_transform.numerals import parse_int

from .audit_fields import record_row
from .errors import FileFormatError
from .lines import OnError, PathLike, SetAside, report
from .psql_csv import LongRecord, csv_records, leading_fields, split_record, split_record_keeping_bytes

_REQUIRED_COLUMNS: Final = frozenset({"id", "auditable_type", "action", "created_at"})


def csv_rows_of(
    path: PathLike,
    tenant: str | None,
    jsonb_changes: bool,
    on_error: OnError | None,
    max_record_bytes: int,
) -> Generator[tuple[int, AuditRow | SetAside], None, None]:
    """The rows of a psql CSV export, each record set aside followed by ``SetAside.LINE`` (a record
    too long to hold is not: it holds at least ``max_record_bytes``)."""
    read: list[list[str]] = []  # the header, once read
    too_long = _too_long(path, tenant, on_error, max_record_bytes, read)
    records = csv_records(path, max_record_bytes, on_long=too_long)
    header = _header(path, next(records, None), tenant)
    read.append(header)
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
            yield number, SetAside.LINE
            continue
        if row is not None:
            yield number, row


def _too_long(
    path: PathLike, tenant: str | None, on_error: OnError | None, max_record_bytes: int, read: list[list[str]]
) -> Callable[[int, LongRecord], None]:
    """What a record longer than ``max_record_bytes`` becomes (``csv_records(on_long=…)``), from the
    fields its head holds; ``read`` holds the header once it is read.

    A record is held whole, so one that long is never read (it holds an ``audited_changes`` past
    the loader's 32 MiB, or an unbalanced quote joined records). When it is one well-formed record
    of the header's field count whose head gives its ``id`` (and its ``tenant``, when the file has
    that column), it is that row's error (``on_error``: the dry run fails the row,
    ``invalid_audit_row``, as a PostgreSQL row past the loader's limits fails alone); another
    tenant's record is passed over. Any other stops the read: it may be several records an
    unbalanced quote joined, or its id or tenant lies past its long value, so it cannot be counted
    nor told this tenant's from another's.
    """

    def handle(number: int, record: LongRecord) -> None:
        why = f"record longer than {max_record_bytes} bytes: a record is read whole, so its row is not read"
        if not read:
            raise FileFormatError(path, number, f"header longer than {max_record_bytes} bytes: not a header")
        header = read[0]
        if not record.well_formed or record.fields != len(header):
            shape = f"{record.fields} fields" + ("" if record.well_formed else ", not well-formed")
            raise FileFormatError(
                path,
                number,
                f"{why}; it is not one record of {len(header)} fields ({shape}: an unbalanced quote?)",
            )
        known = dict(zip(header, leading_fields(record.head), strict=False))
        if "tenant" in header and "tenant" not in known:
            raise FileFormatError(path, number, f"{why} (its tenant comes after the long value)")
        line_tenant = known.get("tenant")
        if tenant is not None and line_tenant is not None and line_tenant != tenant:
            return
        try:
            audit_id = parse_int(known["id"] or "")
        except (KeyError, ValueError):
            raise FileFormatError(path, number, f"{why} (no id before the long value)") from None
        report(FileFormatError(path, number, why, audit_id=audit_id), on_error)

    return handle


def _header(path: PathLike, first: tuple[int, bytes] | None, tenant: str | None) -> list[str]:
    if first is None:
        raise FileFormatError(path, 1, "empty file: expected a header line")
    names = split_record(path, *first)
    if any(name is None for name in names):
        raise FileFormatError(path, first[0], "the header has an empty column name")
    header = [str(name) for name in names]
    if len(set(header)) < len(header):
        # A record would be read by its last such column, as dict(zip(…)) keeps it: which of them is
        # the column cannot be told (no table's SELECT * names one twice; a join's may).
        twice = sorted({name for name in header if header.count(name) > 1})
        raise FileFormatError(path, first[0], f"the header names {', '.join(twice)} more than once")
    missing = (_REQUIRED_COLUMNS | {"audited_changes"}) - set(header)
    if missing:
        raise FileFormatError(path, first[0], f"the header lacks {', '.join(sorted(missing))}")
    if tenant is None and "tenant" not in header:
        raise FileFormatError(path, first[0], "no tenant column: pass the tenant the file was exported from")
    return header
