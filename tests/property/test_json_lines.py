"""The files adapters' JSON line reader gives exactly what ``json.loads`` gives, whichever decoder ran."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crm_audit_adapters.files import lines as lines_module
from crm_audit_adapters.files.errors import FileFormatError
from crm_audit_adapters.files.lines import json_objects, lines_from_end

SETTINGS = settings(max_examples=150, deadline=None)

# Integers on both sides of 64 bits (orjson turns the larger ones into floats), floats of every
# kind json writes, and text with escapes, astral characters and control characters.
integers = st.one_of(
    st.integers(min_value=-(2**63) - 2, max_value=2**64 + 2),
    st.sampled_from([2**63 - 1, -(2**63), -(2**63) - 1, 2**64 - 1, 2**64, 10**30, -(10**30)]),
)
floats = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.sampled_from([-0.0, 1e300, 5e-324]))
texts = st.text(alphabet=st.characters(codec="utf-8"), max_size=12)
scalars = st.one_of(st.none(), st.booleans(), integers, floats, texts)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(texts, inner, max_size=4)),
    max_leaves=12,
)
objects = st.dictionaries(texts, values, max_size=6)


def same(found: Any, expected: Any) -> bool:
    """Equal with types: 1 and 1.0 (and True and 1) are different values in a row."""
    if type(found) is not type(expected):
        return False
    if isinstance(expected, dict):
        return list(found) == list(expected) and all(same(found[k], expected[k]) for k in expected)
    if isinstance(expected, list):
        return len(found) == len(expected) and all(map(same, found, expected))
    if isinstance(expected, float):
        if math.isnan(expected):
            return math.isnan(found)
        return math.copysign(1, found) == math.copysign(1, expected) and found == expected
    return bool(found == expected)


class TestSameAsJsonLoads:
    @SETTINGS
    @given(st.lists(objects, min_size=1, max_size=5), st.booleans())
    def test_any_object_line_reads_back_as_json_loads_reads_it(
        self, tmp_path_factory: pytest.TempPathFactory, records: list[dict[str, Any]], ascii_only: bool
    ) -> None:
        """Every line, compact or with \\u escapes, is the json module's value, types included."""
        path = tmp_path_factory.mktemp("lines") / "x.jsonl"
        lines = [json.dumps(record, ensure_ascii=ascii_only) for record in records]
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        found = [value for _, value in json_objects(path)]
        assert all(map(same, found, [json.loads(line) for line in lines]))

    @pytest.mark.parametrize(
        "line",
        [
            '{"id": 123456789012345678901234567890}',
            '{"id": -9223372036854775809}',
            '{"changes": {"n": [1, 18446744073709551616]}}',
            '{"a": NaN, "b": Infinity, "c": 1e400}',
            '{"a": "\\ud800"}',
            '{"a": 1, "a": 2, "b": 3}',
        ],
    )
    def test_lines_orjson_would_misread_or_refuse_are_read_as_json_reads_them(
        self, tmp_path: Path, line: str
    ) -> None:
        """Big integers stay exact, lenient literals and lone surrogates load, duplicates keep the last."""
        path = tmp_path / "x.jsonl"
        path.write_text("\ufeff" + line + "\n" + line + "\n", encoding="utf-8")  # BOM on line 1 only
        expected = json.loads(line)
        assert [same(value, expected) for _, value in json_objects(path)] == [True, True]

    @pytest.mark.parametrize(
        ("raw", "message"),
        [
            (b'{"a": 1,}\n', "not JSON: Expecting property name enclosed in double quotes at column 9"),
            (b"[1, 2]\n", "expected a JSON object, found list"),
            (b'{"a": "\xff"}\n', "not UTF-8 (byte 7)"),
            (b'{"a": "\x00"}\n', "not JSON: Invalid control character at column 8"),  # not "at at"
            (b'{"a": "b', "not JSON: Unterminated string starting at column 7"),
        ],
    )
    def test_a_bad_line_keeps_the_json_modules_wording(
        self, tmp_path: Path, raw: bytes, message: str
    ) -> None:
        """What neither decoder takes is reported with the line number and json's own message."""
        path = tmp_path / "x.jsonl"
        path.write_bytes(b'{"ok": 1}\n' + raw)
        with pytest.raises(FileFormatError, match="line 2") as caught:
            list(json_objects(path))
        assert message in str(caught.value)


class ScannedBytes(bytes):
    """Bytes that add up, in ``handled``, the length of every copy or scan made of them."""

    handled = 0

    def _count(self, size: int) -> None:
        ScannedBytes.handled += size

    def __add__(self, other: object) -> bytes:
        result = bytes(self) + other  # type: ignore[operator]
        self._count(len(result))
        return result

    def __radd__(self, other: object) -> bytes:
        result: bytes = other + bytes(self)  # type: ignore[operator]
        self._count(len(result))
        return result

    def split(self, sep: Any = None, maxsplit: int = -1) -> list[bytes]:  # type: ignore[override]
        self._count(len(self))
        return bytes(self).split(sep, maxsplit)


class ScanCountingFile(io.FileIO):
    """A binary file whose reads come as ``ScannedBytes``."""

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        return ScannedBytes(data)


LINE_LISTS = st.lists(st.binary(max_size=40).map(lambda raw: raw.replace(b"\n", b"")), max_size=8)


class TestLinesFromEnd:
    @SETTINGS
    @given(LINE_LISTS, st.booleans())
    def test_gives_the_lines_of_a_forward_split_last_first(
        self, tmp_path_factory: pytest.TempPathFactory, lines: list[bytes], final_newline: bool
    ) -> None:
        """Whatever the block size, the lines are those of ``split(b"\\n")``, reversed."""
        content = b"\n".join(lines) + (b"\n" if final_newline and lines else b"")
        path = tmp_path_factory.mktemp("ends") / "x.jsonl"
        path.write_bytes(content)
        for block in (1, 3, 16, 1 << 16):
            assert list(lines_from_end(path, block=block)) == content.split(b"\n")[::-1]

    def test_a_long_last_line_is_scanned_once(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A last line 1,000 blocks long is copied or scanned once, not once per block stepped back."""
        path = tmp_path / "x.jsonl"
        path.write_bytes(b'{"id": 1}\n' + b"x" * 64_000 + b"\n")
        monkeypatch.setattr(lines_module, "open", lambda p, mode: ScanCountingFile(p, "r"), raising=False)
        ScannedBytes.handled = 0
        assert list(lines_from_end(path, block=64)) == [b"", b"x" * 64_000, b'{"id": 1}']
        assert 0 < ScannedBytes.handled <= 2 * path.stat().st_size

    def test_a_line_longer_than_longest_stops_the_reading(self, tmp_path: Path) -> None:
        """Past ``longest`` bytes of one line nothing more is given, and the caller reads forward instead."""
        path = tmp_path / "x.jsonl"
        path.write_bytes(b'{"id": 1}\n' + b"x" * 1_000 + b"\n" + b'{"id": 2}')
        assert list(lines_from_end(path, block=64, longest=500)) == [b'{"id": 2}']
