"""Psych's scalar patterns, written with possessive repeats so that a hostile scalar costs time and
memory linear in its length, match exactly as Psych's own greedy patterns (kept here as references)."""

from __future__ import annotations

import re

from hypothesis import example, given, settings
from hypothesis import strategies as st

from crm_audit_transform.loading import _psych_floats as pf
from crm_audit_transform.loading import _psych_scalars as ps

SETTINGS = settings(max_examples=300, derandomize=True, database=None, deadline=None)

_A = re.ASCII
REFERENCES = {
    "_SEXAGESIMAL_INT": re.compile(r"[-+]?[0-9][0-9_]*(?::[0-5]?[0-9]){1,2}\Z", _A),
    "_SEXAGESIMAL_FLOAT": re.compile(r"[-+]?[0-9][0-9_]*(?::[0-5]?[0-9]){1,2}\.[0-9_]*\Z", _A),
    "_FLOAT": re.compile(r"[-+]?(?:[0-9][0-9_,]*)?\.[0-9]*(?:[eE][-+][0-9]+)?\Z", _A),
    "_INTEGER": re.compile(
        r"([-+]?)(?:0b([0-1_,]+)|0([0-7_,]+)|(0|[1-9](?:[0-9]|[,_][0-9])*)|0x([0-9a-fA-F_,]+))\Z", _A
    ),
    "_RUBY_TO_I": re.compile(r"\s*([-+]?[0-9]+(?:_[0-9]+)*)", _A),
    "_RUBY_TO_F": re.compile(r"\s*[-+]?[0-9]+(?:_[0-9]+)*(?:\.[0-9]+(?:_[0-9]+)*)?(?:[eE][-+]?[0-9]+)?", _A),
    "_RUBY_FLOAT": re.compile(
        r"\s*[-+]?(?:[0-9]+(?:_[0-9]+)*)?(?:\.[0-9]+(?:_[0-9]+)*)?(?:[eE][-+]?[0-9]+)?\s*\Z", _A
    ),
    "_RUBY_HEX_FLOAT": re.compile(r"\s*[-+]?0x[0-9a-fA-F]+\s*\Z", _A),
    "_BIG_DECIMAL": re.compile(
        r"\s*(?:([-+]?Infinity|NaN)|([-+]?(?:[0-9]+(?:_[0-9]+)*)?(?:\.(?:[0-9]+(?:_[0-9]+)*)?)?"
        r"(?:[eEdD][-+]?[0-9]+)?))\s*\Z",
        _A,
    ),
    "_DUMPED_BIG_DECIMAL": re.compile(r"[0-9]*:(-?0\.[0-9]+(?:e-?[0-9]+)?)\Z", _A),
}
"""Psych 4's patterns as the loader had them: greedy repeats (``ScalarScanner``, ``parse_time``)."""
CLOCK = re.compile(r"(\d+:\d+:\d+)(?:\.(\d*))?\s*(Z|[-+]\d+(?::\d\d)?)?", _A)
"""``parse_time``'s clock pattern, searched for (not matched) in the text after the date."""

_NUMBER = ["0", "1", "8", "f", "_", ",", ".", "e", "E", "d", "+", "-", " ", "x", "0x", "0b", ":", "30", "NaN"]
_CLOCK = ["1", "12", ":", "::", ".", "5", " ", "\t", "Z", "+", "-", "07", ":00", "x"]
_TEXT = st.one_of(
    st.lists(st.sampled_from(_NUMBER), max_size=6).map("".join),
    st.lists(st.sampled_from(_CLOCK), max_size=8).map("".join),
)


@SETTINGS
@given(text=_TEXT)
@example(text="0x1F,")
@example(text="12:34:56.5 +07:00")
@example(text=" -1_000.5e+3 ")
@example(text="18:0.125e2")
@example(text="1,000")
@example(text="25,000,")
@example(text="1__000")
@example(text="1:30:30:30")
@example(text="1:30.5")
@example(text="1,5.5")
@example(text="0b1_0,1")
@example(text="017,")
@example(text="0_x1F")
@example(text=".5e-3")
@example(text="1.")
@example(text="18:-0.5e-3")
@example(text="18:1_0.5d2")
@example(text="  0x1f  ")
@example(text="2019-12-29 17:42:38.489661494 Z")
@example(text="12:34:567:89+5")
def test_each_pattern_matches_as_psychs_greedy_one(text: str) -> None:
    for name, reference in REFERENCES.items():
        pattern = getattr(ps, name, None) or getattr(pf, name)  # !!float's own patterns live in _psych_floats
        want, got = reference.match(text), pattern.match(text)
        assert (got and (got.span(), got.groups())) == (want and (want.span(), want.groups())), name
    want, got = CLOCK.search(text), ps._TIME_CLOCK.search(text)
    assert (got and (got.span(), got.groups())) == (want and (want.span(), want.groups())), "_TIME_CLOCK"
