"""One audit row from a line's columns: JSON's typed values or CSV's text, checked one by one."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from crm_audit_transform.domain import AuditRow, UserId
from crm_audit_transform.loading import JsonbText
from crm_audit_transform.numerals import BIGINT_MAX, BIGINT_MIN, is_int_text, parse_int

from .errors import FileFormatError, shown
from .lines import NotUtf8Names, PathLike, TimeOutOfRange, parse_timestamp, too_many_values


class _Bad(Exception):
    pass


def record_row(
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
    auditable_type: str | None = None
    try:
        line_tenant = _text(record, "tenant")
        # Member names that are not UTF-8 (a JSONL line's): one of them may be any column.
        names = record.names if isinstance(record, NotUtf8Names) else 0
        if tenant is not None and line_tenant is not None and line_tenant != tenant:
            return None
        if line_tenant is None and tenant is None:
            raise _Bad("tenant is missing: the line names none and none was given")
        if line_tenant is None and names:
            # Not this row's failure: the line may be another tenant's, so the read stops.
            raise _Bad(
                f"tenant is missing, and {names} member name(s) are not UTF-8: its tenant cannot be told"
            )
        found = _integer(record, "id", typed)
        if found is None:
            raise _Bad("id is missing")
        if not BIGINT_MIN <= found <= BIGINT_MAX:
            # Not this id's failure: no audits table holds it, so the read stops (audit_id unset).
            raise _Bad(f"id {found} is outside bigint, the type of audited's audits.id")
        audit_id = found
        auditable_type = _text(record, "auditable_type")
        if names:  # the row's failure (invalid_audit_row): read without it, a column would be lost
            raise _Bad(f"{names} member name(s) are not UTF-8: which columns they are cannot be told")
        action, created_at = _text(record, "action"), _text(record, "created_at")
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
        why = str(bad)
    # Raised here, not in the handler: there the handler's frame holds ``bad`` and ``bad`` the frame
    # (its traceback), a cycle the error would keep alive, with the line's record, until a collector
    # pass; a run of such lines under the run loop's collector settings piled them up (collector).
    raise FileFormatError(path, number, why, audit_id=audit_id, auditable_type=auditable_type or None)


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
    """``errors.shown``: what ``value`` is, never what it holds; a jsonb value as its text's."""
    return shown(value)


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
    if value.lstrip().startswith("{") and too_many_values(value):
        return JsonbText(value)  # decoded, ~60 bytes a value: the loader refuses it by max_nodes first
    try:
        decoded = json.loads(value)
    except json.JSONDecodeError as exc:
        raise _Bad(f"audited_changes is not JSON: {exc.msg}") from None
    except (RecursionError, ValueError):  # too deep, or an integer past Python's 4,300 digits:
        return JsonbText(value)  # the loader decodes it under its limits and fails this row alone
    return decoded if isinstance(decoded, dict) else str(value)
