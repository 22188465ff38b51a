"""The audits file formats: JSONL (the corpus's) and psql's CSV, told by a file's suffix."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Final, Literal

from .lines import PathLike

FileFormat = Literal["jsonl", "csv"]

AUDIT_COLUMNS: Final = (
    "id",
    "auditable_id",
    "auditable_type",
    "associated_id",
    "associated_type",
    "user_id",
    "user_type",
    "username",
    "action",
    "audited_changes",
    "version",
    "comment",
    "remote_address",
    "request_uuid",
    "created_at",
)
"""The columns of audited 5.8.0's ``audits`` table, in table order (what ``SELECT *`` gives)."""

_REQUIRED_COLUMNS: Final = frozenset({"id", "auditable_type", "action", "created_at"})
_SUFFIXES: Final[Mapping[str, FileFormat]] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
}


def format_of(path: PathLike, file_format: FileFormat | None = None) -> FileFormat | None:
    """``file_format`` when given, else the format the file's suffix names, else None."""
    return file_format or _SUFFIXES.get(os.path.splitext(os.fspath(path))[1].lower())
