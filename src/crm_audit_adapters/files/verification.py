"""``MigratedLogReader`` over a dry run's output file: verify a dry run against its inputs.

The JSONL file (relaxed Extended JSON, one ``activity_logs`` document a line, as the sink writes
it) is scanned once at open; only a compact index stays in memory: per company and external-id
prefix (``crm:{tenant}:audit:``) the audit ids, sorted, with the byte offset of their lines (and
whether the line is a ``crm_migration`` one) — 17 bytes a log. Other external ids (not of that
shape) go to a small dict. A page then seeks to and parses only its lines.

The content form is the file's own: each owned field as the JSON text of its relaxed Extended JSON
value (``json.dumps`` of the parsed line's field; ``{"$numberDouble": "NaN"}`` for a NaN, so NaN
equals itself), and for a recomputed log the same of ``mongo.extended_json.relaxed_json_document``
— exactly what the sink writes. Parsing stays in the C JSON decoder (no ``bson.json_util``
hooks). A dry run's file holds no live-feed logs: ``live_feed_candidates`` finds none.
"""

from __future__ import annotations

import datetime as dt
import json
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any

import attrs

from crm_audit_transform.domain import SOURCE_TAG, ActivityLog
from crm_audit_transform.enrichment import MatchKey, StoredLog, as_referent_id
from crm_audit_transform.verification import OWNED_FIELDS, MigratedDoc

from ..mongo.extended_json import relaxed_json_document
from .errors import FileFormatError
from .lines import PathLike

__all__ = ["JsonlMigratedLogReader", "json_content"]

_Q_MIN, _Q_MAX = -(2**63), 2**63 - 1


def _split(external_id: str) -> tuple[str, int] | None:
    """``crm:{tenant}:audit:{id}`` → (``crm:{tenant}:audit:``, id); None for any other shape."""
    prefix, sep, digits = external_id.rpartition(":audit:")
    if not sep or not prefix.startswith("crm:"):
        return None
    body = digits[1:] if digits.startswith("-") else digits
    if not (body.isascii() and body.isdigit()):
        return None
    number = int(digits)
    return (prefix + sep, number) if _Q_MIN <= number <= _Q_MAX else None


_DUMPS = json.JSONEncoder(ensure_ascii=False).encode
_COMPANY = b'{"company_sso_id": "'
_EXTERNAL_ID = b'"external_id": "'
_SOURCE_TAG = b'", "source_tag": "'


def _sink_keys(raw: bytes) -> tuple[str, str, bool] | None:
    """(company, external_id, ours) read where the sink puts them, without parsing the line.

    The sink writes ``company_sso_id`` first and ``external_id`` right before ``source_tag``, after
    ``attributes``; a quote inside any JSON string is escaped, so ``"external_id": "`` occurs only
    as a key, and its last occurrence is the top-level one (``metadata`` holds no such key). Any
    line not in that shape, or with an escape in these values, returns None and is parsed instead.
    """
    if not raw.startswith(_COMPANY):
        return None
    company_end = raw.find(b'"', len(_COMPANY))
    key = raw.rfind(_EXTERNAL_ID)
    if company_end < 0 or key < 0:
        return None
    start = key + len(_EXTERNAL_ID)
    end = raw.find(b'"', start)
    if end < 0 or not raw.startswith(_SOURCE_TAG, end):
        return None
    tag_start = end + len(_SOURCE_TAG)
    tag_end = raw.find(b'"', tag_start)
    if tag_end < 0:
        return None
    company, external_id, tag = raw[len(_COMPANY) : company_end], raw[start:end], raw[tag_start:tag_end]
    if not external_id or b"\\" in company + external_id + tag:
        return None
    return company.decode(), external_id.decode(), tag == SOURCE_TAG.encode()


def json_content(doc: Mapping[str, Any]) -> dict[str, object]:
    """The owned fields of a relaxed-JSON document as JSON text, one string per field present."""
    return {name: _DUMPS(doc[name]) for name in OWNED_FIELDS if name in doc}


def _timestamp(value: Any) -> dt.datetime | None:
    text = value.get("$date") if isinstance(value, dict) else None
    if not isinstance(text, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _migrated_doc(doc: Any, offset: int) -> MigratedDoc | None:
    """A line's document as verify reads it; None when it lacks what a log must have."""
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
        content=json_content(doc),
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
                doc: Any = json.loads(raw)
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

    def _offsets(self, company_sso_id: str, external_id: str) -> list[int]:
        split = _split(external_id)
        if split is None:
            return [offset for offset, _ in self._others.get((company_sso_id, external_id), ())]
        prefix = self._prefixes.get((company_sso_id, split[0]))
        if prefix is None:
            return []
        low = bisect_left(prefix.ids, split[1])
        return list(prefix.offsets[low : bisect_right(prefix.ids, split[1], low)])

    def migrated_logs(self, company_sso_id: str, external_ids: Collection[str]) -> Sequence[MigratedDoc]:
        offsets = sorted(o for ext in set(external_ids) for o in self._offsets(company_sso_id, ext))
        found: list[MigratedDoc] = []
        if not offsets:
            return found
        with open(self._path, "rb") as stream:
            for offset in offsets:  # ascending: one forward pass
                stream.seek(offset)
                doc = _migrated_doc(json.loads(stream.readline()), offset)
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
        return json_content(relaxed_json_document(log))

    def live_feed_candidates(
        self, keys: Collection[MatchKey], window: dt.timedelta
    ) -> Mapping[MatchKey, Sequence[StoredLog]]:
        return dict.fromkeys(keys, ())
