"""Where each log of a JSONL activity-log file is: the compact index verify reads a dry run's file by.

Per company and external-id prefix (``crm:{tenant}:audit:``) the audit ids, sorted, with the byte
offset of their lines and whether the line is a ``crm_migration`` one: 17 bytes a log. Other
external ids (not of that shape, or an id not in its canonical spelling) go to a small dict; a
``crm_migration`` line's ``external_id`` that is not a string (``7``, ``null``: no line a sink
writes) to a list of its relaxed Extended JSON texts, by company, as MongoDB's reader names one.

The file is read in chunks of ``chunk_bytes`` and each line's keys are taken where the sink puts
them (``company_sso_id`` first, ``external_id`` right before ``source_tag``, then ``metadata`` last),
by searching the chunk between the line's bounds: no object per line, and the company and prefix of
the line before recognised without decoding (a file names one account's logs, in id order, as a run
writes them). A line in any other layout, with an escape in those values, or whose keys cannot be
shown to be the top-level ones (``top_level_tail``), is parsed instead. A line longer than
``HELD_LINE_BYTES`` is not held: it is read on for those three keys alone.
"""

from __future__ import annotations

import json
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Collection, Iterator
from itertools import pairwise
from typing import IO, Final

import attrs
from bson import json_util

from crm_audit_transform.domain import SOURCE_TAG
from crm_audit_transform.loading import JsonbText
from crm_audit_transform.numerals import MAX_DIGITS

from ..mongo.extended_json_input import loads_extended_json
from .errors import FileFormatError
from .lines import LONG_LINE_HEAD, PathLike, shallow_object, too_many_values
from .long_lines import skim_long_line

__all__ = ["LogIndex"]

_Q_MIN, _Q_MAX = -(2**63), 2**63 - 1
CHUNK_BYTES: Final = 4 << 20
"""Bytes read at a time while indexing (a longer line is read on over several reads)."""
HELD_LINE_BYTES: Final = LONG_LINE_HEAD
"""A line cut by a read and longer than this (1 MiB) is not held: it is read on in blocks for its
``company_sso_id``, ``external_id`` and ``source_tag`` alone (``long_lines.skim_long_line``)."""
_KEY_MEMBERS: Final = ("company_sso_id", "external_id", "source_tag")

# The sink's layouts: compact (orjson, today) and spaced (``json.dumps``, files of earlier releases).
_COMPACT = (b'{"company_sso_id":"', b'"external_id":"', b'","source_tag":"')
_SPACED = (b'{"company_sso_id": "', b'"external_id": "', b'", "source_tag": "')
_COMPACT_TAIL = b',"metadata":{'
_SPACED_TAIL = b', "metadata": {'
_TAIL_SIZE = len(_COMPACT_TAIL)
_LINE_END = frozenset(b"\r\n \t")
_OURS = SOURCE_TAG.encode()
_ZERO = ord("0")


def split_external_id(external_id: str) -> tuple[str, int] | None:
    """``crm:{tenant}:audit:{id}`` → (``crm:{tenant}:audit:``, id); None for any other shape.

    Only the id's canonical spelling (``str(id)``: no leading zero, no ``-0``) splits, so an indexed
    line's external_id is exactly ``prefix + str(id)``; another spelling is kept whole.
    """
    prefix, sep, digits = external_id.rpartition(":audit:")
    if not sep or not prefix.startswith("crm:"):
        return None
    body = digits[1:] if digits[:1] == "-" else digits
    # is_int_text without the regex (this runs once a line): ASCII digits, an optional "-".
    if not (body.isascii() and body.isdigit()) or len(body) > MAX_DIGITS:
        return None
    number = int(digits)
    if str(number) != digits:
        return None
    return (prefix + sep, number) if _Q_MIN <= number <= _Q_MAX else None


def non_string_text(value: object) -> str:
    """A line's ``external_id`` that is not a string, as MongoDB's reader names the BSON value the
    line reads back to: its relaxed Extended JSON (``7``, ``null``, ``2.5``, ``{"$oid": "…"}``), by
    ``bson.json_util`` both ways. A value no BSON reads back from (a malformed ``$``-operator) is
    named by its JSON text; one of too many values to decode (``JsonbText``), by its text."""
    if isinstance(value, JsonbText):
        return value.text
    text = json.dumps(value)
    try:
        decoded = loads_extended_json(text, json_util.RELAXED_JSON_OPTIONS)
    except ValueError:
        return text
    return json_util.dumps(decoded, json_options=json_util.RELAXED_JSON_OPTIONS)


def top_level_tail(raw: bytes, start: int, end: int, tail: bytes) -> bool:
    """Whether ``raw[start:end]`` (a line from just after the ``source_tag`` value to its end) is the
    sink's last key: ``tail`` (``,"metadata":{``), an object holding no brace at all, ``}}``.

    Then the keys before it are top-level ones. A quote inside a JSON string is escaped, so
    ``"external_id":"`` occurs only as a key, but at any depth: a changed value or a metadata value
    may hold a look-alike ``{"external_id": …, "source_tag": …}``. With no brace between its
    ``metadata`` opening and the line's last two bytes, the first ``}`` closes ``metadata`` and the
    second the object holding these keys, at the line's end: the top-level object. Anything else
    (a look-alike, a metadata value that is an object or a string holding a brace) returns False
    and the line is parsed instead.
    """
    if not raw.startswith(tail, start):
        return False
    body = start + len(tail)
    while end > body and raw[end - 1] in _LINE_END:
        end -= 1
    if end - body < 2 or not raw.startswith(b"}}", end - 2):
        return False
    return raw.find(b"}", body, end - 2) < 0 and raw.rfind(b"{", body, end) < 0


def sink_keys(raw: bytes) -> tuple[str, str, bool] | None:
    """(company, external_id, ours) read where the sink puts them, without parsing the line.

    The sink writes ``company_sso_id`` first, ``external_id`` right before ``source_tag`` (after
    ``attributes``) and ``metadata`` last. The last ``"external_id":"`` is taken, and kept only
    when ``top_level_tail`` shows it is the top-level key. A line not in that shape, with an escape
    in these values, or with a look-alike key nested in a value, returns None and is parsed instead.
    """
    if raw.startswith(_COMPACT[0]):
        company_key, external_key, tag_key = _COMPACT
        tail = _COMPACT_TAIL
    elif raw.startswith(_SPACED[0]):
        company_key, external_key, tag_key = _SPACED
        tail = _SPACED_TAIL
    else:
        return None
    company_end = raw.find(b'"', len(company_key))
    key = raw.rfind(external_key)
    if company_end < 0 or key < 0:
        return None
    start = key + len(external_key)
    end = raw.find(b'"', start)
    if end < 0 or not raw.startswith(tag_key, end):
        return None
    tag_start = end + len(tag_key)
    tag_end = raw.find(b'"', tag_start)
    if tag_end < 0 or not top_level_tail(raw, tag_end + 1, len(raw), tail):
        return None
    company, external_id, tag = raw[len(company_key) : company_end], raw[start:end], raw[tag_start:tag_end]
    if not external_id or b"\\" in company or b"\\" in external_id or b"\\" in tag:
        return None
    return company.decode(), external_id.decode(), tag == _OURS


@attrs.define(slots=True)
class _Prefix:
    ids: array[int] = attrs.field(factory=lambda: array("q"))
    offsets: array[int] = attrs.field(factory=lambda: array("q"))
    ours: array[int] = attrs.field(factory=lambda: array("b"))

    def seal(self) -> None:
        ids = self.ids
        if all(a <= b for a, b in pairwise(ids)):  # the sink's order (ties in file order): nothing to sort
            return
        order = sorted(range(len(self.ids)), key=self.ids.__getitem__)  # stable: file order on ties
        self.ids = array("q", (self.ids[i] for i in order))
        self.offsets = array("q", (self.offsets[i] for i in order))
        self.ours = array("b", (self.ours[i] for i in order))


class LogIndex:
    """The lines of a JSONL activity-log file by (company, external_id); see the module docstring."""

    __slots__ = ("_non_strings", "_others", "_prefix", "_prefixes")

    def __init__(self) -> None:
        self._prefixes: dict[tuple[str, str], _Prefix] = {}
        self._others: dict[tuple[str, str], list[tuple[int, bool]]] = {}
        self._non_strings: dict[str, list[str]] = {}  # by company: ``non_string_text`` of each line
        self._prefix = ""  # the prefix a page's external ids were split by last

    @classmethod
    def of_stream(cls, stream: IO[bytes], name: PathLike, chunk_bytes: int = CHUNK_BYTES) -> LogIndex:
        """Index every line of ``stream`` (read from where it is); ``FileFormatError`` for a line
        that is not a JSON object. ``name`` names the file in that error."""
        index = cls()
        _Scan(index, name).read(stream, chunk_bytes)
        for prefix in index._prefixes.values():
            prefix.seal()
        return index

    def add(self, company: str, external_id: str, offset: int, ours: bool) -> None:
        split = split_external_id(external_id)
        if split is None:
            self._others.setdefault((company, external_id), []).append((offset, ours))
            return
        found = self.prefix(company, split[0])
        found.ids.append(split[1])
        found.offsets.append(offset)
        found.ours.append(ours)

    def add_non_string(self, company: str, text: str) -> None:
        """A ``crm_migration`` line of ``company`` whose ``external_id`` is not a string, by its text."""
        self._non_strings.setdefault(company, []).append(text)

    def non_string_external_ids(self, company_sso_id: str) -> Iterator[str]:
        """``non_string_text`` of each ``crm_migration`` line of the company whose ``external_id`` is
        there but not a string, in file order (``ports.log_stores.NonStringExternalIds``)."""
        return iter(self._non_strings.get(company_sso_id, ()))

    def prefix(self, company: str, prefix: str) -> _Prefix:
        """The arrays of one company's external ids with this prefix (made empty when new)."""
        found = self._prefixes.get((company, prefix))
        if found is None:
            found = self._prefixes[(company, prefix)] = _Prefix()
        return found

    def places(self, company_sso_id: str, external_ids: Collection[str]) -> list[tuple[int, str]]:
        """(offset, external_id) of every line holding one of these ids, by ascending offset."""
        places: list[tuple[int, str]] = []
        wanted: dict[str, dict[int, str]] = {}
        prefix = self._prefix
        size = len(prefix)
        numbers: dict[int, str] = {}
        rest: list[str] = []
        for external_id in external_ids:
            # A page's ids share the prefix of the page before: split them without rpartition.
            if prefix and external_id.startswith(prefix):
                digits = external_id[size:]
                if digits.isdigit() and digits.isascii() and len(digits) <= MAX_DIGITS and digits[0] != "0":
                    number = int(digits)
                    if number <= _Q_MAX:
                        numbers[number] = external_id
                        continue
            rest.append(external_id)
        if numbers:
            wanted[prefix] = numbers
        for external_id in set(rest):
            split = split_external_id(external_id)
            if split is None:
                places.extend(
                    (o, external_id) for o, _ in self._others.get((company_sso_id, external_id), ())
                )
                continue
            wanted.setdefault(split[0], {})[split[1]] = external_id
            self._prefix = split[0]
        for text, by_number in wanted.items():
            found = self._prefixes.get((company_sso_id, text))
            if found is None:
                continue
            # A page asks for a run of ids: one slice of the sorted index, filtered by the dict.
            ids = found.ids
            low, high = bisect_left(ids, min(by_number)), bisect_right(ids, max(by_number))
            window = zip(ids[low:high], found.offsets[low:high], strict=True)
            places.extend((o, by_number[i]) for i, o in window if i in by_number)
        places.sort()
        return places

    def tagged_places(self, company_sso_id: str, prefix: str) -> Iterator[tuple[str, int, bool]]:
        """(external_id, offset, ours) of every ``crm_migration`` line of the company, and of every
        other line of it whose external_id starts with ``prefix`` (the stray stream of
        ``ports.TaggedExternalIds``): once a line, in ``external_ids``'s order."""
        for (company, text), found in sorted(self._prefixes.items()):
            if company != company_sso_id:
                continue
            under = text.startswith(prefix)
            for i, offset, ours in zip(found.ids, found.offsets, found.ours, strict=True):
                if ours or under:
                    yield f"{text}{i}", offset, bool(ours)
        for (company, external_id), places in sorted(self._others.items()):
            if company == company_sso_id:
                under = external_id.startswith(prefix)
                yield from ((external_id, o, ours) for o, ours in places if ours or under)

    def external_ids(self, company_sso_id: str) -> Iterator[str]:
        """Every ``crm_migration`` line's external_id of the company (once a line)."""
        for (company, text), prefix in sorted(self._prefixes.items()):
            if company == company_sso_id:
                yield from (f"{text}{i}" for i, ours in zip(prefix.ids, prefix.ours, strict=True) if ours)
        for (company, external_id), places in sorted(self._others.items()):
            if company == company_sso_id:
                yield from (external_id for _, ours in places if ours)


class _Follow:
    """The company and prefix the scan matches as bytes: those of the last line read the long way."""

    __slots__ = ("ids", "keys", "offsets", "ours")

    def __init__(self) -> None:
        self.keys = (b"", b"", 0)
        self.ids, self.offsets, self.ours = array("q"), array("q"), array("b")

    def line(self, scan: _Scan, raw: bytes, offset: int, number: int) -> bool:
        """Index ``raw`` the long way; True when the lines after it may be matched by its keys."""
        keys = scan.line(raw, offset, number)
        split = None if keys is None else split_external_id(keys[1])
        if keys is None or split is None:
            return False
        company_b, prefix_b = keys[0].encode(), split[0].encode()
        if b"\\" in company_b or b"\\" in prefix_b:
            return False  # as bytes, a backslash would match the escapes of other text
        found = scan.index.prefix(keys[0], split[0])
        self.keys = (company_b, prefix_b, len(prefix_b))
        self.ids, self.offsets, self.ours = found.ids, found.offsets, found.ours
        return True


class _Scan:
    """One pass over a file's lines into a ``LogIndex``."""

    __slots__ = ("index", "name")

    def __init__(self, index: LogIndex, name: PathLike) -> None:
        self.index = index
        self.name = name

    def read(self, stream: IO[bytes], chunk_bytes: int) -> None:
        company_key, external_key, tag_key = _COMPACT
        lc, lx, lt, lo = len(company_key), len(external_key), len(tag_key), len(_OURS)
        # The company and external-id prefix of the last line read the long way, as bytes, and
        # the arrays they index into; ``fast`` once there is such a line.
        follow = _Follow()
        fast, company_b, prefix_b, size = False, b"", b"", 0
        ids, offsets, ours = follow.ids, follow.offsets, follow.ours
        base, number = 0, 0  # the file offset of ``chunk``, the lines so far
        cut, cut_at = b"", 0  # a line the last read cut, and its offset
        while True:
            chunk = stream.read(chunk_bytes)
            start, limit = 0, len(chunk)
            if cut or not chunk:
                # The cut line's end is in this chunk (or it is the file's last, without newline).
                end = chunk.find(b"\n")
                if end < 0 and chunk:
                    cut += chunk
                    base += limit
                    if len(cut) > HELD_LINE_BYTES:
                        # Too long to hold: read on in blocks for the keys alone (``skim_long_line``).
                        number += 1
                        short, rest = self.skim(stream, cut, number)
                        base += rest
                        if follow.line(self, short, cut_at, number):
                            fast, company_b, prefix_b, size = True, *follow.keys
                            ids, offsets, ours = follow.ids, follow.offsets, follow.ours
                        cut = b""
                    continue
                start = limit if end < 0 else end + 1
                if cut or start:
                    number += 1
                    if follow.line(self, cut + chunk[:start], cut_at, number):
                        fast, company_b, prefix_b, size = True, *follow.keys
                        ids, offsets, ours = follow.ids, follow.offsets, follow.ours
                cut = b""
                if not chunk:
                    return
            while start < limit:
                end = chunk.find(b"\n", start)
                if end < 0:
                    cut, cut_at = chunk[start:], base + start  # the line goes on in the next chunk
                    break
                number += 1
                # The sink's compact layout with the line before's company and prefix: no decoding.
                if (
                    fast
                    and chunk.startswith(company_key, start)
                    and chunk.startswith(company_b, start + lc)
                    and chunk.startswith(b'"', start + lc + len(company_b))
                    and (key := chunk.rfind(external_key, start, end)) >= 0
                    and chunk.startswith(prefix_b, key + lx)
                    and (digits_end := chunk.find(b'"', key + lx, end)) >= 0
                    and chunk.startswith(tag_key, digits_end)
                ):
                    digits = chunk[key + lx + size : digits_end]
                    tag = digits_end + lt
                    if (
                        digits.isdigit()
                        and len(digits) <= MAX_DIGITS
                        and digits[0] != _ZERO
                        and (value := int(digits)) <= _Q_MAX
                    ):
                        if chunk.startswith(_OURS, tag) and chunk.startswith(b'"', tag + lo):
                            tag_end, mine = tag + lo, True
                        else:  # another tag: kept when it holds no escape
                            tag_end, mine = chunk.find(b'"', tag, end), False
                            if tag_end >= 0 and chunk.find(b"\\", tag, tag_end) >= 0:
                                tag_end = -1
                        # The keys are the top-level ones (``top_level_tail``, inlined for a
                        # line of the sink's, which ends ``}}`` right before its newline).
                        body = tag_end + 1 + _TAIL_SIZE
                        if (
                            tag_end >= 0
                            and chunk.startswith(_COMPACT_TAIL, tag_end + 1)
                            and chunk.startswith(b"}}", end - 2)
                            and chunk.find(b"}", body, end - 2) < 0
                            and chunk.rfind(b"{", body, end) < 0
                        ):
                            ids.append(value)
                            offsets.append(base + start)
                            ours.append(mine)
                            start = end + 1
                            continue
                if follow.line(self, chunk[start : end + 1], base + start, number):
                    fast, company_b, prefix_b, size = True, *follow.keys
                    ids, offsets, ours = follow.ids, follow.offsets, follow.ours
                start = end + 1
            base += limit

    def skim(self, stream: IO[bytes], first: bytes, number: int) -> tuple[bytes, int]:
        """The short line of a long line's keys, whose ``first`` bytes were read, and how many bytes
        more of it were read from ``stream`` (to its newline or the file's end)."""
        read = 0

        def readline(size: int) -> bytes:
            nonlocal read
            data = stream.readline(size)
            read += len(data)
            return data

        return skim_long_line(self.name, number, first, readline, _KEY_MEMBERS, HELD_LINE_BYTES), read

    def line(self, raw: bytes, offset: int, number: int) -> tuple[str, str] | None:
        """Index one line the long way; its (company, external_id) when it has them."""
        keys = sink_keys(raw)
        if keys is None:
            if not raw.strip():
                return None
            try:
                # Too many values: those members kept as their text (lines.shallow_object), never decoded.
                doc: object = shallow_object(raw.decode()) if too_many_values(raw) else json.loads(raw)
            except ValueError as exc:
                raise FileFormatError(self.name, number, f"not a JSON document: {exc}") from exc
            if not isinstance(doc, dict):
                raise FileFormatError(self.name, number, "not a JSON object")
            company, external_id = doc.get("company_sso_id"), doc.get("external_id")
            if not isinstance(company, str) or "external_id" not in doc:
                return None  # a log without our key: never one of ours
            ours = doc.get("source_tag") == SOURCE_TAG
            if not isinstance(external_id, str):
                # No id of ours, but MongoDB's rollback deletes such a log and its reader streams it
                # for verify to report: so does this index.
                if ours:
                    self.index.add_non_string(company, non_string_text(external_id))
                return None
            keys = company, external_id, ours
        self.index.add(keys[0], keys[1], offset, keys[2])
        return keys[0], keys[1]
