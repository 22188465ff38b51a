"""JSON text read for its shape at C speed, a piece at a time, without building any value.

One scan for every place that must size JSON text before ``json.loads`` builds it (a parsed value
costs ~60 bytes for the one or two characters it takes): a ``comment``'s person-id object
(``rules.contact``) and the file reader's wide lines (``crm_audit_adapters.files.lines``), so both
count the same values in the same bounded memory.

A string runs to its closing quote, or, one that never closes, to the end of the text, as
``json.loads`` reads it (it builds nothing after it). A text is read ``_COUNT_BYTES`` at a time, each
piece ending before a string it would cut: cutting the strings out of the whole text at once held
~6 to 18 times a text of ``"",`` or ``"" ,`` in sre's list of the pieces it joins.
"""

from __future__ import annotations

import re
from typing import Final, overload

__all__ = ["json_values", "outside_strings", "string_parts"]

# A string to its closing quote or, one that never closes, to the end: every match from a quote
# succeeds, one pass (required to close, sre tried again at each escaped quote of an unclosed one,
# to the end each time: 2 MiB of \": hours). Possessive: no backtracking state kept a character.
_STRING_PART: Final = re.compile(r'("[^"\\]*+(?:\\.?[^"\\]*+)*+"?)', re.S)
_BYTES_STRING_PART: Final = re.compile(rb'("[^"\\]*+(?:\\.?[^"\\]*+)*+"?)', re.S)
_CLOSED: Final = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+"', re.S)
_BYTES_CLOSED: Final = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"', re.S)
_COUNT_BYTES: Final = 1 << 14
_EMPTY_PAIRS: Final = frozenset({(0x5B, 0x5D), (0x7B, 0x7D)})  # [] and {}


@overload
def outside_strings(text: bytes, pos: int, end: int) -> tuple[list[bytes], int]: ...
@overload
def outside_strings(text: str, pos: int, end: int) -> tuple[list[str], int]: ...
def outside_strings(text: bytes | str, pos: int, end: int) -> tuple[list[bytes], int] | tuple[list[str], int]:
    """The parts of ``text[pos:end]`` (which starts outside any string) outside its strings, one more
    than the strings between them, and where they end: ``end``, or at the quote of a last string
    that does not close by ``end`` (``pos`` when that string starts at ``pos``). Such a string is cut
    even at the text's end: the caller reads on past a string that never closes as it reads on past
    ``end``. Without a backslash a string runs from a quote to the next one (``split``, ~8 times
    faster than the pattern, which follows escapes)."""
    if isinstance(text, bytes):
        parts, cut = _outside_bytes(text[pos:end])
        return parts, pos + cut
    texts, cut = _outside_text(text[pos:end])
    return texts, pos + cut


def _outside_bytes(piece: bytes) -> tuple[list[bytes], int]:
    if b'"' not in piece:
        return [piece], len(piece)
    if b"\\" not in piece:
        parts = piece.split(b'"')
        if not len(parts) % 2:  # an odd number of quotes: the last string does not close
            return parts[:-1:2], len(piece) - len(parts[-1]) - 1
        return parts[::2], len(piece)
    parts = _BYTES_STRING_PART.split(piece)
    if len(parts) > 1 and not parts[-1] and not _BYTES_CLOSED.fullmatch(parts[-2]):
        return parts[:-2:2], len(piece) - len(parts[-2])
    return parts[::2], len(piece)


def _outside_text(piece: str) -> tuple[list[str], int]:
    """``_outside_bytes`` of text, character for byte."""
    if '"' not in piece:
        return [piece], len(piece)
    if "\\" not in piece:
        parts = piece.split('"')
        if not len(parts) % 2:
            return parts[:-1:2], len(piece) - len(parts[-1]) - 1
        return parts[::2], len(piece)
    parts = _STRING_PART.split(piece)
    if len(parts) > 1 and not parts[-1] and not _CLOSED.fullmatch(parts[-2]):
        return parts[:-2:2], len(piece) - len(parts[-2])
    return parts[::2], len(piece)


def string_parts(text: bytes, pos: int, end: int) -> tuple[list[bytes], int]:
    """``text[pos:end]`` (which starts outside any string) as its parts outside strings
    (``parts[::2]``) and its whole strings between them (``parts[1::2]``, each with its quotes), and
    where they end: as ``outside_strings`` says."""
    parts = _BYTES_STRING_PART.split(text[pos:end])
    if len(parts) > 1 and not parts[-1] and not _BYTES_CLOSED.fullmatch(parts[-2]):
        return parts[:-2], end - len(parts[-2])
    return parts, end


def json_values(text: bytes | str) -> int:
    """How many values ``json.loads(text)`` would build (the whole, and each item of an array or
    object: one more than its commas, for one that is not empty), counted from its commas and
    brackets outside strings at C speed, ``_COUNT_BYTES`` at a time, without building any.

    A few tenths of the text's size held at most beyond its UTF-8 bytes (a ``str`` is encoded, lone
    surrogates kept). Malformed text is counted all the same: the count is a bound to check before
    ``json.loads`` decides."""
    if isinstance(text, str):
        text = text.encode("utf-8", "surrogatepass")
    values, last, pos, size = 1, 0, 0, len(text)
    while pos < size:
        end = min(size, pos + _COUNT_BYTES)
        parts, cut = outside_strings(text, pos, end)
        while cut == pos and end < size:  # one string from the piece's start fills it: read on
            end = min(size, pos + 2 * (end - pos))
            parts, cut = outside_strings(text, pos, end)
        if cut < end and end == size:  # a string that never closes, to the end: one value
            parts.append(b"")
            cut = size
        bare = b"0".join(parts).translate(None, b" \t\n\r")  # a string one value; no blanks
        collections = bare.count(b"[") + bare.count(b"{")
        values += bare.count(b",") + collections - bare.count(b"[]") - bare.count(b"{}")
        if bare and (last, bare[0]) in _EMPTY_PAIRS:
            values -= 1  # an empty array or object split between two pieces
        last = bare[-1] if bare else last
        pos = cut
    return values
