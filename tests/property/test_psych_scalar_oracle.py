"""The loader's plain-scalar rules against an independent restatement of Psych 4's ScalarScanner.

The oracle below is written from ``Psych::ScalarScanner#tokenize`` (psych 4.0, ``strict_integer:
false``) and Ruby's ``Integer()``, ``Float()``, ``String#to_i`` and ``String#to_f``, one row at a
time, without sharing code with the loader. It covers the rows that decide between String, nil,
true/false, Integer and Float: the word row, base 60, ``FLOAT`` and ``INTEGER_LEGACY``. Scalars
that reach a time, date, symbol or ``.inf``/``.nan`` row are left to the unit tests.
"""

from __future__ import annotations

import math
import re
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from crm_audit_transform.errors import MalformedYaml
from crm_audit_transform.loading import available_backends, load_audited_changes
from crm_audit_transform.loading._psych_scalars import Unreadable, tokenize

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class RubyRaises(Exception):
    """Ruby raises ArgumentError for this scalar: Psych.load fails on the whole document."""


OUT_OF_SCOPE = object()

# Ruby's regexes, with ``^``/``$`` read as \A/\Z: the alphabet below holds no line break.
WORD = re.compile(r"[^0-9.:-]?[A-Za-z_\s!@#$%^&*(){}<>|/\\~;=]+")
TIME_OR_DATE = re.compile(r"-?\d{4}-\d{1,2}-\d{1,2}")
BASE60_INT = re.compile(r"[-+]?[0-9][0-9_]*(:[0-5]?[0-9]){1,2}\Z")
BASE60_FLOAT = re.compile(r"[-+]?[0-9][0-9_]*(:[0-5]?[0-9]){1,2}\.[0-9_]*\Z")
FLOAT = re.compile(r"[-+]?([0-9][0-9_,]*)?\.[0-9]*([eE][-+][0-9]+)?\Z")
INTEGER_LEGACY = re.compile(
    r"(?:[-+]?0b[0-1_,]+|[-+]?0[0-7_,]+|[-+]?(?:0|[1-9](?:[0-9]|,[0-9]|_[0-9])*)|[-+]?0x[0-9a-fA-F_,]+)\Z"
)


def ruby_integer(text: str) -> int:
    """``Kernel#Integer(text)`` for the forms INTEGER_LEGACY admits once ``,``/``_`` are gone."""
    sign = -1 if text.startswith("-") else 1
    body = text.lstrip("+-")
    for prefix, base in (("0b", 2), ("0x", 16)):
        if body.startswith(prefix):
            if len(body) == 2:
                raise RubyRaises(text)
            return sign * int(body[2:], base)
    if len(body) > 1 and body.startswith("0"):
        return sign * int(body[1:], 8)
    return sign * int(body)


def ruby_float(text: str) -> float:
    """``Kernel#Float(text)``: digits must stand on both sides of a ``.``, and before an exponent."""
    mantissa, marker, exponent = text.lower().partition("e")
    whole, dot, fraction = mantissa.lstrip("+-").partition(".")
    if not (whole or fraction) or (dot and not fraction) or (marker and not exponent.lstrip("+-")):
        raise RubyRaises(text)
    return float(text)


def ruby_to_i(text: str) -> int:
    """``String#to_i``: an optional sign, then digits with single underscores between them."""
    match = re.match(r"[-+]?[0-9]+(?:_[0-9]+)*", text)
    return int(match[0].replace("_", "")) if match else 0


def ruby_to_f(text: str) -> float:
    """``String#to_f``: the longest decimal prefix, underscores allowed between digits."""
    match = re.match(r"[-+]?[0-9]+(?:_[0-9]+)*(?:\.[0-9]+(?:_[0-9]+)*)?", text)
    return float(match[0].replace("_", "")) if match else 0.0


def psych(text: str) -> Any:
    """What Psych 4 makes of the plain scalar ``text``, or ``OUT_OF_SCOPE``."""
    if text == "":
        return None
    if WORD.match(text):
        if len(text) > 5 or text[0].lower() not in "ytonf~":
            return text
        lowered = text.lower()
        if text == "~" or lowered == "null":
            return None
        if lowered in ("yes", "true", "on"):
            return True
        if lowered in ("no", "false", "off"):
            return False
        return text
    if TIME_OR_DATE.match(text) or text.startswith(":") or re.fullmatch(r"[-+]?\.(inf|nan)", text, re.I):
        return OUT_OF_SCOPE
    if BASE60_INT.match(text):
        parts = text.split(":")
        return sum(ruby_to_i(part) * 60 ** abs(i - 2) for i, part in enumerate(parts))
    if BASE60_FLOAT.match(text):
        parts = text.split(":")
        return sum(ruby_to_f(part) * 60 ** abs(i - 2) for i, part in enumerate(parts))
    if FLOAT.match(text):
        if re.fullmatch(r"[-+]?\.", text):
            return text
        return ruby_float(re.sub(r"\.([Ee]|$)", r"\1", text.replace(",", "").replace("_", "")))
    if INTEGER_LEGACY.match(text):
        return ruby_integer(text.replace(",", "").replace("_", ""))
    return text


def outcome(call: Any) -> tuple[Any, ...]:
    try:
        value = call()
        return ("value", type(value), value)
    except (Unreadable, RubyRaises, MalformedYaml):
        return ("raises",)


def same(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    if a[0] != b[0] or a[0] == "raises":
        return a == b
    if a[1] is float and b[1] is float and math.isnan(a[2]):
        return bool(math.isnan(b[2]))
    return bool(a[1:] == b[1:])


NUMERIC_ALPHABET = "0123456789,_.:+-xbeE"
scalars = st.one_of(
    st.text(NUMERIC_ALPHABET, max_size=10),
    st.text("0123456789,_", max_size=10),
    st.text("01,_xb+-", max_size=6),
    st.text("0123456789,_.:+-xbeEyYnNoOtTfFlLsSuU~aA", max_size=8),
)
FIELD_EXAMPLES = ["1,", "1__000", "0_x1F", "62,,812", "25,000,", "1,000", "1_000", "0x1F,", "0b_", "0_", "1_"]


def plain_scalar_of(text: str) -> bool:
    """True when a YAML parser reads ``v: text`` as the plain scalar ``text`` (what Psych would dump)."""
    try:
        events = list(yaml.parse(f"---\nv: {text}\n"))
    except yaml.YAMLError:
        return False
    values = [e for e in events if isinstance(e, yaml.ScalarEvent)]
    return len(values) == 2 and values[1].value == text and values[1].implicit[0] and values[1].style is None


class TestPsychOracle:
    @SETTINGS
    @given(scalars)
    def test_tokenize_agrees_with_psych_rules(self, text: str) -> None:
        """Every scalar the oracle decides gets the same class and value (or failure) from the loader."""
        expected = outcome(lambda: psych(text))
        assume(expected[0] == "raises" or expected[2] is not OUT_OF_SCOPE)
        assert same(outcome(lambda: tokenize(text, 4300)), expected), text

    @SETTINGS
    @given(scalars)
    @example("1,")
    @example("1__000")
    @example("0_x1F")
    @example("62,,812")
    @example("25,000,")
    def test_every_backend_loads_plain_scalars_like_psych(self, text: str) -> None:
        """Through the whole loader, on every YAML backend, a plain scalar loads as the oracle says."""
        expected = outcome(lambda: psych(text))
        assume(expected[0] == "raises" or expected[2] is not OUT_OF_SCOPE)
        assume(plain_scalar_of(text))
        for backend in available_backends():
            loaded = outcome(lambda b=backend: load_audited_changes(f"---\nv: {text}\n", backend=b)["v"])
            assert same(loaded, expected), (backend, text)

    def test_field_examples_stay_text_or_read_as_ruby_does(self) -> None:
        """The reported values: separators out of place keep a String; well-placed ones make an Integer."""
        got = {
            text: load_audited_changes(f"---\nv: {text}\n")["v"] for text in FIELD_EXAMPLES if text != "0b_"
        }
        assert got == {
            "1,": "1,",
            "1__000": "1__000",
            "0_x1F": "0_x1F",
            "62,,812": "62,,812",
            "25,000,": "25,000,",
            "1,000": 1000,
            "1_000": 1000,
            "0x1F,": 31,
            "0_": 0,
            "1_": "1_",
        }

    def test_a_base_prefix_without_digits_fails_the_row_as_ruby_does(self) -> None:
        """``0b_`` matches INTEGER_LEGACY but Integer("0b") raises, so the row is malformed YAML."""
        with pytest.raises(MalformedYaml):
            load_audited_changes("---\nv: 0b_\n")
