"""Reading files line by line: numbered, UTF-8 checked, one JSON object per line, never whole-file.

A line is decoded by orjson first (about half the cost of ``json.loads`` per audit line) and by
the ``json`` module whenever orjson refuses it or might read it differently, so every line gives
exactly what ``json.loads`` gives, or its error:

* orjson refuses what ``json`` reads leniently (a BOM, ``NaN``, ``1e400``, a lone ``\\ud800``,
  nesting past 1024) and what is not UTF-8: ``json`` then decides, with its own error messages;
* orjson reads an integer beyond 64 bits as a float where ``json`` keeps it exact: any float in
  orjson's result (rare in an audit export) sends the line to ``json`` too.
"""

from __future__ import annotations

import enum
import json
import os
import re
import stat
from collections.abc import Callable, Collection, Iterator
from typing import Any, BinaryIO, Final, Literal, TypeAlias, overload

import orjson

from crm_audit_transform.json_scan import json_values as json_values
from crm_audit_transform.json_scan import outside_strings
from crm_audit_transform.loading import JsonbText

from .errors import FileChangedWhileRead, FileFormatError
from .times import EARLIEST as EARLIEST
from .times import LATEST as LATEST
from .times import TimeOutOfRange as TimeOutOfRange
from .times import parse_timestamp as parse_timestamp
from .times import time_past_range as time_past_range

PathLike: TypeAlias = str | os.PathLike[str]
OnError: TypeAlias = Callable[[FileFormatError], None]
"""Called with each line that cannot become a value; without one, that line's error is raised."""


class SetAside(enum.Enum):
    """What a reader gives in place of a value right after a line it set aside (handed to its
    ``on_error``, or a long line passed over to its ``on_long_line``), when asked to (``marks``).

    Each such line gives control back to the reader's caller: without it, a run of lines set aside
    is read in one step, and whatever their ``on_error`` keeps of them (a file source's
    ``CheckedRows``) piles up until the next value. ``SetAside.LINE`` is the only member.
    """

    LINE = enum.auto()


MAX_LINE_BYTES: Final = 64 * 1024 * 1024
"""The longest line read (64 MiB, as psql CSV's record cap): a line is held whole, so a longer one
is refused rather than read. No audit row needs that much: the loader takes an ``audited_changes``
up to 32 MiB."""


MAX_MEMBER_VALUES: Final = 100_000
"""The most values (``from_json``'s nodes: the whole, and each item of an array or object) a line's
member is decoded with: decoded, a value of ``[],`` costs about 60 bytes, so a 24 MB line of them held
830 MiB. A member of more, or one past this many values in all with the members before it (many
members of fewer add up), is kept as its ``JsonbText`` (``shallow_object``), as one nested too deep
is: an ``audited_changes`` then meets the loader's ``max_nodes`` before anything is built, another
column is of a wrong type. As many as the loader's default ``max_nodes``; a larger setting still
loads such an ``audited_changes`` from its text. Only a line of more than twice as many bytes can
hold more, so shorter lines are never counted."""
_WIDE_LINE: Final = 2 * MAX_MEMBER_VALUES
LONG_LINE_HEAD: Final = 1 << 20
"""The bytes of an over-long line kept for ``on_long`` (1 MiB): enough for the members before its
long value (a row's ``tenant`` and ``id``), never the line itself. Also the bytes of any line held
before it is known to fit ``MAX_LINE_BYTES`` (``whole_or_long``)."""


def size_if_regular(stream: BinaryIO) -> int | None:
    """The bytes of the open file when it is a regular file (``os.fstat``), else None (a pipe, a
    terminal: no size to hold a read to)."""
    status = os.fstat(stream.fileno())
    return status.st_size if stat.S_ISREG(status.st_mode) else None


def check_read_whole(path: PathLike, line: int, reached: int, size: int | None) -> None:
    """``FileFormatError`` naming ``line`` (the one after the last read) when a read that found
    the file's end at byte ``reached`` stopped short of ``size``, the bytes the file held when the
    read (or the run) opened it: the file was cut short while it was read, so the rows past
    ``reached`` would be silently lost. A cut at a line end leaves no malformed line to say so;
    this does (docs/files.md). ``size`` None (not a regular file): nothing to check."""
    if size is not None and reached < size:
        raise FileChangedWhileRead(
            path,
            line,
            f"the file ends at byte {reached}, short of the {size} bytes it held when it was opened: "
            "it changed while it was read",
        )


def hold_limit(stream: BinaryIO, max_bytes: int, hold_bytes: int = LONG_LINE_HEAD) -> int:
    """The bytes of a line to read at once (``readline(limit + 1)``) before ``whole_or_long``
    measures it: ``hold_bytes``, or ``max_bytes`` for a stream that cannot seek (a pipe: it cannot
    read a line twice, so it holds up to ``max_bytes`` + 1 bytes of a line, as it always did)."""
    return min(max_bytes, hold_bytes) if stream.seekable() else max_bytes


def whole_or_long(stream: BinaryIO, first: bytes, limit: int, max_bytes: int) -> tuple[bytes, bool]:
    """The line whose ``first`` bytes were just read (``readline(limit + 1)``), and whether it is
    longer than ``max_bytes``; past ``first``, none of it is held until it is known to fit.

    A line that ``first`` ends is ``first``. Else the line is measured in blocks, not held: when it
    fits ``max_bytes`` it is read again whole, from where it starts; when it does not, it comes
    back as its first bytes (``first``, or up to ``LONG_LINE_HEAD`` when that is shorter: the head a
    read of ``max_bytes`` + 1 gave), the stream just after them, for the caller to read the rest
    on in blocks (``readline(LONG_LINE_HEAD)``) to its end, as an over-long line always is. So a
    hostile line costs the same few MiB whatever its length, where reading ``max_bytes`` + 1 of
    it to find out held 64 MiB (twice that while ``readline`` joined its pieces).
    """
    if len(first) <= limit or first.endswith(b"\n") or limit >= max_bytes:
        return first, len(first) > max_bytes
    size = len(first)
    block = first
    while size <= max_bytes and not block.endswith(b"\n"):
        block = stream.readline(LONG_LINE_HEAD)
        if not block:
            break  # the file's last line, without a line end
        size += len(block)
    stream.seek(-size, os.SEEK_CUR)
    if size > max_bytes:
        # Its first bytes, as many as reading up to max_bytes + 1 of it gave a head (LONG_LINE_HEAD).
        return stream.read(max(len(first), min(max_bytes + 1, LONG_LINE_HEAD))), True
    return stream.read(size), False


class LineWindow:
    """Where a read of a file's lines starts and stops, and where the line it last gave lies.

    ``start`` is the byte offset of a line's start and ``first`` that line's number; the read stops
    before a line that starts at or past ``stop`` (None: the file's end). After each line given,
    ``number``, ``line_start`` and ``line_end`` are its number and its bytes' range
    (``[line_start, line_end)``, terminator included; a long line read on in blocks to its end, as
    a whole), so a reader that goes on no further than the line it was given knows where to
    resume it: what a dry run's runner sends its workers (``files.audit_spans``).
    """

    __slots__ = ("first", "line_end", "line_start", "number", "start", "stop")

    def __init__(self, start: int = 0, first: int = 1, stop: int | None = None) -> None:
        if start < 0 or first < 1:
            raise ValueError(f"a window starts at a line: got offset {start}, line {first}")
        self.start = start
        self.first = first
        self.stop = stop
        self.number = first - 1
        self.line_start = self.line_end = start


def numbered_lines(
    path: PathLike,
    max_bytes: int = MAX_LINE_BYTES,
    *,
    on_long: Callable[[int, bytes], None] | None = None,
    keep: Collection[str] | None = None,
    hold_bytes: int = LONG_LINE_HEAD,
    window: LineWindow | None = None,
    mark_long: bool = False,
    long_members: bool = False,
) -> Iterator[tuple[int, bytes]]:
    """Every physical line (terminator included) with its 1-based number, streamed.

    A line longer than ``max_bytes`` raises ``FileFormatError`` naming it: it cannot be tied to a
    record without holding it. Finding that holds at most ``hold_bytes`` + 1 of it and a block
    (``whole_or_long``), whatever its length; a line that fits is held whole.
    With ``on_long``, such a line is read on to its end in blocks, never held, and
    ``on_long(number, head)`` gets its first ``LONG_LINE_HEAD`` bytes instead; the lines after it
    follow. With ``keep`` (the members a reader reads), such a line is read on the same way and
    comes as the short line of those members (``long_lines.skim_long_line``), or raises when one of
    them is too long to keep or it is not one JSON object; with both, ``on_long`` gets that short
    line instead of the head (a ``long_lines.LongMembersLine`` naming the members too long to keep,
    the line read on to its end), and the line is not yielded.
    With ``window``, the lines from its ``start`` (numbered from its ``first``) up to its ``stop``,
    the window told where each line given lies (``LineWindow``); ``FileFormatError`` when the file
    ends before ``stop`` (it was cut short since the window was cut). Without a ``stop``, a read
    whose end lies short of the file's size when it was opened raises it too (``check_read_whole``:
    the file was cut short, at a line end perhaps, while it was read); one ``fstat`` a read.
    With ``mark_long``, each line given to ``on_long`` is then given as ``b""`` (no line read is
    empty: each holds at least its terminator or one byte), the window not moved, so that the
    caller gets control back after it (``SetAside``). With ``keep`` and ``long_members`` (and no
    ``on_long``), a line whose kept members are too long to keep is read on to its end and given as
    a ``long_lines.LongMembersLine`` naming them, for its reader to decide whose line it is.
    """
    number, begin, stop = 0, 0, None
    with open(path, "rb") as stream:
        # Its size as opened: a read that ends short of it was cut short (check_read_whole).
        opened = size_if_regular(stream)
        if window is not None:
            number, begin, stop = window.first - 1, stream.seek(window.start), window.stop
        readline = stream.readline
        limit = hold_limit(stream, max_bytes, hold_bytes)
        while (stop is None or begin < stop) and (raw := readline(limit + 1)):
            number += 1
            if len(raw) > limit:
                raw, long = whole_or_long(stream, raw, limit, max_bytes)
                if long:
                    if keep is not None:
                        from .long_lines import skim_long_line  # it reads lines' constants: imported here

                        # Given to on_long, a line whose kept members are too long is counted there.
                        short = skim_long_line(
                            path,
                            number,
                            raw,
                            readline,
                            keep,
                            max_bytes,
                            long_members=long_members or on_long is not None,
                        )
                        if on_long is None:
                            if window is not None:
                                window.number, window.line_start = number, begin
                                window.line_end = stream.tell()
                            yield number, short
                        else:
                            on_long(number, short)
                        begin = stream.tell() if window is not None else 0  # a pipe cannot tell
                        if mark_long and on_long is not None:
                            yield number, b""
                        continue
                    if on_long is None:
                        raise FileFormatError(
                            path,
                            number,
                            f"line longer than {max_bytes} bytes: a line is read whole, so it is refused",
                        )
                    head, rest = raw[:LONG_LINE_HEAD], raw
                    while rest and not rest.endswith(b"\n"):
                        rest = readline(LONG_LINE_HEAD)
                    on_long(number, head)
                    begin = stream.tell() if window is not None else 0
                    if mark_long:
                        yield number, b""
                    continue
            end = begin + len(raw)  # a line that fits was read whole: the stream is just past it
            if window is not None:
                window.number, window.line_start, window.line_end = number, begin, end
            yield number, raw
            begin = end
        if stop is not None and begin < stop:
            # The window was cut from the file as it was: one that now ends inside it was cut short
            # (rewritten, truncated) while it was read, and the rows past its end would be lost.
            raise FileChangedWhileRead(
                path,
                number + 1,
                f"the file ends at byte {begin}, inside the part being read (to byte {stop}): "
                "it changed while it was read",
            )
        if stop is None and opened is not None:  # a pipe cannot tell where it is, nor be cut
            check_read_whole(path, number + 1, stream.tell(), opened)


def leading_members(head: bytes) -> dict[str, Any]:
    """The members of a JSON object line that lie whole in ``head``, its first bytes, in order up to
    the first one cut off (or malformed): what a line too long to hold says about itself."""
    return _leading_members(head.decode("utf-8", "replace").lstrip("\ufeff"))


def _leading_members(text: str) -> dict[str, Any]:
    decoder = json.JSONDecoder()
    members: dict[str, Any] = {}
    pos = _skip(text, 0)
    if not text.startswith("{", pos):
        return members
    pos = _skip(text, pos + 1)
    try:
        while text.startswith('"', pos):
            key, pos = decoder.raw_decode(text, pos)
            pos = _skip(text, pos)
            if not text.startswith(":", pos):
                break
            value, pos = decoder.raw_decode(text, _skip(text, pos + 1))
            pos = _skip(text, pos)
            if not text.startswith((",", "}"), pos):
                break  # the value was cut off in the middle of a number, or is malformed
            members.setdefault(key, value)
            pos = _skip(text, pos + 1)
    except (ValueError, RecursionError):  # the member cut off by the head's end, or malformed
        pass
    return members


def lines_from_end(path: PathLike, *, block: int = 1 << 16, longest: int = 1 << 26) -> Iterator[bytes]:
    """The file's physical lines from the last one back (without their ``\\n``), read in blocks.

    The first line of the file comes last, BOM and all. A line longer than ``longest`` bytes
    stops the iteration there (a caller reading backwards wants the last few lines, not the file).
    Each byte is read once: the blocks of a line longer than ``block`` are kept and joined when
    its start is found, so a long last line costs its length, not its length squared.
    """
    with open(path, "rb") as stream:
        end = stream.seek(0, os.SEEK_END)
        partial: list[bytes] = []  # the line being read, its pieces last first
        size = 0
        while end > 0:
            start = max(0, end - block)
            stream.seek(start)
            pieces = stream.read(end - start).split(b"\n")
            end = start
            if len(pieces) > 1:
                partial.append(pieces[-1])
                yield b"".join(reversed(partial))
                yield from reversed(pieces[1:-1])
                partial, size = [], 0
            partial.append(pieces[0])
            size += len(pieces[0])
            if size > longest:
                return
        yield b"".join(reversed(partial))


def decode(path: PathLike, number: int, raw: bytes) -> str:
    try:
        # A byte order mark is tolerated at the start of the file only.
        return raw.decode("utf-8-sig" if number == 1 else "utf-8")
    except UnicodeDecodeError as exc:
        raise FileFormatError(path, number, f"not UTF-8 (byte {exc.start})") from exc


@overload
def json_objects(
    path: PathLike,
    on_error: OnError | None = None,
    *,
    keep_bytes: bool = False,
    max_line_bytes: int = MAX_LINE_BYTES,
    on_long_line: Callable[[int, dict[str, Any]], None] | None = None,
    keep: Collection[str] | None = None,
    window: LineWindow | None = None,
    marks: Literal[False] = False,
    long_members: bool = False,
) -> Iterator[tuple[int, dict[str, Any]]]: ...


@overload
def json_objects(
    path: PathLike,
    on_error: OnError | None = None,
    *,
    keep_bytes: bool = False,
    max_line_bytes: int = MAX_LINE_BYTES,
    on_long_line: Callable[[int, dict[str, Any]], None] | None = None,
    keep: Collection[str] | None = None,
    window: LineWindow | None = None,
    marks: Literal[True],
    long_members: bool = False,
) -> Iterator[tuple[int, dict[str, Any] | SetAside]]: ...


def json_objects(
    path: PathLike,
    on_error: OnError | None = None,
    *,
    keep_bytes: bool = False,
    max_line_bytes: int = MAX_LINE_BYTES,
    on_long_line: Callable[[int, dict[str, Any]], None] | None = None,
    keep: Collection[str] | None = None,
    window: LineWindow | None = None,
    marks: bool = False,
    long_members: bool = False,
) -> Iterator[tuple[int, dict[str, Any] | SetAside]]:
    """``(line number, object)`` for every non-blank line; a line that is not a JSON object is an error.

    A line that is not UTF-8 is an error too, unless ``keep_bytes``: then it is read all the same and
    each member whose text holds bytes that are not UTF-8 is given as ``bytes`` (``not_utf8_members``).
    A line longer than ``max_line_bytes`` stops the read (``numbered_lines``); with ``on_long_line`` it
    is passed over, not held, and ``on_long_line(number, leading_members(its head))`` is called; with
    ``keep``, it is read for those members only (``numbered_lines``), and ``on_long_line`` gets them
    wherever they lie in the line. ``window``: the lines within it (``numbered_lines``). With
    ``marks``, each line handed to ``on_error`` or passed over to ``on_long_line`` is followed by
    ``(its number, SetAside.LINE)``. With ``keep`` and ``long_members`` (and no ``on_long_line``), a
    long line whose kept members are too long to keep is given all the same, each such member as its
    ``long_lines.LongMember``: its reader, not the skim, decides whether the line is its own to refuse
    (another tenant's is not).
    """
    on_long = (
        None if on_long_line is None else lambda number, head: on_long_line(number, leading_members(head))
    )
    if on_long_line is not None and keep is not None:
        on_long = lambda number, short: on_long_line(number, _members_of(short))  # noqa: E731
    lines = numbered_lines(
        path,
        max_line_bytes,
        on_long=on_long,
        keep=keep,
        window=window,
        mark_long=marks,
        long_members=long_members,
    )
    for number, raw in lines:
        if not raw.strip():
            if not raw and marks:
                yield number, SetAside.LINE  # a long line passed over (numbered_lines' mark_long)
            continue  # blank lines separate nothing and hold nothing
        value = fast_object(raw)
        if value is None:
            try:
                try:
                    text = decode(path, number, raw)
                except FileFormatError:
                    if not keep_bytes:
                        raise
                    value = not_utf8_members(parse_object(path, number, escaped(number, raw)))
                else:
                    value = parse_object(path, number, text)
            except FileFormatError as error:
                report(error, on_error)
                if marks:
                    yield number, SetAside.LINE
                continue
        if long_members and (long := getattr(raw, "long", None)):
            value.update(long)  # a long_lines.LongMembersLine's members too long to keep
        yield number, value


def _members_of(short: bytes) -> dict[str, Any]:
    """The members of a long line's short line (``long_lines``): as ``json.loads`` reads them (the
    last of a repeated key counts), or those it reads before a value it cannot build. A short line
    that is not UTF-8 is read as such a line is with ``keep_bytes`` (``not_utf8_members``): a member
    not UTF-8 as ``bytes``, a name not UTF-8 counted (``NotUtf8Names``), never a character replaced.
    A member too long to keep (``long_lines.LongMembersLine``) is its ``long_lines.LongMember``."""
    from .long_lines import LongMembersLine  # it reads lines' constants: imported here

    try:
        text, odd = short.decode(), False
    except UnicodeDecodeError:
        text, odd = short.decode("utf-8", "surrogateescape"), True
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):  # an integer past Python's 4,300 digits, say
        value = _leading_members(text)
    if not isinstance(value, dict):
        return {}
    members = not_utf8_members(value) if odd else value
    if isinstance(short, LongMembersLine):
        members.update(short.long)
    return members


def escaped(number: int, raw: bytes) -> str:
    """A line that is not UTF-8 as text all the same: each byte that is not UTF-8 becomes a lone
    surrogate (U+DC80-U+DCFF, Python's ``surrogateescape``), which ``not_utf8`` turns back."""
    return raw.decode("utf-8-sig" if number == 1 else "utf-8", "surrogateescape")


def not_utf8(text: str) -> str | bytes:
    """``text`` from ``escaped``, or its original bytes when it holds bytes that are not UTF-8.

    Those bytes are what psycopg gives for such a value of a ``SQL_ASCII`` database
    (``crm_postgres.encodings``), so the row fails as it fails there: ``bad_encoding`` for
    ``audited_changes``, ``invalid_audit_row`` for another column. A lone surrogate that a JSON
    ``\\udcXX`` escape wrote into a line that also holds such bytes is read as a byte too: either way
    that text cannot be written as UTF-8 (or BSON).
    """
    if text.isascii() or not any("\udc80" <= char <= "\udcff" for char in text):
        return text
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that no byte made (a JSON escape outside U+DC80-U+DCFF)
        return text


class NotUtf8Names(dict[str, Any]):
    """``not_utf8_members``' object when the names of ``names`` of its members hold bytes that are
    not UTF-8 (kept as ``escaped`` text): which column such a member is cannot be told, so a reader
    that looks its columns up by name must not take it as a line without that column."""

    __slots__ = ("names",)

    def __init__(self, members: dict[str, Any], names: int) -> None:
        super().__init__(members)
        self.names = names


def not_utf8_members(record: dict[str, Any]) -> dict[str, Any]:
    """The object of an ``escaped`` line, each member whose text holds bytes that are not UTF-8 as
    ``bytes``: a string its own bytes, an array or object the bytes of its JSON text. When a member's
    name holds such bytes, a ``NotUtf8Names``."""
    members = {key: _member(value) for key, value in record.items()}
    names = sum(1 for key in members if isinstance(not_utf8(key), bytes))
    return NotUtf8Names(members, names) if names else members


def _member(value: Any) -> Any:
    if isinstance(value, str):
        return not_utf8(value)
    if isinstance(value, dict | list):
        text = json.dumps(value, ensure_ascii=False)
        if isinstance(encoded := not_utf8(text), bytes):
            return encoded
    return value


_EXACT: Final = frozenset({str, int, bool, type(None)})
"""orjson's results that are exactly ``json``'s: containers are looked into, a float never is."""


def too_many_values(text: bytes | str) -> bool:
    """JSON text of more than ``MAX_MEMBER_VALUES`` values, not to be decoded whole: a line is then
    read member by member, a CSV record's jsonb field kept as its text. Counted only past 200,000
    characters: a shorter text cannot hold more."""
    return len(text) > _WIDE_LINE and json_values(text) > MAX_MEMBER_VALUES


def fast_object(raw: bytes) -> dict[str, Any] | None:
    """orjson's object for the line when it is certainly ``json.loads``'s, else None (ask ``json``)."""
    if too_many_values(raw):
        return None  # parse_object reads it member by member
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if type(value) is not dict:
        return None  # not an object: json.loads words that error
    exact = _EXACT
    if exact.issuperset(map(type, value.values())):
        return value  # an export's usual line: text, ids and nulls only
    pending: list[Any] = [value]
    while pending:
        container = pending.pop()
        for item in container.values() if type(container) is dict else container:
            kind = type(item)
            if kind in exact:
                continue
            if kind is dict or kind is list:
                pending.append(item)
            else:
                return None  # a float: maybe an integer orjson could not hold
    return value


def json_error(exc: json.JSONDecodeError) -> str:
    """What ``json`` found wrong, and where: ``Invalid control character at column 9`` (its message
    ends in "at" where it names a place, which read "at at column" with the column after it)."""
    return f"{exc.msg.removesuffix(' at')} at column {exc.colno}"


def parse_object(path: PathLike, number: int, text: str) -> dict[str, Any]:
    """The line's object; a member ``json`` cannot build (too deep, an integer past Python's
    4,300-digit limit, more than ``MAX_MEMBER_VALUES`` values) is kept as its ``JsonbText``
    (``shallow_object``)."""
    try:
        if too_many_values(text):
            raise RecursionError  # read member by member: no member of too many values is built
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FileFormatError(path, number, f"not JSON: {json_error(exc)}") from exc
    except (RecursionError, ValueError):  # ValueError: int's digit limit, the only other one json raises
        try:
            value = shallow_object(text)
        except ValueError as exc:
            raise FileFormatError(path, number, f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise FileFormatError(path, number, f"expected a JSON object, found {type(value).__name__}")
    return value


_WHITESPACE = re.compile(r"[ \t\n\r]*")
# Possessive: sre then keeps no backtracking state an escape (a greedy loop held ~75 bytes of it
# a character of a key of ``\\"``: a 4 MiB key, 300 MiB). The match is the same: the loop is
# unambiguous, so no match needs to give any of it back.
_STRING = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+"', re.S)
_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")


def shallow_object(text: str) -> dict[str, Any]:
    """A JSON object line whose members nest deeper than ``json.loads`` can recurse, or hold an
    integer of more digits than Python reads (4,300).

    The top level is read here, without recursion; a member that still cannot be decoded, or that
    would take the values decoded past ``MAX_MEMBER_VALUES`` in all, is kept as ``JsonbText`` (its
    raw JSON), so a deep ``audited_changes`` becomes that row's loader
    failure — the failure the PostgreSQL source's ``JsonbText`` of the same value gets — instead of
    losing the line; in another column it is that column's wrong type. ``ValueError`` when the line
    is not a JSON object.
    """
    found: dict[str, Any] = {}
    left = MAX_MEMBER_VALUES  # values decoded at most, in all: many members each of fewer add up
    for key, key_end, start, end, value in _members(text):
        if value is _COLLECTION:
            member = text[start:end]
            try:
                values = json_values(member)
                if values > left:
                    raise RecursionError  # kept as its text: decoded, it would hold ~60 bytes a value
                value = json.loads(member)
                left -= values
            except json.JSONDecodeError:
                raise
            except (RecursionError, ValueError):
                value = JsonbText(member)
        found[json.loads(text[key:key_end])] = value
    return found


def kept_members(text: str, keep: Collection[str]) -> str:
    """The object line of ``text``'s members named in ``keep``, as written and in order, the others
    passed over undecoded: what a reader reads of a line of too many values (``too_many_values``)
    without decoding the values it does not read. ``ValueError`` when ``text`` is not a JSON object.

    A member passed over is checked for its strings and its brackets' nesting only (``[1, xyz]``
    passes), as a line past ``MAX_LINE_BYTES`` is (``long_lines``)."""
    kept = [
        text[key:end]
        for key, key_end, _, end, _ in _members(text, decode=False)
        if json.loads(text[key:key_end]) in keep
    ]
    return "{" + ",".join(kept) + "}"


_COLLECTION: Final = object()
"""``_members``' value for an array or an object: read for its end only."""


def _members(text: str, *, decode: bool = True) -> Iterator[tuple[int, int, int, int, Any]]:
    """``(key start, key end, value start, value end, value)`` for each member of the JSON object ``text``
    at its top level, without recursion; the value is ``_COLLECTION`` for an array or an object
    (``_collection_end`` finds its end), else decoded (an integer past the digit limit as its
    ``JsonbText``; not at all, None, unless ``decode``). ``ValueError`` when it is not an object."""
    decoder = json.JSONDecoder()
    pos = _skip(text, 0)
    if text[pos : pos + 1] != "{":
        raise ValueError("expected a JSON object")
    pos = _skip(text, pos + 1)
    while text[pos : pos + 1] != "}":
        key = _STRING.match(text, pos)
        if key is None:
            raise ValueError(f"expected a key at column {pos + 1}")
        pos = _skip(text, key.end())
        if text[pos : pos + 1] != ":":
            raise ValueError(f"expected ':' at column {pos + 1}")
        pos = _skip(text, pos + 1)
        value: Any = _COLLECTION
        if text[pos : pos + 1] in ("[", "{"):
            end = _collection_end(text, pos)
        elif not decode and (string := _STRING.match(text, pos)) is not None:
            value, end = None, string.end()
        else:
            try:
                value, end = decoder.raw_decode(text, pos)
            except json.JSONDecodeError:
                raise
            except ValueError:  # an integer past the digit limit
                number = _NUMBER.match(text, pos)
                if number is None:
                    raise
                value, end = JsonbText(number.group()), number.end()
        yield key.start(), key.end(), pos, end, value
        pos = _skip(text, end)
        if text[pos : pos + 1] == ",":
            pos = _skip(text, pos + 1)
        elif text[pos : pos + 1] != "}":
            raise ValueError(f"expected ',' or '}}' at column {pos + 1}")
    if text[_skip(text, pos + 1) :]:
        raise ValueError("extra data after the object")


def _skip(text: str, pos: int) -> int:
    match = _WHITESPACE.match(text, pos)
    return pos if match is None else match.end()


_BALANCED_LEVELS: Final = 8
"""The nesting a balanced run (``_balanced``) is read through in one match: a collection nested
deeper is read a run of brackets a step, and a run's failed try reads its part of the text again,
once a level at most."""


def _balanced(flat: str, levels: int) -> re.Pattern[str]:
    """Text that ``flat`` matches, and collections of it nested at most ``levels`` deep, each opened
    and closed by any bracket (a depth count takes them alike): a run that leaves the depth where it
    found it and never goes below it, read in C. Possessive throughout: a balanced text has one
    parse, so sre keeps no backtracking state however long the run."""
    pattern = flat
    for _ in range(levels):
        pattern = f"{flat}(?:[\\[{{]{pattern}[\\]}}]{flat})*+"
    return re.compile(pattern, re.S)


# Outside brackets: anything but brackets and quotes, and whole strings (one that never closes stops
# the run at its quote). After such a quote: anything but brackets (no later quote starts a string).
_FLAT: Final = r'(?:[^"\[\]{}]++|"[^"\\]*+(?:\\.[^"\\]*+)*+")*+'
_BALANCED = _balanced(_FLAT, _BALANCED_LEVELS)
_BALANCED_BARE = _balanced(r"[^\[\]{}]*+", _BALANCED_LEVELS)
# What ends a balanced run: a run of opening brackets, one of closing brackets, or a lone quote.
_RUN_END = re.compile(r'([\[{]++)|([\]}]++)|(")')


_PIECE: Final = 1 << 16
_LEAF: Final = 1 << 9
_PASSES: Final = 16
_NOT_BRACKETS: Final = bytes(set(range(256)) - set(b"[]{}"))
_ONE_KIND: Final = bytes.maketrans(b"{}", b"[]")  # a depth count takes them alike
_RUNS: Final = re.compile(rb"\[+|\]+")


def _fall(piece: str) -> tuple[int, int]:
    """How far the depth falls within ``piece`` (text outside strings) below where it starts, and
    where it ends relative to that, counted in C but for what is nested deeper than ``_PASSES``.

    Each pass drops the brackets that open and at once close (``[]``): they move the depth up and
    back. What is left once no pass drops any is closing brackets then opening ones, so its closing
    ones are how far it falls. Nested deeper than ``_PASSES``, or in runs of 16 brackets on average,
    the rest is followed a run of brackets a step: a step for 16 of its characters or more."""
    bare = piece.encode("utf-8", "surrogatepass").translate(_ONE_KIND, _NOT_BRACKETS)
    net = len(bare) - 2 * bare.count(b"]")
    for _ in range(_PASSES):
        peaks = bare.count(b"[]")
        if not peaks:
            return bare.count(b"]"), net
        if 32 * peaks < len(bare):
            break  # runs of brackets, long on the whole: followed faster than dropped a layer a pass
        bare = bare.replace(b"[]", b"")
    level = lowest = 0
    for run in _RUNS.finditer(bare):
        first, end = run.span()
        if bare[first] == 0x5B:  # [
            level += end - first
        else:
            level -= end - first
            lowest = min(lowest, level)
    return -lowest, net


def _collection_end(text: str, start: int) -> int:
    """The end of the array or object whose bracket is at ``text[start]``: just past the bracket,
    outside strings, that closes it; ``ValueError`` when none does.

    Text the depth cannot reach zero in is passed over a piece at a time, its brackets counted in C
    (``_fall``): up to ``_PIECE`` characters, halved down to ``_LEAF`` around where it may reach
    zero and doubled again past it; outside strings, a piece ends at a quote, unless a balanced run
    just read stopped short of ``_LEAF`` characters: strings then lie nested deeper than a run reads,
    and a piece passes over its strings whole, ending before one it would cut
    (``json_scan.outside_strings``). Elsewhere a balanced run is read at a time (``_BALANCED``:
    whatever lies at one depth and below, strings and collections nested up to ``_BALANCED_LEVELS``
    deep, matched in C), then the run of brackets of one way that ends it. So a line of
    ``[],[],…``, ``"","",…``, ``["a"],…`` or ``[[[[[[[[[["a"]]]]]]]]]],…`` costs a few steps a
    piece, where a step a bracket or a string cost ~10 s for 24 MB (the last ~1 step a character).

    A quote no string starts at is text; no quote after it can start a string either (each would
    run to the same end: JSON's escapes pair alike from any quote), so the rest is read for its
    brackets alone, rather than trying a string to the end of the line at each quote."""
    depth, pos, bare, deep, size = 0, start, False, False, _PIECE
    ends, length = _RUN_END.match, len(text)
    while (found := ends(text, pos)) is not None:
        kind = found.lastindex
        first, pos = found.span()
        if kind == 1:
            depth += pos - first
        elif kind == 2:
            if pos - first >= depth:
                return first + depth
            depth -= pos - first
        else:
            bare = True  # read on for brackets alone
        while size >= _LEAF and pos < length:
            cut = min(length, pos + size)
            quote = -1 if bare else text.find('"', pos, cut)
            if quote < 0 or quote - pos >= _LEAF:
                cut = cut if quote < 0 else quote
                piece = text[pos:cut]
            elif not deep:
                break  # strings lie close: a balanced run reads them, and what nests them, in one match
            else:  # they lie deeper than a balanced run reads: passed over whole, a piece at a time
                parts, cut = outside_strings(text, pos, cut)
                if cut == pos:
                    break  # a string longer than the piece: read the fine way, in one match
                piece = "".join(parts)
            fall, net = _fall(piece)
            if fall >= depth:
                size //= 2
                continue
            pos, depth, size = cut, depth + net, min(2 * size, _PIECE)
        size = max(size, _LEAF)
        pattern = _BALANCED_BARE if bare else _BALANCED
        run = pattern.match(text, pos).end()  # type: ignore[union-attr]  # it matches the empty text
        deep, pos = run - pos < _LEAF, run  # a short run: what follows nests past _BALANCED_LEVELS
    raise ValueError("an array or object is not closed")


def report(error: FileFormatError, on_error: OnError | None) -> None:
    if on_error is None:
        raise error
    on_error(error)
