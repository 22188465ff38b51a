"""``check_json_depth`` sums its brackets at C speed (``_jsonb._check_depth``), a piece of the text at
a time (``json_scan.bare_pieces``), and decides as the scan it replaced, a Python step a bracket over
the whole text's strings cut out at once (kept here as the reference): on any text, any limit and any
piece size, the same pass, or the same ``LimitExceeded`` with the same depth."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from crm_audit_transform import json_scan
from crm_audit_transform.errors import LimitExceeded
from crm_audit_transform.loading import _jsonb, check_json_depth

_STRING = re.compile(r'"[^"\\]*+(?:\\.?[^"\\]*+)*+"?', re.S)
"""A string to its closing quote or, one that never closes, to the end (test_json_string_scans.py)."""
_BRACKET = re.compile(r"[\[\]{}]")


def reference(text: str, max_depth: int) -> None:
    """The check before, as it was: a ``finditer`` step a bracket outside strings."""
    depth = 0
    for match in _BRACKET.finditer(_STRING.sub("", text)):
        if match.group() in "[{":
            depth += 1
            if depth > max_depth:
                raise LimitExceeded("nesting depth", max_depth, depth)
        else:
            depth -= 1


def outcome(
    check: Callable[[str, int], None], text: str, max_depth: int
) -> tuple[str, int | None, str] | None:
    """None when ``check`` passes ``text``; the error's limit, depth and message when not."""
    try:
        check(text, max_depth)
    except LimitExceeded as exc:
        return (exc.limit, exc.actual, str(exc))
    return None


_PIECES = st.sampled_from(
    ['"', "\\", '\\"', "a", ",", ":", " ", "\n", "[", "]", "{", "}", "é", "☃", "\ud800", "𝄞"]
)
_TEXT = st.lists(_PIECES, max_size=80).map("".join)
_LIMITS = st.integers(min_value=-4, max_value=12)


@settings(max_examples=400)
@given(_TEXT, _LIMITS)
@example("]]][[[[", -2)
@example("][", -1)
@example("[" * 5 + "]" * 5, 4)
def test_the_c_speed_scan_decides_as_the_stepwise_one(text: str, max_depth: int) -> None:
    assert outcome(check_json_depth, text, max_depth) == outcome(reference, text, max_depth)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=4),
    max_leaves=30,
)


@given(_JSON, st.integers(min_value=0, max_value=8))
def test_json_values_pass_or_fail_at_the_same_depth(value: object, max_depth: int) -> None:
    text = json.dumps(value, ensure_ascii=False)
    assert outcome(check_json_depth, text, max_depth) == outcome(reference, text, max_depth)


@settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(_TEXT, _LIMITS, st.integers(min_value=1, max_value=12))
def test_text_read_a_piece_at_a_time_decides_as_read_at_once(text: str, max_depth: int, piece: int) -> None:
    """Cut into pieces of any size (a piece never cuts a string), the depth and the values carry
    across the cuts: the same decision, and the count ``json_values`` gives at once."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(json_scan, "_COUNT_BYTES", piece)
        assert outcome(check_json_depth, text, max_depth) == outcome(reference, text, max_depth)
        counted = _jsonb._check_depth(text, 1000)  # at most 80 levels: never past 1000
    assert counted == json_scan.json_values(text)


@pytest.mark.parametrize("chunk", [1, 2, 3, 7])
def test_the_depth_carries_across_chunks(monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    """Text scanned a few characters at a time sums its depth across the cuts, strings included."""
    monkeypatch.setattr(json_scan, "_COUNT_BYTES", chunk)
    for text, limit in [
        ('[["]]]]"', 1),
        ("[[],[[]],[[[]]]]", 3),
        ("[[],[[]],[[[]]]]", 4),
        ("]][[[[", 1),
        ('{"a": [{"b": [1]}]}', 3),
        ('{"a": [{"b": [1]}]}', 4),
    ]:
        assert outcome(check_json_depth, text, limit) == outcome(reference, text, limit)
    with pytest.raises(LimitExceeded):
        check_json_depth("[" * 20, 19)
