"""Audit rows of a JSONL file: the plain line's fast path, and a line too long to hold."""

from __future__ import annotations

import enum
from collections.abc import Callable, Generator, Iterator
from typing import Any, Final, TypeAlias

from crm_audit_transform.domain import AuditRow
from crm_audit_transform.numerals import BIGINT_MAX, BIGINT_MIN

from .audit_fields import record_row
from .errors import FileFormatError
from .lines import (
    LineWindow,
    NotUtf8Names,
    OnError,
    PathLike,
    SetAside,
    json_objects,
    parse_timestamp,
    report,
)
from .long_lines import MEMBER_BYTES, LongMember

LONG_LINE_MEMBERS: Final = frozenset({"tenant", "id"})
"""What a line past ``max_line_bytes`` is read for (``lines.json_objects(keep=…)``): wherever they
lie in the line, each up to 1 MiB (``long_lines``)."""


def too_long_line(
    path: PathLike, tenant: str | None, on_error: OnError | None, max_line_bytes: int
) -> Callable[[int, dict[str, Any]], None]:
    """What a JSONL line longer than ``max_line_bytes`` becomes, from its ``tenant`` and ``id``.

    A line is held whole, so one that long is never read whole: it is read on in blocks for its
    ``tenant`` and ``id`` only (``LONG_LINE_MEMBERS``), wherever they lie. Another tenant's line is
    passed over; a line of this tenant (or naming none, when a tenant is given, as ``record_row``
    reads such a line) with an integer ``id`` is that row's error (``on_error``: the dry run fails
    the row, ``invalid_audit_row``, as a PostgreSQL row past the loader's limits fails alone). A
    line with no integer id (or one outside bigint), or whose tenant cannot be told (not a string,
    not UTF-8, or missing where a member name is not UTF-8), stops the read, as a line short enough
    to hold does (``record_row``).

    A ``tenant`` or ``id`` too long to keep (``long_lines.LongMember``, past ``MEMBER_BYTES`` as
    written) fares as in a line held whole: such a string tenant is not the one given (no tenant's
    text is half that long), so the line is another tenant's, passed over; any other, or an id that
    long (no integer within bigint is), stops the read naming it.
    """
    # The given tenant's text, escaped as it may be, is shorter than any tenant too long to keep.
    short_tenant = (
        tenant is not None and 6 * len(tenant.encode("utf-8", "surrogatepass")) + 2 < MEMBER_BYTES // 2
    )

    def handle(number: int, members: dict[str, Any]) -> None:
        line_tenant = members.get("tenant")
        if tenant is not None and isinstance(line_tenant, str) and line_tenant != tenant:
            return
        why = f"line longer than {max_line_bytes} bytes: a line is read whole, so its row is not read"
        long = f"longer than {MEMBER_BYTES} bytes"
        if line_tenant is LongMember.STRING and short_tenant:
            return  # another tenant's, as when the line is held whole
        if isinstance(line_tenant, LongMember):
            raise FileFormatError(path, number, f"{why} (its tenant is {long}: it cannot be read)")
        if isinstance(members.get("id"), LongMember):
            raise FileFormatError(path, number, f"{why} (its id is {long}: it has no integer id)")
        audit_id = members.get("id")
        if not isinstance(audit_id, int) or isinstance(audit_id, bool):
            audit_id = None
        names = members.names if isinstance(members, NotUtf8Names) else 0
        if isinstance(line_tenant, bytes):
            raise FileFormatError(path, number, f"{why} (its tenant is not UTF-8)")
        if line_tenant is not None and not isinstance(line_tenant, str):
            raise FileFormatError(path, number, f"{why} (its tenant is not a string)")
        if line_tenant is None and tenant is None:
            raise FileFormatError(path, number, f"{why} (it names no tenant and none was given)")
        if line_tenant is None and names:
            # As record_row: such a name may be the tenant's, so the line may be another tenant's.
            raise FileFormatError(
                path,
                number,
                f"{why} (it names no tenant, and {names} member name(s) are not UTF-8: "
                "its tenant cannot be told)",
            )
        if audit_id is None:
            raise FileFormatError(path, number, f"{why} (it has no integer id)")
        if not BIGINT_MIN <= audit_id <= BIGINT_MAX:
            # As record_row: no audits table holds such an id, so it is no row's to fail.
            raise FileFormatError(path, number, f"{why} (its id is outside bigint)")
        report(FileFormatError(path, number, why, audit_id=audit_id), on_error)

    return handle


def audit_objects(
    path: PathLike,
    tenant: str | None,
    on_error: OnError | None,
    max_line_bytes: int,
    window: LineWindow | None = None,
) -> Iterator[tuple[int, dict[str, Any] | SetAside]]:
    """An audits JSONL file's ``(line number, object)`` pairs, a line past ``max_line_bytes`` read
    as ``too_long_line`` says: what both the row reader and the scope pass read (within ``window``,
    when given: ``lines.LineWindow``). Each line handed to ``on_error`` or passed over for its
    length is followed by ``SetAside.LINE`` (``lines.json_objects(marks=True)``)."""
    return json_objects(
        path,
        on_error,
        keep_bytes=True,
        max_line_bytes=max_line_bytes,
        on_long_line=too_long_line(path, tenant, on_error, max_line_bytes),
        keep=LONG_LINE_MEMBERS,
        window=window,
        marks=True,
    )


def jsonl_rows(
    path: PathLike,
    tenant: str | None,
    on_error: OnError | None,
    max_line_bytes: int,
    window: LineWindow | None = None,
) -> Generator[tuple[int, AuditRow | SetAside], None, None]:
    """The rows of an audits JSONL file, each line set aside followed by ``SetAside.LINE``."""
    for number, record in audit_objects(path, tenant, on_error, max_line_bytes, window):
        if record is SetAside.LINE:
            yield number, record
            continue
        plain = plain_jsonl_row(record, tenant)
        if plain is not NotPlain.NOT_PLAIN:
            row = plain
        else:
            try:
                row = record_row(path, number, record, tenant, typed=True, jsonb_changes=False)
            except FileFormatError as error:
                report(error, on_error)
                yield number, SetAside.LINE
                continue
        if row is not None:
            yield number, row


class NotPlain(enum.Enum):
    NOT_PLAIN = enum.auto()


_TEXT: Final = frozenset({str, type(None)})
_ID: Final = frozenset({int, type(None)})
_CHANGES: Final = frozenset({str, dict, type(None)})  # YAML text, a jsonb object, NULL


_PlainColumns: TypeAlias = tuple[
    str, int, str, str, str, Any, Any, Any, Any, Any, Any, Any, Any, Any, Any, Any
]
"""A plain line's columns: tenant, id, auditable_type, action, created_at (text), then the rest."""


def plain_jsonl_columns(record: dict[str, Any], tenant: str | None) -> _PlainColumns | NotPlain | None:
    """A JSONL line's columns when every one has its usual type, None for another tenant's line, or
    ``NOT_PLAIN``.

    An export's lines are almost all like this; it skips ``record_row``'s per-column calls. Anything
    else (a missing tenant, a wrong type, an empty required column, an ``audited_changes`` that is
    neither text nor an object, a member name that is not UTF-8) is ``NOT_PLAIN`` and goes through
    ``record_row``, which words its error.
    """
    get = record.get
    line_tenant = get("tenant")
    if type(line_tenant) is not str or type(record) is not dict:  # not dict: a name not UTF-8
        return NotPlain.NOT_PLAIN
    if tenant is not None and line_tenant != tenant:
        return None
    audit_id, auditable_type, action = get("id"), get("auditable_type"), get("action")
    created_at, user_id, changes = get("created_at"), get("user_id"), get("audited_changes")
    auditable_id, associated_id, version = get("auditable_id"), get("associated_id"), get("version")
    associated_type, user_type, username = get("associated_type"), get("user_type"), get("username")
    comment, remote_address, request_uuid = get("comment"), get("remote_address"), get("request_uuid")
    if (
        type(audit_id) is not int
        or not BIGINT_MIN <= audit_id <= BIGINT_MAX  # record_row refuses it, naming why
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
        return NotPlain.NOT_PLAIN
    return (
        line_tenant, audit_id, auditable_type, action, created_at, changes, auditable_id, associated_id,
        associated_type, user_id, user_type, username, version, comment, remote_address, request_uuid,
    )  # fmt: skip


def plain_jsonl_row(record: dict[str, Any], tenant: str | None) -> AuditRow | NotPlain | None:
    """``record_row`` of a JSONL line whose every column has its usual type, or ``NOT_PLAIN``."""
    columns = plain_jsonl_columns(record, tenant)
    if columns is None or columns is NotPlain.NOT_PLAIN:
        return columns
    (
        line_tenant, audit_id, auditable_type, action, created_at, changes, auditable_id, associated_id,
        associated_type, user_id, user_type, username, version, comment, remote_address, request_uuid,
    ) = columns  # fmt: skip
    try:
        timestamp = parse_timestamp(created_at)
    except ValueError:
        return NotPlain.NOT_PLAIN
    # AuditRow's fields in order, passed by position: a row is built per line, and keywords cost.
    return AuditRow(
        line_tenant, audit_id, auditable_type, auditable_id, action, changes, timestamp, associated_id,
        associated_type, user_id, user_type, username, version, comment, remote_address, request_uuid,
    )  # fmt: skip
