"""Psych's ``!!float``: ``Float(@ss.tokenize(o.value))`` (``Psych::Visitors::ToRuby#deserialize``).

Ruby's ``Float()`` of what ``tokenize`` reads: a Float is itself, an Integer its nearest double, a
String by ``Float()``'s own grammar, a Time its ``to_f`` (epoch seconds, ``time_to_f``); anything
else has no ``to_f`` (a Date, Symbol, nil, boolean) and Ruby raises, so ``Unreadable``.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import Any

from . import _psych_scalars as ps

_A = re.ASCII
# Ruby's Float() grammar, every repeat possessive as in _psych_scalars (and for its reason: a hostile
# scalar costs time linear in its length).
_RUBY_FLOAT = re.compile(
    r"\s*+[-+]?(?:[0-9]++(?:_[0-9]++)*+)?(?:\.[0-9]++(?:_[0-9]++)*+)?(?:[eE][-+]?[0-9]++)?\s*+\Z", _A
)
_RUBY_HEX_FLOAT = re.compile(r"\s*+[-+]?0x[0-9a-fA-F]++\s*+\Z", _A)


def tagged_float(s: str, max_digits: int) -> float:
    """A ``!!float`` scalar: Psych's ``Float(@ss.tokenize(o.value))`` (``Visitors::ToRuby#deserialize``).

    Where ``tokenize`` reads a Time, ``Float`` calls ``Time#to_f``: epoch seconds, taken from the
    text itself (``time_to_f``), not from the microseconds ``parse_time`` keeps. No row of
    ``tokenize`` before its Time row takes a text ``TIME`` matches, bar one with a line break.
    A Date, Symbol, nil or boolean has no ``to_f``: Ruby raises TypeError, and so ``Unreadable``.
    """
    if "\n" not in s and ps.TIME.match(s):
        try:
            return time_to_f(s, max_digits)
        except ValueError:
            return ruby_float(s)  # tokenize keeps the text, which Float() refuses
    return ruby_float(ps.tokenize(s, max_digits))


def ruby_float(value: Any) -> float:
    """``Float(x)`` for the tokenized content of a ``!!float`` scalar other than a Time (``tagged_float``)."""
    if type(value) is float:
        return value
    if type(value) is int:
        try:
            return float(value)
        except OverflowError:
            return float("inf") if value > 0 else float("-inf")
    if type(value) is str and _RUBY_FLOAT.match(value) and any(c.isdigit() for c in value):
        return float(value.replace("_", ""))
    if type(value) is str and _RUBY_HEX_FLOAT.match(value):
        return float(int(value.strip().replace("0x", "", 1), 16))
    raise ps.Unreadable("Ruby's Float() rejects the scalar")


def time_to_f(s: str, max_digits: int) -> float:
    """``Float(t)`` of the Time ``t`` that ``parse_time`` reads from ``s`` (``!!float 2024-01-02
    03:04:05``): ``Time#to_f``, seconds since 1970-01-01 UTC, from the exact instant Ruby holds.

    Ruby keeps a Time as a count of nanoseconds (``TIME_SCALE``, time.c); Psych builds it from the
    fraction's every digit (``Rational("0.#{digits}")``), so the count is exact: an Integer, or a
    Rational past the nanosecond. ``rb_time_unmagnify_to_float`` (time.c) divides an Integer count
    as ``count.fdiv(1e9)``: the count rounded to a double, over 1e9. A Rational it turns into seconds
    (a reduced Rational) and hands to ``rb_Float``, whose ``rat2dbl_without_to_f`` (object.c) rounds
    numerator and denominator each to the nearest double (``rb_big2dbl``: an infinity past the
    largest) and divides those; not ``Rational#to_f`` and not ``big_fdiv`` (bignum.c). So a fraction
    of more than 308 digits is NaN (both terms infinite), or 0.0 near the epoch.

    Any year is read, proleptic Gregorian like Ruby's Time (no ``datetime`` is built); the day,
    clock and offset checks are ``parse_time``'s (``ValueError``). A fraction of more than
    ``max_digits`` significant digits is ``LimitExceeded``, as a long integer is: Ruby reads it, but
    its exact value costs time by the digit.
    """
    year, month, day, hour, minute, second, fraction, zone = ps.time_fields(s)
    ps.check_clock(month, day, hour, minute, second)
    offset = 0 if zone is None or zone == "Z" else ps.utc_offset(s, zone)
    whole = (ps.days_since_epoch(year, month) + day - 1) * 86400 + hour * 3600 + minute * 60 + second - offset
    fraction = fraction.rstrip("0")
    seconds = Fraction(whole) + Fraction(
        ps.decimal_int(fraction, max_digits) if fraction else 0, 10 ** len(fraction)
    )
    nanoseconds = seconds * 1_000_000_000
    if nanoseconds.denominator == 1:
        return _double(nanoseconds.numerator) / 1e9
    return _double(seconds.numerator) / _double(seconds.denominator)  # inf / inf is NaN, as in C


def _double(n: int) -> float:
    """``rb_big2dbl(n)`` (or a Fixnum's C cast): the nearest double, ties to even, and an infinity
    of ``n``'s sign past the largest double, where Python's ``float()`` raises instead."""
    try:
        return float(n)
    except OverflowError:
        return math.inf if n > 0 else -math.inf
