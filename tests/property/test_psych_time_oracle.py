"""Times, plain and under ``!!float``, against an independent restatement of Ruby on every backend.

The oracle is written from psych 4.0's ``ScalarScanner#parse_time``, Ruby's ``Time.utc`` and
``Time.new`` checks (time.c ``validate_vtm``, ``validate_utc_offset``) and ``Time#to_f`` (time.c
``rb_time_unmagnify_to_float``: a whole count of nanoseconds is ``count.fdiv(1e9)``, a Rational
one goes through object.c's ``rat2dbl_without_to_f``, each term by ``rb_big2dbl``, then one
division). ``big2dbl`` below is bignum.c's, digit by digit with 32-bit BDIGITs (internal/bignum.h
picks ``unsigned int`` where two of them fit a ``long long``, as on x86-64 Linux). Nothing is shared
with the loader: the calendar is Hinnant's ``days_from_civil``, not the loader's 400-year table.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from fractions import Fraction
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from crm_audit_transform.errors import LimitExceeded, MalformedYaml
from crm_audit_transform.loading import available_backends, load_audited_changes
from crm_audit_transform.loading._psych_floats import _double

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
UTC = dt.UTC
FIRST_SECOND = -62_135_596_800  # 0001-01-01 00:00:00 UTC, seconds from the epoch
PAST_LAST_SECOND = 253_402_300_800  # 10000-01-01 00:00:00 UTC
# parse_time's reading of the offset text (psych), and time.c's bound on it.
OFFSET = re.compile(r"([+\-]?\d{1,2}):?(\d{1,2})?\Z")
DAY = 86_400

BDIGIT_BITS = 32


def big2dbl(x: int) -> float:
    """bignum.c ``big2dbl`` then ``rb_big2dbl``: the top 54 bits, a set 54th bit with any bit set
    below it (the carry) rounds up by hand, the rest is one IEEE addition, an infinity past range."""
    digits = []
    magnitude = abs(x)
    while magnitude:
        digits.append(magnitude & 0xFFFF_FFFF)
        magnitude >>= BDIGIT_BITS
    d = 0.0
    i = len(digits)
    if i:
        bits = i * BDIGIT_BITS - (BDIGIT_BITS - digits[i - 1].bit_length())
        if bits > 53 + 1024:
            d = math.inf
        else:
            lo = 0
            if bits > 54:
                bits -= 54
                lo = bits // BDIGIT_BITS
            else:
                bits = 0
            i -= 1
            while i > lo:
                d = digits[i] + float(1 << BDIGIT_BITS) * d
                i -= 1
            dl = digits[i]
            if bits and dl & (1 << (bits % BDIGIT_BITS)):
                bits %= BDIGIT_BITS
                carry = dl & ((1 << bits) - 1) != 0 or any(digits[:i])
                if carry:
                    dl = ((dl & ~((1 << bits) - 1)) + (1 << bits)) & 0xFFFF_FFFF
                    if not dl:
                        d += 1
            # d is exact here (at most 53 bits): C's ``dl + BIGRAD*d`` is one rounding of the sum.
            d = float(dl + (int(d) << BDIGIT_BITS))
            if lo:
                try:
                    d = math.ldexp(d, lo * BDIGIT_BITS)
                except OverflowError:
                    d = math.inf
    return -d if x < 0 else d


def days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146_097 + doe - 719_468


class StaysString(Exception):
    """Time.utc or Time.new raises ArgumentError: tokenize keeps the text."""


def ruby_seconds(
    year: int, month: int, day: int, hour: int, minute: int, second: int, zone: str | None
) -> int:
    """The whole seconds of ``Time.utc``/``Time.new``'s instant, or ``StaysString``."""
    last = 0 if hour == 24 else 59
    if not (1 <= month <= 12 and 1 <= day <= 31 and 0 <= hour <= 24 and 0 <= minute <= last):
        raise StaysString
    if not 0 <= second <= (0 if hour == 24 else 60):
        raise StaysString
    offset = 0
    if zone is not None and zone != "Z":
        match = OFFSET.match(zone)
        assert match is not None
        hours = int(match[1])
        minutes = int(match[2] or 0)
        offset = hours * 3600 - minutes * 60 if hours * 3600 < 0 else hours * 3600 + minutes * 60
        if offset <= -DAY or offset >= DAY:
            raise StaysString
    # Time.utc rolls a day past the month's end over; counting from the 1st does the same.
    return (days_from_civil(year, month, 1) + day - 1) * DAY + hour * 3600 + minute * 60 + second - offset


def expected_plain(text: str, fields: tuple[Any, ...]) -> tuple[Any, ...]:
    year, month, day, hour, minute, second, fraction, zone = fields
    try:
        whole = ruby_seconds(year, month, day, hour, minute, second, zone)
    except StaysString:
        return ("value", text)
    if not FIRST_SECOND <= whole < PAST_LAST_SECOND:
        return ("limit",)
    micro = int((fraction + "000000")[:6])
    return ("value", dt.datetime(1970, 1, 1, tzinfo=UTC) + dt.timedelta(seconds=whole, microseconds=micro))


def expected_float(fields: tuple[Any, ...]) -> tuple[Any, ...]:
    year, month, day, hour, minute, second, fraction, zone = fields
    try:
        whole = ruby_seconds(year, month, day, hour, minute, second, zone)
    except StaysString:
        return ("malformed",)  # Float() of the time's text raises
    seconds = whole + Fraction(int(fraction or "0"), 10 ** len(fraction))
    count = seconds * 1_000_000_000
    if count.denominator == 1:
        return ("value", big2dbl(count.numerator) / 1e9)
    return ("value", big2dbl(seconds.numerator) / big2dbl(seconds.denominator))


def outcomes(text: str) -> dict[str, tuple[Any, ...]]:
    """What each backend makes of ``v: text``."""
    found: dict[str, tuple[Any, ...]] = {}
    for backend in available_backends():
        try:
            found[backend] = ("value", load_audited_changes(f"---\nv: {text}\n", backend=backend)["v"])
        except LimitExceeded:
            found[backend] = ("limit",)
        except MalformedYaml:
            found[backend] = ("malformed",)
    return found


def same(found: tuple[Any, ...], expected: tuple[Any, ...]) -> bool:
    """Equal, of the same type, and for a float the same bits (NaN is NaN, -0.0 is not 0.0)."""
    if type(found[-1]) is not type(expected[-1]):
        return False
    if type(expected[-1]) is float:
        return bool(math.isnan(found[-1]) and math.isnan(expected[-1])) or (
            found == expected and math.copysign(1, found[-1]) == math.copysign(1, expected[-1])
        )
    return found == expected


def two(low: int, high: int) -> st.SearchStrategy[str]:
    """A field of one or two digits, as Psych's TIME admits it."""
    return st.integers(low, high).flatmap(
        lambda n: st.sampled_from([f"{n:02d}", str(n)] if n < 10 else [str(n)])
    )


zones = st.one_of(
    st.none(),
    st.just("Z"),
    st.tuples(
        st.sampled_from("+-"),
        st.one_of(two(0, 26), two(90, 99)),
        st.sampled_from(["", ":"]),
        st.one_of(st.just(""), st.integers(0, 99).map(lambda n: f"{n:02d}")),
    )
    .map("".join)
    .map(lambda zone: zone.rstrip(":")),  # a ":" ending the line would make the value a YAML key
)
times = st.tuples(
    st.booleans(),
    st.one_of(st.integers(0, 9999), st.sampled_from([0, 1, 9999, 1969, 1970, 2024])),
    two(0, 13),
    two(0, 32),
    two(0, 25),
    st.integers(0, 61),
    st.integers(0, 61),
    st.one_of(st.none(), st.text("0123456789", max_size=40)),
    st.sampled_from([" ", "  ", "T", "t"]),
    st.sampled_from(["", " "]),
    zones,
)


def written(case: tuple[Any, ...]) -> tuple[str, tuple[Any, ...]]:
    """The time's text, and the fields psych's ``parse_time`` reads from it."""
    negative, year, month, day, hour, minute, second, fraction, separator, gap, zone = case
    text = f"{'-' if negative else ''}{year:04d}-{month}-{day}{separator}{hour}:{minute:02d}:{second:02d}"
    if fraction is not None:
        text += "." + fraction
    if zone is not None:
        text += gap + zone
    signed_year = -year if negative else year
    return text, (signed_year, int(month), int(day), int(hour), minute, second, fraction or "", zone)


class TestTimesAgainstRuby:
    @SETTINGS
    @given(times)
    @example((False, 0, "01", "01", "10", 0, 0, None, " ", " ", "+25"))
    @example((False, 0, "01", "01", "10", 0, 0, None, " ", " ", "+24:00"))
    @example((True, 1, "01", "01", "10", 0, 0, None, " ", " ", "-25"))
    @example((False, 0, "12", "31", "24", 0, 0, "5", " ", "", None))
    @example((False, 2024, "01", "02", "03", 4, 5, "1299722003322453832364057", " ", " ", "Z"))
    def test_a_plain_time_is_rubys_time_or_its_string(self, case: tuple[Any, ...]) -> None:
        """Every backend reads a time text as Ruby does: the String when Time.utc refuses the fields
        or Time.new the offset, in any year; else the instant, ``LimitExceeded`` only when its UTC
        year is outside 1-9999."""
        text, fields = written(case)
        expected = expected_plain(text, fields)
        for backend, found in outcomes(text).items():
            assert same(found, expected), (backend, text, found, expected)

    @SETTINGS
    @given(times)
    @example((False, 2024, "01", "02", "03", 4, 5, "1299722003322453832364057", " ", " ", "Z"))
    @example((False, 1970, "01", "01", "00", 0, 0, "0" * 320 + "1", " ", " ", "Z"))
    @example((False, 2020, "01", "01", "00", 0, 0, "1" * 400, " ", " ", "Z"))
    @example((True, 44, "03", "15", "12", 0, 0, "4" * 30, " ", " ", "-07:00"))
    def test_a_float_tagged_time_is_rubys_to_f_to_the_bit(self, case: tuple[Any, ...]) -> None:
        """``!!float`` on a time is ``Time#to_f`` bit for bit on every backend, in any year, and
        ``MalformedYaml`` where Ruby kept the String (``Float()`` of it raises)."""
        text, fields = written(case)
        expected = expected_float(fields)
        for backend, found in outcomes(f"!!float {text}").items():
            assert same(found, expected), (backend, text, found, expected)


class TestDoubleOfAnInteger:
    @SETTINGS
    @given(st.integers(1, 1100).flatmap(lambda n: st.integers(-(1 << n), 1 << n)), st.integers(0, 60))
    @example(2**54 + 2, 0)  # halfway between 2**54 and 2**54 + 4: to the even one, 2**54
    @example(2**54 + 6, 0)  # halfway between 2**54 + 4 and 2**54 + 8: 2**54 + 8
    @example(2**1024 - 2**970, 0)  # rounds up past the largest double: infinity
    def test_a_term_is_rounded_as_rb_big2dbl_rounds_it(self, n: int, zeros: int) -> None:
        """The loader's term → double (``_double``) is bignum.c's ``big2dbl``: nearest, ties to even,
        an infinity of the term's sign past the largest double. Low zero bits make ties common."""
        term = n << zeros
        assert _double(term) == big2dbl(term)
