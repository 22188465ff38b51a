"""The scanners that read a hostile record at C speed give what the one-step-a-character scanners
they replaced gave, kept here as references: a CSV record's end, field count and form read in blocks
(``psql_csv._RecordScan``), and the end of a JSON array or object nested past ``json``'s recursion
(``lines._collection_end``)."""

from __future__ import annotations

import itertools
import re
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from crm_audit_adapters.files import psql_csv
from crm_audit_adapters.files.errors import FileFormatError
from crm_audit_adapters.files.lines import _collection_end, shallow_object
from crm_audit_adapters.files.psql_csv import _RecordScan, leading_fields, split_record
from crm_audit_transform.loading import JsonbText

SETTINGS = settings(max_examples=400, derandomize=True, database=None, deadline=None)

_START, _PLAIN, _QUOTED, _CLOSED, _CLOSED_CR = range(5)
_PLAIN_STOP = re.compile(rb'[,"\n]')


class ReferenceRecordScan:
    """``_RecordScan`` as it was: one Python step a quote and a comma."""

    def __init__(self) -> None:
        self.state = _START
        self.fields = 1
        self.well_formed = True

    def end_of_file(self) -> bool:
        if self.state == _CLOSED_CR:
            self.well_formed = False
        return self.state != _QUOTED

    def feed(self, data: bytes) -> bool:
        pos, end = 0, len(data)
        while pos < end:
            state = self.state
            if state == _QUOTED:
                close = data.find(b'"', pos)
                if close < 0:
                    return False
                self.state, pos = _CLOSED, close + 1
                continue
            if state in (_PLAIN, _START):
                if state == _START and data[pos] == 0x22:
                    self.state, pos = _QUOTED, pos + 1
                    continue
                found = _PLAIN_STOP.search(data, pos)
                if found is None:
                    self.state = _PLAIN
                    return False
                char, pos = data[found.start()], found.end()
            else:
                char, pos = data[pos], pos + 1
                if state == _CLOSED and char == 0x22:
                    self.state = _QUOTED
                    continue
                if state == _CLOSED and char == 0x0D:
                    self.state = _CLOSED_CR
                    continue
                if char != 0x0A and (state == _CLOSED_CR or char != 0x2C):
                    self.well_formed = False
            if char == 0x2C:
                self.fields += 1
                self.state = _START
            elif char == 0x0A:
                return True
            elif char == 0x22:
                self.well_formed = False
                self.state = _QUOTED
            else:
                self.state = _PLAIN
        return False


_REFERENCE_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.S)


def reference_collection_end(text: str, start: int) -> int:
    """``_collection_end`` as it was: one Python step a string and a bracket."""
    depth = 0
    for token in _REFERENCE_TOKEN.finditer(text, start):
        kind = token.group()[0]
        if kind in "[{":
            depth += 1
        elif kind in "]}":
            depth -= 1
            if depth == 0:
                return token.end()
    raise ValueError("an array or object is not closed")


RECORD_BYTES = st.lists(
    st.sampled_from([b'"', b'""', b",", b"\n", b"\r", b"a", b'",', b'"\r\n']), max_size=40
)


def scanned(scan: _RecordScan | ReferenceRecordScan, blocks: list[bytes]) -> tuple[object, ...]:
    """What a scan tells after each block (and the state the next one starts in), up to the one
    holding the record's end (the scan is done with then), and at the file's end."""
    told: list[object] = []
    for block in blocks:
        ended = scan.feed(block)
        told.append((ended, None if ended else scan.state, scan.fields, scan.well_formed))
        if ended:
            return tuple(told)
    told.append(scan.end_of_file())
    return (*told, scan.well_formed)


@SETTINGS
@given(parts=RECORD_BYTES, cuts=st.lists(st.integers(0, 200), max_size=6))
def test_a_records_scan_tells_what_the_reference_tells_block_by_block(
    parts: list[bytes], cuts: list[int]
) -> None:
    data = b"".join(parts)
    edges = sorted({0, len(data), *(cut % (len(data) + 1) for cut in cuts)})
    blocks = [data[a:b] for a, b in itertools.pairwise(edges)]
    assert scanned(_RecordScan(), blocks) == scanned(ReferenceRecordScan(), blocks)


def test_a_record_of_quotes_is_one_quoted_field() -> None:
    scan = _RecordScan()
    assert not scan.feed(b'"' + b'""' * 100_000)
    assert scan.feed(b'",x\n')
    assert (scan.fields, scan.well_formed) == (2, True)


JSON_TEXT = st.lists(
    st.sampled_from(["[", "]", "{", "}", '"', "\\", ",", ":", " ", "a", '"a"', '"[', ']"', '\\"']),
    max_size=40,
)


def end_or_error(find: object, text: str, start: int) -> int | str:
    try:
        return find(text, start)  # type: ignore[operator,no-any-return]
    except ValueError as exc:
        return str(exc)


@SETTINGS
@given(opening=st.sampled_from(["[", "{"]), parts=JSON_TEXT, prefix=st.sampled_from(["", '{"a": ']))
def test_a_collections_end_is_the_references(opening: str, parts: list[str], prefix: str) -> None:
    text = prefix + opening + "".join(parts)
    start = len(prefix)
    assert end_or_error(_collection_end, text, start) == end_or_error(reference_collection_end, text, start)


def test_a_line_nested_a_million_deep_keeps_its_member_and_reads_on() -> None:
    deep = '{"a":[' * 500_000 + "1" + "]}" * 500_000
    line = '{"id": 7, "audited_changes": ' + deep + ', "tenant": "acme"}'
    found = shallow_object(line)
    assert (found["id"], found["tenant"]) == (7, "acme")
    assert found["audited_changes"] == JsonbText(deep)


_REFERENCE_FIELD = re.compile(r'"([^"]*(?:""[^"]*)*)"|([^,"]*)')


def fields_of(text: str) -> tuple[list[str | None] | str, list[str | None]]:
    """``split_record``'s fields (or its error's message) and ``leading_fields``' for ``text``."""
    try:
        found: list[str | None] | str = split_record("r.csv", 1, text.encode())
    except FileFormatError as exc:
        found = exc.message
    return found, leading_fields(text.encode())


@SETTINGS
@given(text=st.text(st.sampled_from('ab,"\r\n'), max_size=30))
def test_a_records_fields_are_what_the_greedy_field_regex_gave(text: str) -> None:
    with mock.patch.object(psql_csv, "_FIELD", _REFERENCE_FIELD):  # the same code, the old regex
        want = fields_of(text)
    assert fields_of(text) == want
