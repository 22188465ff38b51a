"""Finding the end of a member of too many values, and passing over a long line's member: a step a
piece, not a step a bracket or a string (~10 s for a 24 MB member of ``[],[],…``; over a minute to
skim a long ``--out`` line of it). Counted in the reading module's lines run (a line tracer, not a
timing): on the old code each took thousands of steps where a handful are taken now. The pieces'
bookkeeping (halved, doubled, pairs dropped a pass at a time) is checked against the scans a bracket
a step with pieces of a few bytes.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crm_audit_adapters.files import lines, long_lines
from crm_audit_adapters.files.lines import MAX_MEMBER_VALUES, numbered_lines
from crm_audit_transform import json_scan

WIDE = "[" + "[]," * (3 * MAX_MEMBER_VALUES) + "[]]"


def steps_in(module: object, call: Callable[[], object]) -> int:
    """Lines of ``module``'s source run while ``call()`` runs."""
    name = module.__file__  # type: ignore[attr-defined]
    count = 0

    def local(frame: FrameType, event: str, arg: object) -> Any:
        nonlocal count
        if event == "line":
            count += 1
        return local

    def tracer(frame: FrameType, event: str, arg: object) -> Any:
        return local if frame.f_code.co_filename == name else None

    sys.settrace(tracer)
    try:
        call()
    finally:
        sys.settrace(None)
    return count


class TestSteps:
    """A step a piece, not a step a bracket: counted in the reading module's lines run."""

    @pytest.mark.parametrize(
        "member",
        [
            WIDE,
            "[" + '"",' * 100_000 + '""]',
            "[" + '["a"],' * 50_000 + "1]",
            "[" + ("[" * 9 + "]" * 9 + ",") * 10_000 + "1]",
            "[" + ("[" * 10 + '"a"' + "]" * 10 + ",") * 30_000 + "1]",
        ],
        ids=["empty-arrays", "strings", "arrays-of-a-string", "nested-9", "strings-nested-10"],
    )
    def test_a_collections_end_is_found_in_few_steps(self, member: str) -> None:
        text = '{"a": ' + member + ', "b": 1}'
        assert lines._collection_end(text, 6) == 6 + len(member)
        assert steps_in(lines, lambda: lines._collection_end(text, 6)) < len(member) // 100  # ~1 a bracket

    @pytest.mark.parametrize(
        "member",
        [
            WIDE,
            "[" + '"",' * 100_000 + '""]',
            "[" + '["a"],' * 50_000 + "1]",
            "[" + '{"a": "b"},' * 30_000 + "1]",
        ],
        ids=["empty-arrays", "strings", "arrays-of-a-string", "objects"],
    )
    def test_a_long_lines_member_not_read_is_passed_over_a_piece_a_step(
        self, tmp_path: Path, member: str
    ) -> None:
        """Strings within a piece are passed over with it: a step a string or a bracket took ~20
        steps a byte of ``"",``."""
        path = tmp_path / "users.jsonl"
        path.write_text('{"id": 1, "x": {"a": ' + member + '}, "tenant": "t"}\n')

        def skim() -> list[tuple[int, bytes]]:
            return list(numbered_lines(path, 1 << 16, keep={"tenant", "id"}, hold_bytes=1 << 16))

        assert skim() == [(1, b'{"id":1,"tenant":"t"}\n')]
        assert steps_in(long_lines, skim) < len(member) // 100


JSON_PARTS = st.lists(
    st.sampled_from(["[", "]", "{", "}", "[]", "{}", '"', '"a"', '"]"', "\\", ",", " ", "1", "[[[", "]]]"]),
    max_size=120,
)


@settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(opening=st.sampled_from(["[", "{"]), parts=JSON_PARTS, balanced=st.integers(0, 2))
def test_a_collections_end_in_small_pieces_is_the_one_found_a_bracket_a_step(
    opening: str, parts: list[str], balanced: int
) -> None:
    """Pieces of 4 to 16 characters, so every text here is read a piece at a time, halved and
    doubled, and compared with a scan a bracket a step; balanced runs of 0 to 2 levels, so strings
    nest deeper than a run reads (read a piece at a time, their strings passed over whole)."""
    text = opening + "".join(parts)
    want = _reference_end(text)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(lines, "_PIECE", 16)
        patch.setattr(lines, "_LEAF", 4)
        patch.setattr(lines, "_PASSES", 2)
        patch.setattr(lines, "_BALANCED", lines._balanced(lines._FLAT, balanced))
        try:
            got: int | str = lines._collection_end(text, 0)
        except ValueError as exc:
            got = str(exc)
    assert got == want


def _reference_end(text: str) -> int | str:
    """The end a scan a string or a bracket a step finds (``test_hostile_scans``' reference)."""
    depth = 0
    for token in re.finditer(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', text, re.S):
        if token.group()[0] in "[{":
            depth += 1
        elif token.group()[0] in "]}":
            depth -= 1
            if depth == 0:
                return token.end()
    return "an array or object is not closed"


@settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(parts=JSON_PARTS, cut=st.integers(1, 40))
def test_a_long_lines_scan_in_pieces_tells_what_its_step_a_bracket_scan_tells(
    parts: list[str], cut: int
) -> None:
    """The scan reading brackets a piece at a time (``_Scan._inside``) keeps and refuses what the
    scan a bracket a step does, fed in blocks of ``cut`` bytes."""
    data = ('{"a": [' + "".join(parts) + '], "id": [' + "".join(parts) + "]}").encode()
    blocks = [data[i : i + cut] for i in range(0, len(data), cut)]

    def scanned(fast: bool) -> tuple[object, ...]:
        scan = long_lines._Scan({"id"})
        if not fast:
            scan._inside = lambda data, pos: pos  # type: ignore[method-assign]
        for block in blocks:
            scan.feed(block)
        return scan.members, scan.malformed, scan.in_string, scan.state, bytes(scan.closers)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(long_lines, "_INSIDE_BYTES", 2)
        patch.setattr(long_lines, "_PIECE", 8)
        patch.setattr(long_lines, "_PASSES", 2)
        assert scanned(True) == scanned(False)


_STRING = re.compile(rb'"[^"\\]*+(?:\\.?[^"\\]*+)*+"?', re.S)
"""A string as ``json_values`` reads it: to its closing quote, or to the end when none closes it."""


def _reference_values(text: bytes) -> int:
    """``json_values`` as it was: the text's strings cut out all at once."""
    bare = _STRING.sub(b"0", text).translate(None, b" \t\n\r")
    collections = bare.count(b"[") + bare.count(b"{")
    return 1 + bare.count(b",") + collections - bare.count(b"[]") - bare.count(b"{}")


@settings(max_examples=400, derandomize=True, database=None, deadline=None)
@given(
    parts=st.lists(
        st.sampled_from(['"', '""', '"a"', "\\", '\\"', "[", "]", "{", "}", ",", " ", "1", "é"]), max_size=60
    ),
    piece=st.integers(1, 12),
)
def test_values_counted_a_piece_at_a_time_are_those_counted_at_once(parts: list[str], piece: int) -> None:
    """In bytes (a line) and in text (a comment, ``rules.contact``): one count, ``json_scan``'s."""
    text = "".join(parts)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(json_scan, "_COUNT_BYTES", piece)
        assert lines.json_values(text.encode()) == _reference_values(text.encode())
        assert json_scan.json_values(text) == _reference_values(text.encode())
