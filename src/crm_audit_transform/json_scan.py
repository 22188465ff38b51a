"""JSON text read for its shape at C speed, a piece at a time, without building any value.

One scan for every place that must size JSON text before ``json.loads`` builds it (a parsed value
costs ~60 bytes for the one or two characters it takes): a ``comment``'s person-id object
(``rules.contact``), the file reader's wide lines (``crm_audit_adapters.files.lines``) and a jsonb
``audited_changes``' nesting depth and values (``loading``), so all count the same values in the same
bounded memory.

A string runs to its closing quote, or, one that never closes, to the end of the text, as
``json.loads`` reads it (it builds nothing after it). A text is read ``_COUNT_BYTES`` at a time, each
piece ending before a string it would cut: cutting the strings out of the whole text at once held
~6 to 18 times a text of ``"",`` or ``"" ,`` in sre's list of the pieces it joins.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import AnyStr, Final, overload

__all__ = ["bare_pieces", "count_values", "json_values", "outside_strings", "string_parts"]

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

    A few tenths of the text's size held at most beyond the text (``bare_pieces``). Malformed text is
    counted all the same: the count is a bound to check before ``json.loads`` decides."""
    return count_values(bare_pieces(text))


def count_values(pieces: Iterable[bytes]) -> int:
    """``json_values`` of the text whose ``bare_pieces`` are ``pieces``."""
    values, last = 1, 0
    for bare in pieces:
        collections = bare.count(b"[") + bare.count(b"{")
        values += bare.count(b",") + collections - bare.count(b"[]") - bare.count(b"{}")
        if bare and (last, bare[0]) in _EMPTY_PAIRS:
            values -= 1  # an empty array or object split between two pieces
        last = bare[-1] if bare else last
    return values


def bare_pieces(text: bytes | str) -> Iterator[bytes]:
    """``text`` (JSON, which starts outside any string) outside its strings, each string as one
    ``0`` and JSON's blanks dropped, as UTF-8 (lone surrogates kept), in order, a piece of about
    ``_COUNT_BYTES`` of the text at a time: what its values are counted from, and its depth summed.

    A piece ends before a string it would cut; one string longer than a piece is read on to its end.
    Only the piece is held (and its bare bytes), never a copy of the whole text: cutting the strings
    out of the whole at once held ~6 to 18 times a text of ``"",``."""
    if isinstance(text, bytes):
        for parts in _pieces(text):
            yield b"0".join(parts).translate(None, _BLANKS)
    else:
        for texts in _pieces(text):
            yield "0".join(texts).encode("utf-8", "surrogatepass").translate(None, _BLANKS)


_BLANKS: Final = b" \t\n\r"


def _pieces(text: AnyStr) -> Iterator[list[AnyStr]]:
    """``text``'s parts outside strings a piece at a time (``outside_strings``); a string that never
    closes, to the end, ends the last part. A string longer than a piece is its own piece, passed
    over by its pattern's match, never copied (a piece read on to its end held twice a string of
    2 MB: the slice and its split)."""
    string = _BYTES_STRING_PART if isinstance(text, bytes) else _STRING_PART
    empty = text[:0]
    pos, size = 0, len(text)
    while pos < size:
        end = min(size, pos + _COUNT_BYTES)
        parts, cut = outside_strings(text, pos, end)
        if cut == pos:  # one string from the piece's start, past its end
            found = string.match(text, pos)
            assert found is not None  # the pattern matches from any quote
            yield [empty, empty]
            pos = found.end()
            continue
        if cut < end == size:  # a string that never closes, to the end: one value
            parts.append(empty)
            cut = size
        yield parts
        pos = cut
