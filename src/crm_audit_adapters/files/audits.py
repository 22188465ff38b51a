"""Audit rows from files: the corpus's JSONL, and psql's CSV of an ``audits`` table.

CSV is what ``psql \\copy (SELECT * FROM audits) TO f csv header`` (or ``COPY … TO STDOUT (FORMAT csv,
HEADER)``) writes: no tenant column, NULL as an empty unquoted field, timestamps in UTC.

Rows are streamed one line (one CSV record) at a time. ``audited_changes`` stays raw — YAML text,
or the decoded object of a jsonb column — so a value that cannot be loaded becomes that row's
failure in the transformer, not an error here. A line that cannot become an ``AuditRow`` at all
(not JSON, a missing id, a bad timestamp) raises ``FileFormatError`` naming its line, or goes to
``on_error`` when one is given (the numbered readers then give ``SetAside.LINE`` after it, so a
run of such lines hands control back line by line); it is never dropped silently. A value that is
not UTF-8 comes as its ``bytes``, as psycopg gives it from a ``SQL_ASCII`` database, so it fails
that row alone (in the loader for ``audited_changes``, here with the row's id for another column).
"""

from __future__ import annotations

from .audit_formats import AUDIT_COLUMNS, FileFormat, format_of
from .audit_rows import numbered_audit_rows, read_audit_rows
from .audit_tenants import file_tenants
from .lines import SetAside
from .scope_keys import ScopeKeys, numbered_scope_keys, scope_keys_from_end

__all__ = [
    "AUDIT_COLUMNS",
    "FileFormat",
    "ScopeKeys",
    "SetAside",
    "file_tenants",
    "format_of",
    "numbered_audit_rows",
    "numbered_scope_keys",
    "read_audit_rows",
    "scope_keys_from_end",
]
