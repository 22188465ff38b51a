"""The JSON string patterns that skip strings (``check_json_depth``, a JSONL line's keys) hold no
memory per escape, and match as the plain greedy pattern they replaced."""

from __future__ import annotations

import re
import tracemalloc
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crm_audit_adapters.files import lines
from crm_audit_adapters.files.lines import shallow_object
from crm_audit_transform import json_scan
from crm_audit_transform.errors import LimitExceeded
from crm_audit_transform.loading import check_json_depth

GREEDY = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
"""The pattern before: the same strings, with sre's backtracking state kept for every escape."""

ESCAPES = 1 << 19


def peak(call: Callable[[], object]) -> int:
    """Bytes at the peak of ``call`` as tracemalloc counts them (sre's state included)."""
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_json_body_of_escaped_quotes_is_checked_in_about_its_own_size() -> None:
    text = '["' + '\\"' * ESCAPES + '"]'
    assert peak(lambda: check_json_depth(text, 100)) < 4 * len(text)  # the greedy one: ~75 x


def test_a_jsonl_key_of_escaped_quotes_is_read_in_about_its_own_size() -> None:
    key = '"' + '\\"' * ESCAPES + '"'
    line = "{" + key + ': 1, "a": ' + "[" * 2000 + "]" * 2000 + "}"
    assert shallow_object(line)[key[1:-1].replace('\\"', '"')] == 1
    assert peak(lambda: shallow_object(line)) < 4 * len(line)


def test_a_json_body_whose_string_never_closes_is_checked_in_one_pass() -> None:
    """A string of ``\\"`` that never closes: the pattern, required to close, started again at each
    of its quotes and went to the end each time (40,000 escapes: 15 s; a 1 MiB body: hours, in the
    HTTP app's event loop). What follows it is never parsed (json.loads stops there), so its
    brackets are not judged."""
    check_json_depth('{"a": "' + '\\"' * ESCAPES, 100)
    check_json_depth('{"a": "' + "[" * 1000, 100)
    with pytest.raises(LimitExceeded):
        check_json_depth("[" * 101 + '"' + '\\"' * ESCAPES, 100)


def test_a_long_jsonl_line_whose_string_never_closes_is_counted_in_one_pass() -> None:
    """A line past 200,000 bytes has its values counted before it is decoded; a string of ``\\"``
    in it that never closes took hours (the pattern tried again at each of its quotes)."""
    line = b'{"tenant": "acme", "comment": "' + b'\\"' * ESCAPES
    assert not lines.too_many_values(line)
    assert lines.fast_object(line) is None


_TEXT = st.text(alphabet=st.sampled_from(['"', "\\", "a", "\n", "[", "]", "é"]), max_size=40)


@given(_TEXT, st.integers(min_value=0, max_value=40))
def test_the_patterns_match_as_the_greedy_one(text: str, start: int) -> None:
    """A closed string as the greedy pattern; the value counts' and ``check_json_depth``'s take one
    that never closes to the end of the text, as json.loads reads it, where the greedy one tried
    again at each quote."""
    want = GREEDY.match(text, start)
    got = lines._STRING.match(text, start)
    assert (got and got.span()) == (want and want.span())
    for pattern in (json_scan._STRING_PART,):
        got = pattern.match(text, start)
        if text[start : start + 1] != '"':
            assert got is None
        else:
            assert got is not None
            assert got.span() == (want.span() if want else (start, len(text)))
        # The same cuts up to the first quote no string closes, and nothing after it.
        assert pattern.sub("", text) == GREEDY.sub("", text).split('"')[0]
    # A JSONL line's, on its UTF-8 bytes: the same pattern, a byte for a character.
    raw = text.encode()
    latin = json_scan._STRING_PART.sub("", raw.decode("latin-1")).encode("latin-1")
    assert json_scan._BYTES_STRING_PART.sub(b"", raw) == latin
