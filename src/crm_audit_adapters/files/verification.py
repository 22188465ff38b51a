"""``MigratedLogReader`` over a dry run's output file: verify a dry run against its inputs.

The JSONL file (relaxed Extended JSON, one ``activity_logs`` document a line, as the sink writes
it) is scanned once at open; only a compact index stays in memory: per company and external-id
prefix (``crm:{tenant}:audit:``) the audit ids, sorted, with the byte offset of their lines (and
whether the line is a ``crm_migration`` one) — 17 bytes a log. Other external ids (not of that
shape, or an id not in its canonical spelling) go to a small dict. A page then reads only its lines
(in one read when they lie near each other, as a sink writes them).

The content form is the file's own line: a stored log's content is its line as read, a recomputed
log's the line the sink would write for it (``mongo.extended_json.relaxed_json_bytes``). Two equal
lines are equal content without parsing either — the common case, since the dry run wrote the line
from the same log — and such a line is never parsed at all: :class:`StoredLine` builds its
``MigratedDoc`` from the recomputed log (every field of the line is that log's). Otherwise the line is
parsed and each owned field compared as the JSON text of its relaxed Extended JSON value
(``{"$numberDouble": "NaN"}`` for a NaN, so NaN equals itself), parsed on first use.
Parsing stays in orjson (no ``bson.json_util`` hooks). A dry run's file holds no live-feed logs:
``live_feed_candidates`` finds none.
"""

from __future__ import annotations

import datetime as dt
import json
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Collection, Iterator, Mapping, Sequence
from itertools import pairwise
from typing import cast

import attrs
import orjson

from crm_audit_transform.domain import SOURCE_TAG, ActivityLog
from crm_audit_transform.enrichment import MatchKey, StoredLog
from crm_audit_transform.enrichment.model import as_referent_id
from crm_audit_transform.numerals import MAX_DIGITS
from crm_audit_transform.timestamps import as_utc
from crm_audit_transform.verification import OWNED_FIELDS, MigratedDoc

from ..mongo.bson_values import to_bson_datetime
from ..mongo.extended_json import relaxed_json_bytes
from .errors import FileFormatError
from .lines import PathLike

__all__ = ["JsonlMigratedLogReader", "LineContent", "StoredLine", "json_content"]

_Q_MIN, _Q_MAX = -(2**63), 2**63 - 1
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_SPAN_BYTES = 16 << 20
"""A page whose lines lie within this many bytes is read in one go (else line by line)."""


def _split(external_id: str) -> tuple[str, int] | None:
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


class _Splitter:
    """:func:`_split` that remembers the last prefix: a file, or a page, names one tenant's ids."""

    __slots__ = ("prefix", "size")

    def __init__(self) -> None:
        self.prefix = ""
        self.size = 0

    def __call__(self, external_id: str) -> tuple[str, int] | None:
        prefix = self.prefix
        if prefix and external_id.startswith(prefix):
            digits = external_id[self.size :]
            # Plain digits hold no ":audit:", so rpartition would find this prefix too.
            if digits.isdigit() and digits.isascii() and len(digits) <= MAX_DIGITS and digits[0] != "0":
                number = int(digits)
                if number <= _Q_MAX:
                    return prefix, number
        split = _split(external_id)
        if split is not None:
            self.prefix, self.size = split[0], len(split[0])
        return split


# The sink's layouts: compact (orjson, today) and spaced (``json.dumps``, files of earlier releases).
_COMPACT = (b'{"company_sso_id":"', b'"external_id":"', b'","source_tag":"')
_SPACED = (b'{"company_sso_id": "', b'"external_id": "', b'", "source_tag": "')
_OURS = SOURCE_TAG.encode()


def _sink_keys(raw: bytes) -> tuple[str, str, bool] | None:
    """(company, external_id, ours) read where the sink puts them, without parsing the line.

    The sink writes ``company_sso_id`` first and ``external_id`` right before ``source_tag``, after
    ``attributes``; a quote inside any JSON string is escaped, so ``"external_id":"`` occurs only
    as a key, and its last occurrence is the top-level one (``metadata`` holds no such key). object
    line not in that shape, or with an escape in these values, returns None and is parsed instead.
    """
    if raw.startswith(_COMPACT[0]):
        company_key, external_key, tag_key = _COMPACT
    elif raw.startswith(_SPACED[0]):
        company_key, external_key, tag_key = _SPACED
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
    if tag_end < 0:
        return None
    company, external_id, tag = raw[len(company_key) : company_end], raw[start:end], raw[tag_start:tag_end]
    if not external_id or b"\\" in company or b"\\" in external_id or b"\\" in tag:
        return None
    return company.decode(), external_id.decode(), tag == _OURS


def _dumps(value: object) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:  # a lone surrogate, in a line an earlier release wrote with json.dumps
        return json.dumps(value).encode()


def _loads(line: bytes) -> object:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:  # as above: json reads what orjson refuses
        return json.loads(line)


def json_content(doc: Mapping[str, object]) -> dict[str, object]:
    """The owned fields of a relaxed-JSON document as JSON text (``bytes``), one per field present."""
    return {name: _dumps(doc[name]) for name in OWNED_FIELDS if name in doc}


class LineContent(Mapping[str, object]):
    """A log's owned fields as the JSONL line that holds it: equal lines compare without parsing.

    As a mapping it is :func:`json_content` of the parsed line, computed on first use; ``==``
    with another ``LineContent`` is True at once when the lines are byte-equal (every field of the
    line is then equal), and otherwise compares those mappings.
    """

    __slots__ = ("_fields", "_parsed", "line", "log")

    def __init__(
        self, line: bytes, parsed: Mapping[str, object] | None = None, log: ActivityLog | None = None
    ) -> None:
        self.line = line.rstrip(b"\r\n")
        self._parsed = parsed
        self._fields: dict[str, object] | None = None
        self.log = log  # the recomputed log the line was written from (``content_of``), if any

    def _content(self) -> dict[str, object]:
        if self._fields is None:
            doc = self._parsed if self._parsed is not None else _loads(self.line)
            if not isinstance(doc, Mapping):  # the reader only hands over lines holding an object
                raise TypeError(f"not a JSON object: {self.line[:60]!r}")
            self._fields = json_content(doc)
            self._parsed = None
        return self._fields

    def __getitem__(self, name: str) -> object:
        return self._content()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._content())

    def __len__(self) -> int:
        return len(self._content())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, LineContent) and self.line == other.line:
            return True
        return Mapping.__eq__(self, other)

    __hash__ = None  # type: ignore[assignment]  # a mapping: unhashable, as dict

    def __repr__(self) -> str:
        return f"LineContent({self.line[:60]!r}…)"


def _timestamp(value: object) -> dt.datetime | None:
    text = value.get("$date") if isinstance(value, dict) else None
    if not isinstance(text, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return as_utc(parsed, naive="utc")


def _migrated_doc(line: bytes, offset: int) -> MigratedDoc | None:
    """A line's document as verify reads it; None when it lacks what a log must have."""
    doc = _loads(line)
    if not isinstance(doc, dict):
        return None
    timestamp, external_id = _timestamp(doc.get("timestamp")), doc.get("external_id")
    if timestamp is None or not isinstance(external_id, str):
        return None
    metadata = doc.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    return MigratedDoc(
        doc_id=f"offset:{offset}",
        external_id=external_id,
        company_sso_id=str(doc.get("company_sso_id", "")),
        customer_id=str(doc.get("customer_id", "")),
        category=str(doc.get("category", "")),
        action=str(doc.get("action", "")),
        timestamp=timestamp,
        source_tag=str(doc.get("source_tag", "")),
        content=LineContent(line, doc),
        crm_person_id=as_referent_id(metadata.get("crm_person_id")),
        linked_entity_id=as_referent_id(metadata.get("linked_entity_id")),
    )


def _recomputed_doc(log: ActivityLog, content: LineContent, offset: int) -> MigratedDoc:
    """What ``_migrated_doc`` reads from a line that is ``log``'s own line, built from ``log``."""
    metadata = log.metadata
    person, entity = metadata.get("crm_person_id"), metadata.get("linked_entity_id")
    return MigratedDoc(
        doc_id=f"offset:{offset}",
        external_id=log.external_id,
        company_sso_id=log.company_sso_id,
        customer_id=log.customer_id,
        category=log.category,
        action=log.action,
        timestamp=to_bson_datetime(log.timestamp),  # the line holds whole milliseconds
        source_tag=log.source_tag,
        content=content,
        crm_person_id=None if person is None else as_referent_id(person),
        linked_entity_id=None if entity is None else as_referent_id(entity),
    )


class StoredLine:
    """A stored log as its line (``StoredMigratedLog``): parsed only when it is not the recomputed one's.

    ``same_as(expected)``, with ``expected`` this reader's ``content_of(log)``: the two lines are equal
    byte for byte (and the timestamp is one the line spells as a date: 1970 on). ``parsed(expected)``
    then builds the ``MigratedDoc`` from ``log``, else parses the line. ``content`` is the line's
    :class:`LineContent`.
    """

    __slots__ = ("external_id", "line", "offset")

    def __init__(self, external_id: str, line: bytes, offset: int) -> None:
        self.external_id = external_id
        self.line = line.rstrip(b"\r\n")
        self.offset = offset

    @property
    def content(self) -> LineContent:
        return LineContent(self.line)

    def same_as(self, expected: Mapping[str, object]) -> bool:
        if type(expected) is not LineContent or expected.line != self.line:
            return False
        log = expected.log
        # Before 1970 the sink writes {"$numberLong"}, which the parse refuses: leave that to it.
        return log is not None and log.timestamp >= _EPOCH

    def parsed(self, expected: Mapping[str, object] | None = None) -> MigratedDoc | None:
        if expected is not None and self.same_as(expected):
            content = cast(LineContent, expected)
            return _recomputed_doc(cast(ActivityLog, content.log), content, self.offset)
        return _migrated_doc(self.line, self.offset)

    def __repr__(self) -> str:
        return f"StoredLine({self.external_id!r}, offset={self.offset})"


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


class JsonlMigratedLogReader:
    """``ports.MigratedLogReader`` over a dry run's ``--out`` file (which must not change meanwhile)."""

    def __init__(self, path: PathLike) -> None:
        self._path = path
        self._prefixes: dict[tuple[str, str], _Prefix] = {}
        self._others: dict[tuple[str, str], list[tuple[int, bool]]] = {}
        self._split = _Splitter()
        offset = 0
        with open(path, "rb") as stream:
            for number, raw in enumerate(stream, 1):
                self._add(number, raw, offset)
                offset += len(raw)
        for prefix in self._prefixes.values():
            prefix.seal()

    def _add(self, number: int, raw: bytes, offset: int) -> None:
        keys = _sink_keys(raw)
        if keys is None:
            if not raw.strip():
                return
            try:
                doc: object = json.loads(raw)
            except ValueError as exc:
                raise FileFormatError(self._path, number, f"not a JSON document: {exc}") from exc
            if not isinstance(doc, dict):
                raise FileFormatError(self._path, number, "not a JSON object")
            company, external_id = doc.get("company_sso_id"), doc.get("external_id")
            if not isinstance(company, str) or not isinstance(external_id, str) or not external_id:
                return  # a log without our key: never one of ours
            keys = company, external_id, doc.get("source_tag") == SOURCE_TAG
        company, external_id, ours = keys
        split = self._split(external_id)
        if split is None:
            self._others.setdefault((company, external_id), []).append((offset, ours))
            return
        where = (company, split[0])
        prefix = self._prefixes.get(where)
        if prefix is None:
            prefix = self._prefixes[where] = _Prefix()
        prefix.ids.append(split[1])
        prefix.offsets.append(offset)
        prefix.ours.append(ours)

    def _places(self, company_sso_id: str, external_ids: Collection[str]) -> list[tuple[int, str]]:
        """(offset, external_id) of every line holding one of these ids, by ascending offset."""
        places: list[tuple[int, str]] = []
        wanted: dict[str, dict[int, str]] = {}
        split_of = _Splitter()
        for external_id in set(external_ids):
            split = split_of(external_id)
            if split is None:
                places.extend(
                    (o, external_id) for o, _ in self._others.get((company_sso_id, external_id), ())
                )
            else:
                wanted.setdefault(split[0], {})[split[1]] = external_id
        for text, numbers in wanted.items():
            prefix = self._prefixes.get((company_sso_id, text))
            if prefix is None:
                continue
            # A page asks for a run of ids: one slice of the sorted index, filtered by the set.
            ids = prefix.ids
            low, high = bisect_left(ids, min(numbers)), bisect_right(ids, max(numbers))
            window = zip(ids[low:high], prefix.offsets[low:high], strict=True)
            places.extend((o, numbers[i]) for i, o in window if i in numbers)
        places.sort()
        return places

    def migrated_logs(self, company_sso_id: str, external_ids: Collection[str]) -> Sequence[StoredLine]:
        places = self._places(company_sso_id, external_ids)
        found: list[StoredLine] = []
        if not places:
            return found
        with open(self._path, "rb") as stream:
            first, last = places[0][0], places[-1][0]
            if last - first <= _SPAN_BYTES:
                # A page's lines are near each other in a sink's file: one read, cut at each offset.
                stream.seek(first)
                span = stream.read(last - first) + stream.readline()
                for offset, external_id in places:
                    start = offset - first
                    end = span.find(b"\n", start)
                    found.append(StoredLine(external_id, span[start : None if end < 0 else end + 1], offset))
                return found
            for offset, external_id in places:  # ascending: one forward pass
                stream.seek(offset)
                found.append(StoredLine(external_id, stream.readline(), offset))
        return found

    def migrated_external_ids(self, company_sso_id: str) -> Iterator[str]:
        for (company, text), prefix in sorted(self._prefixes.items()):
            if company == company_sso_id:
                yield from (f"{text}{i}" for i, ours in zip(prefix.ids, prefix.ours, strict=True) if ours)
        for (company, external_id), places in sorted(self._others.items()):
            if company == company_sso_id:
                yield from (external_id for _, ours in places if ours)

    def content_of(self, log: ActivityLog) -> Mapping[str, object]:
        return LineContent(relaxed_json_bytes(log), log=log)

    def live_feed_candidates(
        self, keys: Collection[MatchKey], window: dt.timedelta
    ) -> Mapping[MatchKey, Sequence[StoredLog]]:
        return dict.fromkeys(keys, ())
