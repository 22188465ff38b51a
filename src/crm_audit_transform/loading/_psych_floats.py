"""Psych's ``!!float``: ``Float(@ss.tokenize(o.value))`` (``Psych::Visitors::ToRuby#deserialize``).

Ruby's ``Float()`` of what ``tokenize`` reads: a Float is itself, an Integer its nearest double, a
String by ``Float()``'s own grammar, a Time its ``to_f`` (epoch seconds, ``time_to_f``); anything
else has no ``to_f`` (a Date, Symbol, nil, boolean) and Ruby raises, so ``Unreadable``.
"""

from __future__ import annotations

import datetime as dt
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
    fraction's every digit (``Rational("0.#{digits}")``). ``to_f`` (``rb_time_unmagnify_to_float``)
    divides a whole count as ``Integer#fdiv(1e9)``, the count as a double over 1e9; a count with a
    part of a nanosecond is a Rational of seconds, and ``Rational#to_f`` (``rb_int_fdiv_double``)
    divides its terms as doubles (below 2**53; beyond, Ruby divides the integers at length, for which
    this takes Python's correctly rounded quotient). Any year is read, proleptic Gregorian like
    Ruby's Time (no ``datetime`` is built); the day, clock and offset checks are ``parse_time``'s
    (``ValueError``). A fraction of more than ``max_digits`` significant digits is ``LimitExceeded``,
    as a long integer is: Ruby reads it, but its exact value costs time by the digit.
    """
    year, month, day, hour, minute, second, fraction, zone = ps.time_fields(s)
    ps.check_clock(month, day, hour, minute, second)
    offset = 0 if zone is None or zone == "Z" else ps.utc_offset(s, zone)
    whole = (_days_since_epoch(year, month) + day - 1) * 86400 + hour * 3600 + minute * 60 + second - offset
    fraction = fraction.rstrip("0")
    seconds = Fraction(whole) + Fraction(
        ps.decimal_int(fraction, max_digits) if fraction else 0, 10 ** len(fraction)
    )
    nanoseconds = seconds * 1_000_000_000
    if nanoseconds.denominator == 1:
        return float(nanoseconds.numerator) / 1e9
    numerator, denominator = seconds.numerator, seconds.denominator
    if denominator < 1 << 53 or (not -(1 << 62) <= numerator < 1 << 62 and denominator < 1 << 62):
        try:  # a Fixnum over a denominator a double holds exactly, or a Bignum over a Fixnum
            return float(numerator) / float(denominator)
        except OverflowError:
            pass  # a numerator past a double: Ruby divides the integers too
    return numerator / denominator


def _days_since_epoch(year: int, month: int) -> int:
    """Days from 1970-01-01 to the 1st of ``month`` in ``year`` (any year, proleptic Gregorian): the
    calendar repeats every 400 years (146,097 days), so a year 400 to 799 stands in for it."""
    cycles, year_in_cycle = divmod(year, 400)
    first = dt.date(year_in_cycle + 400, month, 1).toordinal() - _EPOCH_ORDINAL
    return first + (cycles - 1) * 146_097


_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
