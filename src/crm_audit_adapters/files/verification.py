"""``MigratedLogReader`` over a dry run's output file: verify a dry run against its inputs.

The JSONL file (relaxed Extended JSON, one ``activity_logs`` document a line, as the sink writes
it) is scanned once at open into a compact index (``log_index.LogIndex``: per company and
external-id prefix the audit ids, sorted, with their lines' offsets — 17 bytes a log). A page then
reads only its lines (in one read when they lie near each other, as a sink writes them).

The content form is the file's own line: a stored log's content is its line as read, a recomputed
log's the line the sink would write for it (``mongo.extended_json.relaxed_json_bytes``). Two equal
lines are equal content without parsing either — the common case, since the dry run wrote the line
from the same log — and such a line is never parsed at all: :class:`StoredLine` builds its
``MigratedDoc`` from the recomputed log (every field of the line is that log's). Otherwise the line is
parsed and each field (a ``metadata`` key on its own) compared as the JSON text of its relaxed
Extended JSON value (``{"$numberDouble": "NaN"}`` for a NaN, so NaN equals itself), parsed on first
use.
Parsing stays in orjson (no ``bson.json_util`` hooks). A dry run's file holds no live-feed logs
(``holds_live_feed`` is False): ``live_feed_candidates`` finds none.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import BinaryIO, Final, TypeVar, cast

import orjson

from crm_audit_transform.domain import LOG_DOCUMENT_KEYS, SOURCE_TAG, ActivityLog
from crm_audit_transform.enrichment import MatchKey, StoredLog
from crm_audit_transform.enrichment.model import as_referent_id
from crm_audit_transform.json_scan import string_parts
from crm_audit_transform.loading import JsonbText
from crm_audit_transform.timestamps import as_utc
from crm_audit_transform.verification import MigratedDoc

from ..log_content import EncodedContent, encoded_fields
from ..mongo.bson_values import to_bson_datetime
from ..mongo.document_limits import MAX_DOCUMENT_BYTES
from . import output_tail
from .errors import FileFormatError
from .file_marks import FileMark
from .lines import LONG_LINE_HEAD, PathLike, json_error, shallow_object, too_many_values
from .log_index import LogIndex
from .long_lines import MembersTooLong, skim_long_line
from .sink import sink_line

__all__ = ["JsonlMigratedLogReader", "LineContent", "StoredLine", "canonical_json", "json_content"]

_T = TypeVar("_T")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_CANONICAL_BYTES: Final = 1 << 14
_FLOAT: Final = re.compile(rb"-?[0-9]+(?:\.[0-9]+)?[eE][-+]?[0-9]+|-?[0-9]+\.[0-9]+")
_NUMBER_TAIL: Final = re.compile(rb"[-+.0-9eE]+\Z")
_MILLIS = re.compile(r"-?[0-9]{1,19}")
_SPAN_BYTES = 16 << 20
"""A page whose lines lie within this many bytes is read in one go (else line by line)."""
_HELD_LINE_BYTES: Final = LONG_LINE_HEAD
"""A stored line longer than this (1 MiB) is never held whole (``StoredLine.long``)."""
_LONGEST_SINK_LINE: Final = 6 * MAX_DOCUMENT_BYTES
"""No line a sink writes is longer: its document is at most 16 MiB of BSON, and relaxed JSON spends
at most 6 bytes for one of BSON (a control character's ``\\u001f``; a 0-byte ``$binary`` is 5.7). A
long stored line that is not the recomputed one is read whole, to be compared field by field, only
up to this length; a longer one is none of ours (``parsed`` is None: not clean)."""
_DOC_MEMBERS: Final = LOG_DOCUMENT_KEYS
"""What a long stored line is read for: ``_migrated_doc``'s fields and the owned ones, every key of
the sink's document."""


def _span_is(path: PathLike, offset: int, expected: bytes) -> bool:
    """Whether the file's bytes from ``offset`` are ``expected``, compared a block at a time."""
    with open(path, "rb") as stream:
        stream.seek(offset)
        for start in range(0, len(expected), _HELD_LINE_BYTES):
            block = expected[start : start + _HELD_LINE_BYTES]
            if stream.read(len(block)) != block:
                return False
    return True


def _line_number(path: PathLike, offset: int) -> int:
    """The 1-based number of the line that starts at ``offset``: its line ends before it, counted a
    block at a time (only for an error's message)."""
    ends = 0
    with open(path, "rb") as stream:
        while (left := offset - stream.tell()) > 0 and (block := stream.read(min(left, _HELD_LINE_BYTES))):
            ends += block.count(b"\n")
    return ends + 1


def _dumps(value: object) -> bytes:
    if isinstance(value, JsonbText):
        return canonical_json(value.text)  # a member of too many values to decode: never decoded
    try:
        return orjson.dumps(value)
    except TypeError:  # a lone surrogate, in a line an earlier release wrote with json.dumps
        return json.dumps(value).encode()


def canonical_json(text: str) -> bytes:
    """JSON text as the sink writes it today, read ``_CANONICAL_BYTES`` at a time without decoding
    it whole: no blanks outside strings, a string that holds an escape or a character past ASCII
    as orjson writes it (UTF-8, no ``\\u`` escape but a control character's), a number with a
    fraction or an exponent as orjson spells its double (``1e-7``, where ``json.dumps`` wrote
    ``1e-07``). What a member of too many values (``JsonbText``) is compared as: an earlier
    release's line, in ``json.dumps``' spaced and ASCII-escaped layout, then holds the same member
    as the line the sink writes for the same log, where compared as written they differed (drift
    where there was none). Text that is not JSON is compared as written, piece by piece alike."""
    raw = text.encode("utf-8", "surrogatepass")
    out = bytearray()
    pos, size = 0, len(raw)
    while pos < size:
        end = min(size, pos + _CANONICAL_BYTES)
        while True:
            parts, cut = string_parts(raw, pos, end)
            if cut == end < size and (tail := _NUMBER_TAIL.search(parts[-1])) is not None:
                parts[-1] = parts[-1][: tail.start()]  # a number the piece may cut: the next one's
                cut -= tail.end() - tail.start()
            elif cut < end == size:  # a string that never closes: as written
                parts += [raw[cut:], b""]
                cut = size
            if cut > pos:
                break
            end = min(size, pos + 2 * (end - pos))  # one string or number fills the piece: read on
        for index, part in enumerate(parts):
            out += _canonical_string(part) if index % 2 else _canonical_outside(part)
        pos = cut
    return bytes(out)


def _canonical_string(part: bytes) -> bytes:
    if part.isascii() and b"\\" not in part:
        return part
    try:
        return orjson.dumps(json.loads(part))
    except (ValueError, TypeError):  # not a closed string, or a lone surrogate orjson refuses
        return part


def _canonical_outside(part: bytes) -> bytes:
    part = part.translate(None, b" \t\n\r")
    if b"." in part or b"e" in part or b"E" in part:
        part = _FLOAT.sub(_canonical_float, part)
    return part


def _canonical_float(number: re.Match[bytes]) -> bytes:
    value = float(number.group())
    return orjson.dumps(value) if math.isfinite(value) else number.group()


def _loads(line: bytes) -> object:
    if too_many_values(line):
        # Decoded whole, a 24 MB line of ``[],`` held 807 MiB: a member of more values than
        # lines.MAX_MEMBER_VALUES (or past them, with the members before it) is kept as its text.
        return shallow_object(line.decode())
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:  # as above: json reads what orjson refuses
        return json.loads(line)


def json_content(doc: Mapping[str, object]) -> dict[str, object]:
    """Every field of a relaxed-JSON document as JSON text (``bytes``), a ``metadata`` key an entry
    of its own (``metadata.<key>``): the shape ``verification.drifted_fields`` compares."""
    return encoded_fields(doc, _dumps)


class LineContent(EncodedContent):
    """A log's fields as the JSONL line that holds it: equal lines compare without parsing.

    As a mapping it is :func:`json_content` of the parsed line, computed on first use; ``==``
    with another ``LineContent`` is True at once when the lines are byte-equal (every field of the
    line is then equal), and otherwise compares those mappings.
    """

    __slots__ = ("_parsed", "line")

    def __init__(
        self, line: bytes, parsed: Mapping[str, object] | None = None, log: ActivityLog | None = None
    ) -> None:
        super().__init__(log)  # the recomputed log the line was written from (``content_of``), if any
        self.line = line.rstrip(b"\r\n")
        self._parsed = parsed

    @property
    def whole(self) -> bytes:
        return self.line

    def _fields_now(self) -> dict[str, object]:
        doc = self._parsed if self._parsed is not None else _loads(self.line)
        if not isinstance(doc, Mapping):  # the reader only hands over lines holding an object
            raise TypeError(f"not a JSON object: {self.line[:60]!r}")
        self._parsed = None
        return json_content(doc)

    def __repr__(self) -> str:
        return f"LineContent({self.line[:60]!r}…)"


def _timestamp(value: object) -> dt.datetime | None:
    """A ``{"$date": …}`` as the sink writes it: ISO text from 1970 on, ``{"$numberLong": "<ms>"}``
    (milliseconds from the epoch, canonical Extended JSON) before it; None for anything else."""
    date = value.get("$date") if isinstance(value, dict) else None
    if isinstance(date, dict):
        millis = date.get("$numberLong") if len(date) == 1 else None
        if not isinstance(millis, str) or _MILLIS.fullmatch(millis) is None:
            return None
        try:
            return _EPOCH + dt.timedelta(milliseconds=int(millis))
        except OverflowError:  # before year 1 or after 9999: no datetime, so no log of ours
            return None
    if not isinstance(date, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(date.replace("Z", "+00:00"))
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

    A line longer than ``_HELD_LINE_BYTES`` (1 MiB) is never held whole (``long``: its file and
    length, ``line`` empty): ``same_as`` compares its length, then its bytes a block at a time, with
    the recomputed line; ``parsed`` reads the members a log's document is made of
    (``long_lines.skim_long_line``, each at most 1 MiB); a line with a longer one is read whole as
    before when a sink could have written it (``_LONGEST_SINK_LINE``), else it is None (not a log
    of ours: never held). ``content`` reads a long line alike (``FileFormatError`` where ``parsed`` is
    None for its length).

    A line that is no JSON document (a NUL byte, a UTF-8 sequence cut short, a line torn: the index
    reads a line in the sink's layout for its keys alone) is ``FileFormatError`` from ``parsed``,
    naming ``path`` and the line's number, as a line that is not a JSON object is when the reader
    indexes the file. ``mark``: the reader's look at the file (``file_marks.FileMark``), checked
    after a long line is read again (``FileChangedWhileRead`` when the file changed meanwhile).
    """

    __slots__ = ("_mark", "external_id", "line", "long", "offset", "path")

    def __init__(
        self,
        external_id: str,
        line: bytes,
        offset: int,
        long: tuple[PathLike, int] | None = None,
        *,
        path: PathLike | None = None,
        mark: FileMark | None = None,
    ) -> None:
        self.external_id = external_id
        self.line = line.rstrip(b"\r\n")
        self.offset = offset
        self.long = long
        self.path = path if path is not None or long is None else long[0]
        self._mark = mark

    @property
    def content(self) -> LineContent:
        """The line's :class:`LineContent`: the mapping ``parsed().content`` is, whenever ``parsed``
        gives a document. A long line is read for its document members, or whole when one of them is
        past 1 MiB and a sink could have written the line (``_LONGEST_SINK_LINE``); ``FileFormatError``
        for a longer one (``parsed`` is then None: none of ours), which is never held."""
        if self.long is None:
            return LineContent(self.line)
        line = self._readable()
        if line is None:
            path, length = self.long
            raise FileFormatError(
                path,
                0,
                f"the line at byte {self.offset} is {length} bytes, longer than any line a sink writes, "
                f"and holds a member longer than {_HELD_LINE_BYTES} bytes: it is not read",
            )
        return LineContent(line)

    def same_as(self, expected: Mapping[str, object]) -> bool:
        if type(expected) is not LineContent:
            return False
        if self.long is None:
            if expected.line != self.line:
                return False
        elif len(expected.line) != self.long[1] or not self._checked(
            _span_is(self.long[0], self.offset, expected.line)
        ):
            return False
        log = expected.log
        # Before 1970 the sink writes {"$numberLong"}: such a line is parsed, not recomputed.
        return log is not None and log.timestamp >= _EPOCH

    def parsed(self, expected: Mapping[str, object] | None = None) -> MigratedDoc | None:
        if expected is not None and self.same_as(expected):
            content = cast(LineContent, expected)
            return _recomputed_doc(cast(ActivityLog, content.log), content, self.offset)
        line = self.line if self.long is None else self._readable()
        if line is None:
            return None
        try:
            return _migrated_doc(line, self.offset)
        except ValueError as exc:  # the index read its keys alone; orjson and json both refuse it
            raise self._unreadable(exc) from None

    def source_tag(self) -> str:
        """The line's ``source_tag`` as MongoDB's stray stream gives a document's: its text, ``""``
        for none or one that is not a string. A long line is read for its document members (a line
        longer than any a sink writes is none of ours: ``""``); ``FileFormatError`` naming the line
        when it is no JSON document, as from ``parsed``."""
        line = self.line if self.long is None else self._readable()
        if line is None:
            return ""
        try:
            doc = _loads(line)
        except ValueError as exc:
            raise self._unreadable(exc) from None
        tag = doc.get("source_tag") if isinstance(doc, dict) else None
        return tag if isinstance(tag, str) else ""

    def _unreadable(self, exc: ValueError) -> FileFormatError:
        """The error of a line that is no JSON document, naming its line (counted only now)."""
        if isinstance(exc, UnicodeDecodeError):
            why = f"not UTF-8 (byte {exc.start})"
        elif isinstance(exc, json.JSONDecodeError):
            why = f"not JSON: {json_error(exc)}"
        else:
            why = f"not JSON: {exc}"
        return self._refused(why)

    def _refused(self, why: str) -> FileFormatError:
        """``FileFormatError`` for this line, ``why`` it is no document, naming its line number."""
        if self.path is None:
            return FileFormatError("<stored line>", 0, f"the line at byte {self.offset}: {why}")
        return FileFormatError(self.path, _line_number(self.path, self.offset), f"a stored log's line {why}")

    def _checked(self, value: _T) -> _T:
        """``value`` read from the file again, once the file is known not to have changed since the
        reader's look at it (``FileChangedWhileRead`` otherwise)."""
        if self._mark is not None:
            self._mark.check()
        return value

    def _readable(self) -> bytes | None:
        """A long line as it is read: its document members (``_short``), or the whole line when one
        is past 1 MiB and a sink could have written it; None when it is longer (none of ours).
        ``FileFormatError`` naming it when it is not one JSON object, found in blocks: the whole line
        is no JSON either, and was read whole (up to ``_LONGEST_SINK_LINE``) to be refused."""
        try:
            return self._short()
        except MembersTooLong:
            pass  # a member past 1 MiB: it cannot be read without holding the line
        except FileFormatError:
            self._checked(None)  # a line changed under the read is told as such, not as malformed
            raise self._refused("not JSON: not one object (read in blocks)") from None
        assert self.long is not None
        path, length = self.long
        if length > _LONGEST_SINK_LINE:
            return None  # longer than any line a sink writes: none of ours, never held
        with open(path, "rb") as stream:
            stream.seek(self.offset)
            return self._checked(stream.read(length))

    def _short(self) -> bytes:
        """The long line's document members alone (``FileFormatError`` when one is too long)."""
        assert self.long is not None
        path = self.long[0]
        with open(path, "rb") as stream:
            stream.seek(self.offset)
            head = stream.readline(_HELD_LINE_BYTES)
            return self._checked(
                # The file's first line may start with a BOM, which the skim passes over (line 1).
                skim_long_line(
                    path, int(self.offset == 0), head, stream.readline, _DOC_MEMBERS, _HELD_LINE_BYTES
                )
            )

    def __repr__(self) -> str:
        return f"StoredLine({self.external_id!r}, offset={self.offset})"


class JsonlMigratedLogReader:
    """``ports.MigratedLogReader`` over a dry run's ``--out`` file (which must not change meanwhile).

    ``torn_tail``: a last line the sink would drop as torn when it opens the file (a kill
    mid-write, ``output_tail.torn_tail``) is left out rather than refused, and ``torn_at`` is its
    offset (else None). Only for an output whose dry run did not finish: a finished one has no such
    line, and one is then refused (``FileFormatError``, as any line that is not a JSON object).

    The file is looked at when it is opened and after each read of its lines
    (``file_marks.FileMark``, as a file source looks at its audits file): one cut short, rewritten
    or replaced since is ``FileChangedWhileRead`` (``BAD_INPUT``), not read at the offsets the index
    found in the file it was (another log's line, or none). Lines appended since are let be.
    """

    def __init__(self, path: PathLike, *, torn_tail: bool = False) -> None:
        self._path = path
        self.torn_at: int | None = None
        self._mark = FileMark(path)
        self._mark.check()  # before the index reads it: a change from here on is seen
        with open(path, "rb") as stream:
            if torn_tail and (torn_at := output_tail.torn_tail(stream, path)) is not None:
                self.torn_at = torn_at
                self._index = LogIndex.of_stream(output_tail.upto(stream, torn_at), path)
                return
            stream.seek(0)
            self._index = LogIndex.of_stream(stream, path)

    def migrated_logs(self, company_sso_id: str, external_ids: Collection[str]) -> Sequence[StoredLine]:
        found = self._lines(company_sso_id, external_ids)
        if found:
            self._mark.check()  # the lines read are the indexed file's, not another's at its offsets
        return found

    def _lines(self, company_sso_id: str, external_ids: Collection[str]) -> list[StoredLine]:
        places = self._index.places(company_sso_id, external_ids)
        found: list[StoredLine] = []
        if not places:
            return found
        with open(self._path, "rb") as stream:
            first, last = places[0][0], places[-1][0]
            if last - first <= _SPAN_BYTES:
                # A page's lines are near each other in a sink's file: one read, cut at each offset
                # (each of those lines ends before the next place); the last line is read alone.
                stream.seek(first)
                span = stream.read(last - first)
                for offset, external_id in places[:-1]:
                    start = offset - first
                    end = span.find(b"\n", start)
                    held = span[start : None if end < 0 else end + 1]
                    found.append(StoredLine(external_id, held, offset, path=self._path))
                found.append(self._line_at(stream, *places[-1]))
                return found
            for offset, external_id in places:  # ascending: one forward pass
                found.append(self._line_at(stream, offset, external_id))
        return found

    def _line_at(self, stream: BinaryIO, offset: int, external_id: str) -> StoredLine:
        """The stored line at ``offset``: held when it is at most ``_HELD_LINE_BYTES``, else only
        measured (read on in blocks to its end) and read again on demand (``StoredLine.long``)."""
        stream.seek(offset)
        line = stream.readline(_HELD_LINE_BYTES)
        if len(line) < _HELD_LINE_BYTES or line.endswith(b"\n"):
            return StoredLine(external_id, line, offset, path=self._path)
        while (block := stream.readline(_HELD_LINE_BYTES)) and not block.endswith(b"\n"):
            pass
        length = stream.tell() - offset - (1 if block.endswith(b"\n") else 0)
        if block.endswith(b"\r\n"):
            length -= 1
        return StoredLine(external_id, b"", offset, long=(self._path, length), mark=self._mark)

    def migrated_external_ids(self, company_sso_id: str) -> Iterator[str]:
        return self._index.external_ids(company_sso_id)

    def non_string_external_ids(self, company_sso_id: str) -> Iterator[str]:
        """``ports.log_stores.NonStringExternalIds``, as ``MongoMigratedLogReader`` gives it: each
        ``crm_migration`` line's ``external_id`` that is there but not a string, as its relaxed
        Extended JSON (``log_index.non_string_text``), one a line, in file order, so verify reports
        such a line as a stray, as it does a log MongoDB's reader streams."""
        return self._index.non_string_external_ids(company_sso_id)

    def tagged_external_ids(self, company_sso_id: str, prefix: str) -> Iterator[tuple[str, str]]:
        """``ports.TaggedExternalIds``, as ``MongoMigratedLogReader`` gives it: ``(external_id,
        source_tag)`` of every ``crm_migration`` line of the company (one a line), and of every other
        line of it whose external_id starts with ``prefix`` (``crm:{tenant}:audit:``), its tag read
        from its line (``StoredLine.source_tag``: rare, an id collision; the index keeps only whether
        a line is ours). The file is looked at once such lines were read (``FileChangedWhileRead``)."""
        read_any = False
        with open(self._path, "rb") as stream:
            for external_id, offset, ours in self._index.tagged_places(company_sso_id, prefix):
                if ours:
                    yield external_id, SOURCE_TAG
                    continue
                read_any = True
                yield external_id, self._line_at(stream, offset, external_id).source_tag()
        if read_any:
            self._mark.check()  # the tags read are the indexed file's, not another's at its offsets

    def content_of(self, log: ActivityLog) -> Mapping[str, object]:
        """``ValueError`` with the sink's reason when it fails the log ``write_error`` (``sink_line``:
        past MongoDB's 16 MiB, or a value it cannot encode), as the Mongo reader does."""
        why, line = sink_line(log)
        if why:
            raise ValueError(why)
        return LineContent(line[:-1], log=log)

    @property
    def holds_live_feed(self) -> bool:
        """A dry run's file holds no live-feed logs."""
        return False

    def live_feed_candidates(
        self, keys: Collection[MatchKey], window: dt.timedelta
    ) -> Mapping[MatchKey, Sequence[StoredLog]]:
        return dict.fromkeys(keys, ())
