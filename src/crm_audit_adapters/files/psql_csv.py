"""CSV exactly as PostgreSQL writes it (``COPY … TO … (FORMAT csv, HEADER)``, ``psql \\copy … csv header``).

Python's ``csv`` module cannot tell a NULL (an empty, unquoted field) from an empty string (``""``)
before Python 3.12, and the difference is data here, so records are split by hand:

* a record may span physical lines: a quoted field holds raw CR and LF;
* a quoted field is ``"…"`` with ``""`` for a quote; it is a string, even when empty;
* an unquoted field never holds a quote; empty means NULL (``None``).

Records are read one at a time; a record longer than ``max_record_bytes`` (an unbalanced quote
would otherwise swallow the rest of the file) stops the read with a ``FileFormatError``, unless the
caller takes it (``on_long``): then it is read on to its end in blocks, never held, and judged by its
head, its field count and whether it is well-formed. Finding out that a record is that long holds
none of it past its first ``LONG_LINE_HEAD``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from typing import Final, NamedTuple

from .errors import FileFormatError
from .lines import (
    LONG_LINE_HEAD,
    MAX_LINE_BYTES,
    PathLike,
    check_read_whole,
    decode,
    escaped,
    hold_limit,
    not_utf8,
    size_if_regular,
)

DEFAULT_MAX_RECORD_BYTES: Final = MAX_LINE_BYTES
_NO_LINE_END: Final = (
    "the file ends without a line end after this record (PostgreSQL ends every record with one): "
    "it was cut short or is still being written, and its last field may be cut"
)

# The quoted alternative is the unrolled "no quote, or a doubled quote" loop: linear; possessive, so
# sre keeps no backtracking state a ``""`` (a greedy loop kept ~60 MiB of it a MiB of ``""``).
_FIELD: Final = re.compile(r'"([^"]*+(?:""[^"]*+)*+)"|([^,"]*+)')


class LongRecord(NamedTuple):
    """A record longer than ``max_record_bytes``, as read without holding it."""

    head: bytes
    """Its first ``LONG_LINE_HEAD`` bytes: the fields before its long one (``leading_fields``)."""
    fields: int
    """How many fields it has (1 + its separating commas outside quotes)."""
    well_formed: bool
    """Every quote opens a field or closes one (``""`` inside): what ``split_record`` would accept.
    A record that is not may be several records an unbalanced quote joined."""


def csv_records(
    path: PathLike,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    *,
    on_long: Callable[[int, LongRecord], None] | None = None,
    hold_bytes: int = LONG_LINE_HEAD,
) -> Iterator[tuple[int, bytes]]:
    """``(first line number, raw record without its terminator)``; blank lines are skipped.

    A record ends at the first line end outside quotes. One longer than ``max_record_bytes`` raises
    ``FileFormatError`` naming its first line. With ``on_long``, such a record is read on to its end
    in blocks of ``LONG_LINE_HEAD`` and never held: ``on_long(first line, LongRecord)`` is called,
    and the records after it follow. An unterminated quote at the end of the file always raises, and
    so does an end short of the file's size when it was opened (``lines.check_read_whole``: it was
    cut short while it was read), and a last record with no line end after it: ``COPY`` ends every
    record with one, so the file was cut inside that record (or is being written), and a field cut
    short at its end (``2019-01-04 05:44:28.1`` of ``…28.125496``) would read as another value.

    A record is held whole only once it is known to fit: past its first ``hold_bytes`` it is
    measured in blocks, not held, and read again whole from where it starts when it fits (as
    ``lines.whole_or_long`` reads a line). So a hostile record costs the same small memory whatever
    its length; a file that cannot seek (a pipe) holds up to ``max_record_bytes`` + 1 bytes of it.
    """
    parts: list[bytes] = []
    quotes = size = start = number = 0
    at_line_start = True
    with open(path, "rb") as stream:
        opened = size_if_regular(stream)  # a read that ends short of it was cut short
        readline = stream.readline
        limit = hold_limit(stream, max_record_bytes, hold_bytes)
        while raw := readline(limit + 1 - size):
            if at_line_start:
                number += 1
            at_line_start = raw.endswith(b"\n")
            if not parts:
                start = number
            parts.append(raw)
            quotes += raw.count(b'"')
            size += len(raw)
            if size > limit:
                head_size = min(LONG_LINE_HEAD, max_record_bytes + 1)  # the head a held read gave
                head = bytearray()
                for part in parts:
                    head += part[: head_size - len(head)]
                scan = _RecordScan()
                ended = any(scan.feed(part) for part in parts)
                parts, quotes = [], 0
                # Past what is held, the record is measured in blocks, not held, up to its end or the cap.
                while not ended and size <= max_record_bytes and (block := readline(LONG_LINE_HEAD)):
                    if at_line_start:
                        number += 1
                    at_line_start = block.endswith(b"\n")
                    size += len(block)
                    head += block[: head_size - len(head)]
                    ended = scan.feed(block)
                if size <= max_record_bytes:
                    # It fits (it ended at a line end, or at the end of the file): read it again whole.
                    if not ended and not scan.end_of_file():
                        raise FileFormatError(path, start, "unterminated quoted field at the end of the file")
                    if not ended:
                        raise FileFormatError(path, start, _NO_LINE_END)
                    stream.seek(-size, os.SEEK_CUR)
                    record, size = stream.read(size), 0
                    record = record[:-2] if record.endswith(b"\r\n") else record.removesuffix(b"\n")
                    if record:
                        yield start, record
                    continue
                if on_long is None:
                    raise FileFormatError(
                        path, start, f"record longer than {max_record_bytes} bytes (an unbalanced quote?)"
                    )
                size = 0
                while not ended and (block := readline(LONG_LINE_HEAD)):
                    if at_line_start:
                        number += 1
                    at_line_start = block.endswith(b"\n")
                    ended = scan.feed(block)
                at_line_start = True
                if not ended and not scan.end_of_file():
                    why = f"record longer than {max_record_bytes} bytes runs to the end of the file"
                    raise FileFormatError(path, start, f"{why}: an unterminated quoted field")
                if not ended:
                    raise FileFormatError(
                        path, start, f"record longer than {max_record_bytes} bytes: {_NO_LINE_END}"
                    )
                on_long(start, LongRecord(bytes(head), scan.fields, scan.well_formed))
                continue
            if quotes % 2:
                continue
            record = b"".join(parts)
            parts, quotes, size = [], 0, 0
            if not at_line_start and record.strip():  # the file's end, no line end after the record
                raise FileFormatError(path, start, _NO_LINE_END)
            record = record[:-2] if record.endswith(b"\r\n") else record.removesuffix(b"\n")
            if record:
                yield start, record
        if opened is not None:  # a pipe cannot tell where it is, nor be cut
            check_read_whole(path, number + 1, stream.tell(), opened)
    if parts:
        raise FileFormatError(path, start, "unterminated quoted field at the end of the file")


_START, _PLAIN, _QUOTED, _CLOSED, _CLOSED_CR = range(5)
# A quoted field's text up to its closing quote (or the block's end): no quote, or a doubled one.
# Possessive, so that a run of any length (a record of ``""``) is one match at C speed, in flat memory:
# sre keeps no backtracking state for a possessive repeat.
_QUOTED_RUN: Final = re.compile(rb'[^"]*+(?:""[^"]*+)*+')
# Unquoted text up to a quote or a line end: its commas are counted in C, not one step each.
_PLAIN_RUN: Final = re.compile(rb'[^"\n]*+')


class _RecordScan:
    """Follows one record's bytes, fed in blocks, to the line end that ends it: its field count and
    whether it is well-formed, without holding it.

    The record ends where ``csv_records`` ends one, at the first line end outside quotes. States: at
    a field's start, in an unquoted field, in a quoted one, just after a quote that closes one (or
    is the first of ``""``), and after that quote and a CR (a CRLF record end). A quoted field's text
    and a stretch of unquoted fields are each skipped in one regex match, so a record's cost is one
    Python step a quoted field, not one a quote or a comma (benchmarks/bench_hostile_records.py).
    """

    def __init__(self) -> None:
        self.state = _START
        self.fields = 1
        self.well_formed = True

    def end_of_file(self) -> bool:
        """The file ended before a line end ended the record: False when a quoted field is still
        open (the record is unterminated); a CR after a closing quote is then text, not a CRLF."""
        if self.state == _CLOSED_CR:
            self.well_formed = False
        return self.state != _QUOTED

    def feed(self, data: bytes) -> bool:
        """Read ``data`` on; True once the record's terminating line end is in it (the caller reads a
        line at most at a time, so nothing of the next record is)."""
        pos, end = 0, len(data)
        quoted_run, plain_run = _QUOTED_RUN.match, _PLAIN_RUN.match
        while pos < end:
            state = self.state
            if state == _QUOTED:
                close = data.find(b'"', pos)  # a field's text without quotes: memchr
                if close < 0:
                    return False
                if data[close + 1 : close + 2] == b'"':  # "" inside: skip them and the text between
                    close = quoted_run(data, close).end()  # type: ignore[union-attr]  # it matches the empty string
                    if close == end:
                        return False
                self.state, pos = _CLOSED, close + 1
                continue
            if state in (_PLAIN, _START):
                stop = plain_run(data, pos).end()  # type: ignore[union-attr]  # it matches the empty string
                self.fields += data.count(b",", pos, stop)
                if stop == end:
                    self.state = _START if data[end - 1] == 0x2C else _PLAIN
                    return False
                # A quote opens a field at its start (after a comma); elsewhere it is a quote inside
                # a field, and the record's end is still told by quote parity.
                opens = data[stop - 1] == 0x2C if stop > pos else state == _START
                if data[stop] == 0x0A:
                    return True
                if not opens:
                    self.well_formed = False
                self.state, pos = _QUOTED, stop + 1
                continue
            # Just after a closing quote (and a CR).
            char, pos = data[pos], pos + 1
            if state == _CLOSED and char == 0x22:  # "" inside a quoted field
                self.state = _QUOTED
                continue
            if state == _CLOSED and char == 0x0D:
                self.state = _CLOSED_CR
                continue
            if char != 0x0A and (state == _CLOSED_CR or char != 0x2C):  # text after a closing quote
                self.well_formed = False
            if char == 0x2C:
                self.fields += 1
                self.state = _START
            elif char == 0x0A:
                return True
            elif char == 0x22:  # a quote inside a field: the record's end is still told by quote parity
                self.state = _QUOTED
            else:
                self.state = _PLAIN
        return False


def leading_fields(head: bytes) -> list[str | None]:
    """The fields of a long record that lie whole in ``head``, its first bytes, in order up to the
    first one cut off (or malformed): ``str`` or ``None`` (NULL) as ``split_record`` gives them."""
    text = head.decode("utf-8", "replace").lstrip("\ufeff")
    fields: list[str | None] = []
    position = 0
    while (match := _FIELD.match(text, position)) is not None and text.startswith(",", match.end()):
        quoted, plain = match.groups()
        fields.append(quoted.replace('""', '"') if quoted is not None else plain or None)
        position = match.end() + 1
    return fields


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
            # The character is the line's text: the field is named instead (docs/files.md). No
            # offset: where a malformed quote ends depends on how the field is scanned.
            raise FileFormatError(
                path, number, f"field {len(fields)} is followed by a character other than a comma"
            )
        position += 1
