"""``MigratedLogReader`` over a dry run's output file: verify a dry run against its inputs.

The JSONL file (relaxed Extended JSON, one ``activity_logs`` document a line, as the sink writes
it) is scanned once at open; only a compact index stays in memory: per company and external-id
prefix (``crm:{tenant}:audit:``) the audit ids, sorted, with the byte offset of their lines (and
whether the line is a ``crm_migration`` one) — 17 bytes a log. Other external ids (not of that
shape) go to a small dict. A page then seeks to and parses only its lines.

The content form is the file's own line: a stored log's content is its line as read, a recomputed
log's the line the sink would write for it (``mongo.extended_json.relaxed_json_bytes``). Two equal
lines are equal content without parsing either — the common case, since the dry run wrote the line
from the same log. Otherwise each owned field is compared as the JSON text of its relaxed Extended
JSON value (``{"$numberDouble": "NaN"}`` for a NaN, so NaN equals itself), parsed on first use.
Parsing stays in orjson (no ``bson.json_util`` hooks). A dry run's file holds no live-feed logs:
``live_feed_candidates`` finds none.
"""

from __future__ import annotations

import datetime as dt
import json
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Collection, Iterator, Mapping, Sequence

import attrs
import orjson

from crm_audit_transform.domain import SOURCE_TAG, ActivityLog
from crm_audit_transform.enrichment import MatchKey, StoredLog
from crm_audit_transform.enrichment.model import as_referent_id
from crm_audit_transform.numerals import is_int_text, parse_int
from crm_audit_transform.timestamps import as_utc
from crm_audit_transform.verification import OWNED_FIELDS, MigratedDoc

from ..mongo.extended_json import relaxed_json_bytes
from .errors import FileFormatError
from .lines import PathLike

__all__ = ["JsonlMigratedLogReader", "LineContent", "json_content"]

_Q_MIN, _Q_MAX = -(2**63), 2**63 - 1


def _split(external_id: str) -> tuple[str, int] | None:
    """``crm:{tenant}:audit:{id}`` → (``crm:{tenant}:audit:``, id); None for any other shape."""
    prefix, sep, digits = external_id.rpartition(":audit:")
    if not sep or not prefix.startswith("crm:"):
        return None
    if not is_int_text(digits):
        return None
    number = parse_int(digits)
    return (prefix + sep, number) if _Q_MIN <= number <= _Q_MAX else None


# The sink's layouts: compact (orjson, today) and spaced (``json.dumps``, files of earlier releases).
_LAYOUTS = (
    (b'{"company_sso_id":"', b'"external_id":"', b'","source_tag":"'),
    (b'{"company_sso_id": "', b'"external_id": "', b'", "source_tag": "'),
)


def _sink_keys(raw: bytes) -> tuple[str, str, bool] | None:
    """(company, external_id, ours) read where the sink puts them, without parsing the line.

    The sink writes ``company_sso_id`` first and ``external_id`` right before ``source_tag``, after
    ``attributes``; a quote inside any JSON string is escaped, so ``"external_id":"`` occurs only
    as a key, and its last occurrence is the top-level one (``metadata`` holds no such key). object
    line not in that shape, or with an escape in these values, returns None and is parsed instead.
    """
    layout = next((keys for keys in _LAYOUTS if raw.startswith(keys[0])), None)
    if layout is None:
        return None
    company_key, external_key, tag_key = layout
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
    if not external_id or b"\\" in company + external_id + tag:
        return None
    return company.decode(), external_id.decode(), tag == SOURCE_TAG.encode()


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

    __slots__ = ("_fields", "_parsed", "line")

    def __init__(self, line: bytes, parsed: Mapping[str, object] | None = None) -> None:
        self.line = line.rstrip(b"\r\n")
        self._parsed = parsed
        self._fields: dict[str, object] | None = None

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


@attrs.define(slots=True)
class _Prefix:
    ids: array[int] = attrs.field(factory=lambda: array("q"))
    offsets: array[int] = attrs.field(factory=lambda: array("q"))
    ours: array[int] = attrs.field(factory=lambda: array("b"))

    def seal(self) -> None:
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
        split = _split(external_id)
        if split is None:
            self._others.setdefault((company, external_id), []).append((offset, ours))
            return
        prefix = self._prefixes.setdefault((company, split[0]), _Prefix())
        prefix.ids.append(split[1])
        prefix.offsets.append(offset)
        prefix.ours.append(ours)

    def _offsets(self, company_sso_id: str, external_ids: Collection[str]) -> list[int]:
        """The offsets of every line holding one of these ids, ascending."""
        offsets: list[int] = []
        wanted: dict[str, set[int]] = {}
        for external_id in set(external_ids):
            split = _split(external_id)
            if split is None:
                offsets.extend(o for o, _ in self._others.get((company_sso_id, external_id), ()))
            else:
                wanted.setdefault(split[0], set()).add(split[1])
        for text, numbers in wanted.items():
            prefix = self._prefixes.get((company_sso_id, text))
            if prefix is None:
                continue
            # A page asks for a run of ids: one slice of the sorted index, filtered by the set.
            ids = prefix.ids
            low, high = bisect_left(ids, min(numbers)), bisect_right(ids, max(numbers))
            window = zip(ids[low:high], prefix.offsets[low:high], strict=True)
            offsets.extend(o for i, o in window if i in numbers)
        offsets.sort()
        return offsets

    def migrated_logs(self, company_sso_id: str, external_ids: Collection[str]) -> Sequence[MigratedDoc]:
        offsets = self._offsets(company_sso_id, external_ids)
        found: list[MigratedDoc] = []
        if not offsets:
            return found
        with open(self._path, "rb") as stream:
            for offset in offsets:  # ascending: one forward pass
                stream.seek(offset)
                doc = _migrated_doc(stream.readline(), offset)
                if doc is not None:
                    found.append(doc)
        return found

    def migrated_external_ids(self, company_sso_id: str) -> Iterator[str]:
        for (company, text), prefix in sorted(self._prefixes.items()):
            if company == company_sso_id:
                yield from (f"{text}{i}" for i, ours in zip(prefix.ids, prefix.ours, strict=True) if ours)
        for (company, external_id), places in sorted(self._others.items()):
            if company == company_sso_id:
                yield from (external_id for _, ours in places if ours)

    def content_of(self, log: ActivityLog) -> Mapping[str, object]:
        return LineContent(relaxed_json_bytes(log))

    def live_feed_candidates(
        self, keys: Collection[MatchKey], window: dt.timedelta
    ) -> Mapping[MatchKey, Sequence[StoredLog]]:
        return dict.fromkeys(keys, ())
