"""Load a plain-format ``pg_dump`` file through psycopg, so loading the CRM fixture needs no ``psql``.

The file is read line by line: SQL statements are split on ``;`` outside quotes, dollar quotes and
comments, and each ``COPY ... FROM stdin;`` is followed by its data block (up to ``\\.``), which goes
to the server through psycopg's COPY as the raw bytes of the dump. psql meta-commands other than the
``\\restrict`` pair that recent pg_dump versions add are refused, not ignored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import psycopg
from attrs import frozen

_COPY_FROM_STDIN = re.compile(r"^COPY\b.*\bFROM\s+stdin\s*;\s*$", re.IGNORECASE | re.DOTALL)
_IGNORED_META = (b"\\restrict", b"\\unrestrict")
_END_OF_COPY = b"\\.\n"
_DOLLAR_TAG = re.compile(r"\$[A-Za-z_]*\$")


class DumpFormatError(ValueError):
    """The dump holds something this loader does not understand (say which line)."""


@frozen
class Statement:
    """One SQL statement of the dump, with its trailing ``;``."""

    text: str
    line: int


@frozen
class CopyBlock:
    """A ``COPY ... FROM stdin`` statement and the raw text-format rows that follow it."""

    statement: str
    data: bytes
    line: int


def load_sql_dump(dsn: str, path: Path) -> None:
    """Run every statement and COPY block of ``path`` against ``dsn`` in one transaction."""
    with path.open("rb") as lines, psycopg.connect(dsn) as conn:
        for item in iter_dump(lines):
            if isinstance(item, CopyBlock):
                with conn.cursor().copy(item.statement.encode()) as copy:
                    copy.write(item.data)
            else:
                conn.execute(item.text.encode())
        # leaving the block commits


def iter_dump(lines: Iterable[bytes]) -> Iterator[Statement | CopyBlock]:
    """Statements and COPY blocks of a plain dump, in order (``lines`` keep their ``\\n``)."""
    scanner = _StatementScanner()
    source = iter(enumerate(lines, start=1))
    for number, raw in source:
        if not scanner.pending and raw.startswith(b"\\"):
            if raw.startswith(_IGNORED_META):
                continue
            raise DumpFormatError(f"line {number}: psql meta-command not supported: {raw[:40]!r}")
        for text, start in scanner.feed(raw.decode("utf-8"), number):
            if _COPY_FROM_STDIN.match(text):
                yield CopyBlock(text, _copy_data(source, start), start)
            else:
                yield Statement(text, start)
    if scanner.pending.strip():
        raise DumpFormatError(f"line {scanner.start}: statement without a closing ';'")


def _copy_data(source: Iterator[tuple[int, bytes]], start: int) -> bytes:
    chunks: list[bytes] = []
    for _, raw in source:
        if raw in (_END_OF_COPY, b"\\."):
            return b"".join(chunks)
        chunks.append(raw)
    raise DumpFormatError(f"line {start}: COPY data without its closing \\.")


class _StatementScanner:
    """Splits SQL on ``;`` that stand outside quotes, dollar quotes and comments, across lines."""

    __slots__ = ("_backslashes", "_buffer", "_dollar_tag", "_quote", "start")

    def __init__(self) -> None:
        self._buffer: list[str] = []
        self._quote: str | None = None  # "'" or '"' while inside one
        self._dollar_tag: str | None = None  # "$tag$" while inside a dollar quote
        self._backslashes = False  # inside an E'...' string, where a backslash escapes the quote
        self.start = 0

    @property
    def pending(self) -> str:
        return "".join(self._buffer)

    def feed(self, line: str, number: int) -> Iterator[tuple[str, int]]:
        i = 0
        segment_start = 0
        while i < len(line):
            if self._dollar_tag is not None:
                end = line.find(self._dollar_tag, i)
                if end < 0:
                    break
                i = end + len(self._dollar_tag)
                self._dollar_tag = None
                continue
            if self._quote is not None:
                end = self._closing_quote(line, i)
                if end < 0:
                    break
                i = end + 1  # a doubled quote simply closes and reopens
                self._quote = None
                continue
            char = line[i]
            if char in "'\"":
                self._quote = char
                self._backslashes = char == "'" and i > 0 and line[i - 1] in "Ee"
                i += 1
            elif char == "$" and _may_open_dollar_quote(line, i) and (tag := _DOLLAR_TAG.match(line, i)):
                self._dollar_tag = tag.group(0)
                i += len(self._dollar_tag)
            elif line.startswith("--", i):
                self._keep(line[segment_start:i] + "\n", number)
                segment_start = i = len(line)
            elif char == ";":
                self._keep(line[segment_start : i + 1], number)
                text = self.pending.strip()
                self._buffer.clear()
                segment_start = i = i + 1
                yield text, self.start
            else:
                i += 1
        self._keep(line[segment_start:], number)

    def _closing_quote(self, line: str, i: int) -> int:
        assert self._quote is not None
        if not self._backslashes:
            return line.find(self._quote, i)
        while i < len(line):
            if line[i] == "\\":
                i += 2
            elif line[i] == self._quote:
                return i
            else:
                i += 1
        return -1

    def _keep(self, text: str, number: int) -> None:
        if not self._buffer and not text.strip():
            return
        if not self._buffer:
            self.start = number
        self._buffer.append(text)


def _may_open_dollar_quote(line: str, i: int) -> bool:
    # "$" inside an identifier (``a$b``) is part of the name, not a quote
    return i == 0 or not (line[i - 1].isalnum() or line[i - 1] == "_")
