"""Files in and out, for dry runs and offline migrations (see docs/files.md).

In: audit rows from JSONL (the corpus format) or CSV (``psql \\copy (SELECT * FROM audits) TO f csv
header``), and users, contacts, the SSO directory and entities from JSONL. Out: activity logs as
MongoDB relaxed Extended JSON lines, identical to the Mongo adapter's documents, that ``mongoimport``
loads. Every reader streams; a line that cannot be read raises ``FileFormatError`` (a
``CrmAuditError``) naming the file and line.
"""

from __future__ import annotations

from .audit_order import AuditOrderError
from .audit_source import FileAuditSource
from .audits import AUDIT_COLUMNS, FileFormat, read_audit_rows
from .checked_rows import CheckedRows
from .contact_index import JsonlContactDirectory
from .directories import read_contacts, read_entities, read_sso_directory, read_users
from .errors import FileChangedWhileRead, FileFormatError, FileWriteError
from .sink import JsonlActivityLogSink, encode_log_line

__all__ = [
    "AUDIT_COLUMNS",
    "AuditOrderError",
    "CheckedRows",
    "FileAuditSource",
    "FileChangedWhileRead",
    "FileFormat",
    "FileFormatError",
    "FileWriteError",
    "JsonlActivityLogSink",
    "JsonlContactDirectory",
    "encode_log_line",
    "read_audit_rows",
    "read_contacts",
    "read_entities",
    "read_sso_directory",
    "read_users",
]
