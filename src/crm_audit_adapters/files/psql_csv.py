"""CSV exactly as PostgreSQL writes it (``COPY … TO … (FORMAT csv, HEADER)``, ``psql \\copy … csv header``).

Python's ``csv`` module cannot tell a NULL (an empty, unquoted field) from an empty string (``""``)
before Python 3.12, and the difference is data here, so records are split by hand:

* a record may span physical lines: a quoted field holds raw CR and LF;
* a quoted field is ``"…"`` with ``""`` for a quote; it is a string, even when empty;
* an unquoted field never holds a quote; empty means NULL (``None``).

Records are read one at a time; a record longer than ``max_record_bytes`` (an unbalanced quote
would otherwise swallow the rest of the file) stops the read with a ``FileFormatError``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Final

from .errors import FileFormatError
from .lines import MAX_LINE_BYTES, PathLike, decode, escaped, not_utf8, numbered_lines

DEFAULT_MAX_RECORD_BYTES: Final = MAX_LINE_BYTES

# The quoted alternative is the unrolled "no quote, or a doubled quote" loop: linear, no backtracking.
_FIELD: Final = re.compile(r'"([^"]*(?:""[^"]*)*)"|([^,"]*)')


def csv_records(
    path: PathLike, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
) -> Iterator[tuple[int, bytes]]:
    """``(first line number, raw record without its terminator)``; blank lines are skipped."""
    parts: list[bytes] = []
    quotes = size = start = 0
    for number, raw in numbered_lines(path, max_record_bytes):
        if not parts:
            start = number
        parts.append(raw)
        quotes += raw.count(b'"')
        size += len(raw)
        if quotes % 2:
            if size > max_record_bytes:
                raise FileFormatError(
                    path, start, f"record longer than {max_record_bytes} bytes (an unbalanced quote?)"
                )
            continue
        record = b"".join(parts)
        parts, quotes, size = [], 0, 0
        record = record[:-2] if record.endswith(b"\r\n") else record.removesuffix(b"\n")
        if record:
            yield start, record
    if parts:
        raise FileFormatError(path, start, "unterminated quoted field at the end of the file")


def split_record(path: PathLike, number: int, raw: bytes) -> list[str | None]:
    """The fields of one record: ``str`` for quoted or non-empty ones, ``None`` for NULL."""
    return _split(path, number, decode(path, number, raw))


def split_record_keeping_bytes(path: PathLike, number: int, raw: bytes) -> list[str | bytes | None]:
    """``split_record``, except that a record that is not UTF-8 is read all the same: each of its
    fields that is not UTF-8 is that field's ``bytes`` (``lines.not_utf8``)."""
    try:
        text = decode(path, number, raw)
    except FileFormatError:
        fields = _split(path, number, escaped(number, raw))
        return [None if field is None else not_utf8(field) for field in fields]
    return list(_split(path, number, text))


def _split(path: PathLike, number: int, text: str) -> list[str | None]:
    fields: list[str | None] = []
    position, end = 0, len(text)
    while True:
        match = _FIELD.match(text, position)
        assert match is not None  # the unquoted alternative matches the empty string
        quoted, plain = match.groups()
        if quoted is not None:
            fields.append(quoted.replace('""', '"'))
        else:
            fields.append(plain or None)
        position = match.end()
        if position == end:
            return fields
        if text[position] != ",":
            raise FileFormatError(path, number, f"unexpected {text[position]!r} in field {len(fields)}")
        position += 1
