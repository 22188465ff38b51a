"""Plain scalars read the way Psych 4.0 (Ruby 3.1) reads them, not the way PyYAML does.

``tokenize`` ports ``Psych::ScalarScanner#tokenize``; its table, in the order Psych tries it:

==========================================  =========================================================
plain scalar                                Ruby value
==========================================  =========================================================
empty                                       nil
starts like a word (``STRINGISH``) or has   String, except when it has at most 5 characters:
a line break                                ``~``/``null`` → nil, ``yes``/``true``/``on`` → true,
                                            ``no``/``false``/``off`` → false (any case)
``TIME`` (``2019-12-29 17:42:38.48 Z``)     Time; a String if ``Time.utc`` refuses the fields or
                                            ``Time.new`` the offset (``parse_time``)
``DATE`` (``2019-12-29``)                   Date; a String if ``Date.strptime`` refuses it
``.inf``, ``+.inf``, ``-.inf``, ``.nan``    Float (any case)
``:name``, ``:"quoted"``                    Symbol
``190:20:30`` (one or two ``:`` groups)     Integer, base 60 (``1:2:3:4`` stays a String)
``190:20:30.5``                             Float, base 60
``FLOAT`` (``1.5``, ``-1.0e-07``, ``1.``)   Float (commas and underscores dropped)
``INTEGER_LEGACY`` on the raw text          Integer of the text without ``,``/``_``: ``0b1``, ``012``
                                            (octal), ``0x1F``, ``1_000``, ``1,000``
anything else                               String
==========================================  =========================================================

The integer row is Psych 4's ``INTEGER_LEGACY`` pattern (``strict_integer: false``, the default),
tested on the raw scalar; ``,`` and ``_`` are removed only afterwards (``parse_int``). In the
decimal form each separator must sit between two digits, so ``1,``, ``1__000``, ``25,000,`` and
``62,,812`` stay Strings; ``0_x1F`` is no base at all and stays a String too. The binary, octal and
hex forms take any run of ``,``/``_`` after their prefix (``0x1F,`` is 31).

Where Ruby itself raises (``Float("-e+5")``, a time without a time part), ``Unreadable`` is
raised: Ruby cannot load that row either.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import re
from typing import Any

from ..errors import LimitExceeded

_A = re.ASCII
_STRINGISH = re.compile(r"[^0-9.:-]?[A-Za-z_\s!@#$%^&*(){}<>|/\\~;=]+", _A)
_NOT_YTONF = re.compile(r"^[^ytonf~]", _A | re.I | re.M)
_YTONF = "ytonfYTONF~"
_NULL = re.compile(r"^null$", _A | re.I | re.M)
_TRUE = re.compile(r"^(?:yes|true|on)$", _A | re.I | re.M)
_FALSE = re.compile(r"^(?:no|false|off)$", _A | re.I | re.M)
TIME = re.compile(
    r"-?\d{4}-\d{1,2}-\d{1,2}(?:[Tt]|\s+)\d{1,2}:\d\d:\d\d(?:\.\d*)?(?:\s*(?:Z|[-+]\d{1,2}:?(?:\d\d)?))?\Z",
    _A,
)
_DATE = re.compile(r"(\d{4})-(1[012]|0\d|\d)-([12]\d|3[01]|0\d|\d)\Z", _A)
_INF = re.compile(r"\+?\.inf\Z", _A | re.I)  # "+.inf" too since ruby/psych#460 (2020)
_NEG_INF = re.compile(r"-\.inf\Z", _A | re.I)
_NAN = re.compile(r"\.nan\Z", _A | re.I)
_QUOTED_SYMBOL = re.compile(r":([\"'])(.*)\1", _A)
# Psych's patterns with every repeat possessive (``*+``, ``++``): none can give back what it took
# and still match, as the next item cannot match what it gave back (a digit, ``_``, a blank), so
# each matches exactly what Psych's does. Greedy, sre went back over a run one character at a time,
# and over a repeated group kept state for each repeat: a plain scalar of 4 MiB of digits ending in
# a letter peaked a process at 970 MiB in ``_INTEGER`` (the default ``max_bytes`` lets 32 MiB
# through), and a tagged one of 16,000 blanks or digits took 3 to 9 s (``_BIG_DECIMAL``,
# ``!!float``, a DateTime's clock). The clock starts only where a run of digits starts: Psych's
# leftmost match always does, and a search from inside a run went over the rest of it again.
_SEXAGESIMAL_INT = re.compile(r"[-+]?[0-9][0-9_]*+(?::[0-5]?[0-9]){1,2}\Z", _A)
_SEXAGESIMAL_FLOAT = re.compile(r"[-+]?[0-9][0-9_]*+(?::[0-5]?[0-9]){1,2}\.[0-9_]*+\Z", _A)
_FLOAT = re.compile(r"[-+]?(?:[0-9][0-9_,]*+)?\.[0-9]*+(?:[eE][-+][0-9]++)?\Z", _A)
_LONE_DOT = re.compile(r"[-+]?\.\Z", _A)
_FLOAT_CLEANUP = re.compile(r"[,_]|\.([Ee]|$)", _A)
# Psych 4 ScalarScanner::INTEGER_LEGACY (groups: sign, binary, octal, decimal, hex).
_INTEGER = re.compile(
    r"([-+]?)(?:0b([0-1_,]++)|0([0-7_,]++)|(0|[1-9](?:[0-9]|[,_][0-9])*+)|0x([0-9a-fA-F_,]++))\Z", _A
)
_RUBY_TO_I = re.compile(r"\s*+([-+]?[0-9]++(?:_[0-9]++)*+)", _A)
_RUBY_TO_F = re.compile(
    r"\s*+[-+]?[0-9]++(?:_[0-9]++)*+(?:\.[0-9]++(?:_[0-9]++)*+)?(?:[eE][-+]?[0-9]++)?", _A
)
_BIG_DECIMAL = re.compile(
    r"\s*+(?:([-+]?Infinity|NaN)|([-+]?(?:[0-9]++(?:_[0-9]++)*+)?(?:\.(?:[0-9]++(?:_[0-9]++)*+)?)?"
    r"(?:[eEdD][-+]?[0-9]++)?))\s*+\Z",
    _A,
)
_DUMPED_BIG_DECIMAL = re.compile(r"[0-9]*+:(-?0\.[0-9]++(?:e-?[0-9]++)?)\Z", _A)
"""What ``BigDecimal#_dump`` writes for a finite value: ``18:0.125e2``, ``9:-0.5e-3``, ``9:0.0``."""
_NOT_BASE64 = re.compile(r"[^A-Za-z0-9+/]")
_TIME_SPLIT = re.compile(r"[ tT]")
_TIME_DATE = re.compile(r"^(-?\d{4})-(\d{1,2})-(\d{1,2})", _A | re.M)
_TIME_CLOCK = re.compile(
    r"(?<![0-9])([0-9]++:[0-9]++:[0-9]++)(?:\.([0-9]*+))?\s*+(Z|[-+][0-9]++(?::[0-9][0-9])?)?", _A
)
_TIME_OFFSET = re.compile(r"([+\-]?\d{1,2}):?(\d{1,2})?\Z", _A)
_UTC = dt.UTC


class Unreadable(Exception):
    """Ruby itself fails on this scalar; the caller reports it as malformed YAML at the node."""


def _size(s: str) -> str:
    """A scalar as an error message names it: by its size, never its text (the row's value, which
    may be a password, goes into ``--outcomes`` files through the message; the line and column the
    message is given say where it is)."""
    return f"{len(s)} characters"


class Symbol:
    """A Ruby Symbol kept apart from a String of the same name (only hash keys need the difference)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __eq__(self, other: object) -> bool:
        return type(other) is Symbol and other.name == self.name

    def __hash__(self) -> int:
        return hash((Symbol, self.name))

    def __repr__(self) -> str:
        return f":{self.name}"


def tokenize(s: str, max_digits: int) -> Any:
    """The Ruby value of the plain scalar ``s`` (``Symbol`` for symbols, ``Unreadable`` when Ruby fails)."""
    if not s:
        return None
    first = s[0]
    word = first.isascii() and first.isalpha()  # always matches STRINGISH: most strings skip the regex
    if not word and s.isdigit() and s.isascii() and (first != "0" or len(s) == 1):
        return decimal_int(s, max_digits)  # the INTEGER row's decimal form, the only one it can be
    if word or _STRINGISH.match(s) or "\n" in s:
        # Without a line break, NOT_YTONF looks at the first character only.
        if len(s) > 5 or (first not in _YTONF and "\n" not in s) or _NOT_YTONF.search(s):
            return s
        if s == "~" or _NULL.search(s):
            return None
        if _TRUE.search(s):
            return True
        if _FALSE.search(s):
            return False
        return s
    if TIME.match(s):
        try:
            return parse_time(s)
        except ValueError:
            return s
    match = _DATE.match(s)
    if match:
        return _ruby_date(s, int(match[1]), int(match[2]), int(match[3]))
    if _INF.match(s):
        return float("inf")
    if _NEG_INF.match(s):
        return float("-inf")
    if _NAN.match(s):
        return float("nan")
    if len(s) > 1 and s[0] == ":":
        quoted = _QUOTED_SYMBOL.match(s)
        name = quoted[2] if quoted else s[1:]
        return Symbol(name[1:] if quoted and name.startswith(":") else name)
    if _SEXAGESIMAL_INT.match(s):
        total = 0
        parts = s.split(":")
        for i, part in enumerate(parts):
            total += _ruby_to_i(part, max_digits) * 60 ** abs(i - 2)
        return total
    if _SEXAGESIMAL_FLOAT.match(s):
        ftotal: float | int = 0
        parts = s.split(":")
        for i, part in enumerate(parts):
            ftotal += _ruby_to_f(part) * 60 ** abs(i - 2)
        return ftotal
    if _FLOAT.match(s):
        if _LONE_DOT.match(s):
            return s
        try:
            return float(_FLOAT_CLEANUP.sub(r"\1", s))
        except ValueError:
            raise Unreadable(f"Ruby's Float() rejects the scalar ({_size(s)})") from None
    integer = parse_integer(s, max_digits)
    return s if integer is None else integer


def parse_integer(s: str, max_digits: int) -> int | None:
    """Psych's integer row: ``None`` unless the raw ``s`` matches ``INTEGER_LEGACY``, else its value.

    Like ``parse_int`` (``Integer(s.delete(',_'))``), a prefix with no digit after the separators
    are removed (``0x_``, ``-0b,``) is ``Unreadable``: Ruby's ``Integer()`` raises on it.
    """
    match = _INTEGER.match(s)
    if match is None:
        return None
    sign = -1 if match[1] == "-" else 1
    if match[4] is not None:
        return sign * decimal_int(match[4].replace(",", "").replace("_", ""), max_digits)
    base, digits = (
        (2, match[2]) if match[2] is not None else (8, match[3]) if match[3] is not None else (16, match[5])
    )
    cleaned = digits.replace(",", "").replace("_", "")
    if not cleaned:
        if base == 8:
            return 0  # "0_" is Integer("0")
        raise Unreadable(f"Ruby's Integer() rejects the scalar ({_size(s)})")
    return sign * int(cleaned, base)


def decimal_int(digits: str, max_digits: int) -> int:
    if len(digits) > max_digits:
        raise LimitExceeded("integer digits", max_digits, len(digits))
    try:
        return int(digits)
    except ValueError:  # the interpreter's own digit limit is lower than ours
        raise LimitExceeded("integer digits", max_digits, len(digits)) from None


def _ruby_to_i(s: str, max_digits: int) -> int:
    match = _RUBY_TO_I.match(s)
    if match is None:
        return 0
    text = match[1].replace("_", "")
    sign = -1 if text[0] == "-" else 1
    return sign * decimal_int(text.lstrip("+-"), max_digits)


def _ruby_to_f(s: str) -> float:
    match = _RUBY_TO_F.match(s)
    return float(match[0].replace("_", "")) if match else 0.0


def parse_time(s: str) -> dt.datetime:
    """``ScalarScanner#parse_time``: ``ValueError`` where Ruby raises ArgumentError, else ``Unreadable``.

    Ruby's order (psych ``parse_time``): ``Time.utc`` checks the fields, then ``Time.new`` checks the
    offset (``validate_utc_offset``, time.c), and either refusal keeps the String. Ruby's Time holds
    any year (``0000``, ``-0001``), so only then is the instant ``LimitExceeded`` if it falls outside
    ``datetime``'s years 1-9999 in UTC: ``0000-01-01 10:00:00 +25`` is the String, ``0000-12-31
    24:00:00`` is 0001-01-01.
    """
    year, month, day, hour, minute, second, fraction, zone = time_fields(s)
    check_clock(month, day, hour, minute, second)
    offset = 0 if zone is None or zone == "Z" else utc_offset(s, zone)
    micro = int(fraction.ljust(6, "0")[:6])  # nanoseconds and beyond are truncated
    return ruby_time_utc(year, month, day, hour, minute, second, micro, offset)


def time_fields(s: str) -> tuple[int, int, int, int, int, int, str, str | None]:
    """``parse_time``'s reading of ``s``: year, month, day, hour, minute, second as written, the
    fraction's digits (``""`` if none) and the zone (``None``, ``"Z"`` or an offset's text)."""
    parts = _TIME_SPLIT.split(s, maxsplit=1)
    date_match = _TIME_DATE.search(parts[0])
    clock = _TIME_CLOCK.search(parts[1]) if len(parts) == 2 else None
    if date_match is None or clock is None:
        raise Unreadable(f"Psych cannot parse the scalar as a time ({_size(s)})")
    hour, minute, second = (int(x) for x in clock[1].split(":"))
    year, month, day = int(date_match[1]), int(date_match[2]), int(date_match[3])
    return year, month, day, hour, minute, second, clock[2] or "", clock[3]


def utc_offset(s: str, zone: str) -> int:
    """The offset ``zone`` (``+07:00``, ``-0030``, ``+7``) in seconds east of UTC, by Ruby's sign rule.

    ``ValueError`` for a day or more (``+24:00``, ``-25``, ``+99``, ``+530``, read as 53 hours):
    ``Time.new``'s ``validate_utc_offset`` (Ruby time.c) refuses it, Psych keeps the text, and
    writes such a String plain, so ``… +25`` must read back as a String.
    """
    offset_match = _TIME_OFFSET.match(zone)
    if offset_match is None:
        raise Unreadable(f"Psych cannot parse the time's offset ({_size(s)})")
    offset = int(offset_match[1]) * 3600
    minutes = int(offset_match[2] or 0) * 60
    offset = offset - minutes if offset < 0 else offset + minutes  # Ruby's sign rule: -00:30 is +00:30
    if not -86400 < offset < 86400:
        raise ValueError("utc_offset out of range")
    return offset


def ruby_time_utc(
    year: int, month: int, day: int, hour: int, minute: int, second: int, micro: int, offset: int = 0
) -> dt.datetime:
    """The instant of fields ``check_clock`` accepted, written at ``offset`` seconds east of UTC, as
    ``Time.utc``/``Time.new`` make it: overflow rolls over (Feb 31 → Mar 3, 24:00 → next day), any
    year is read (proleptic Gregorian), and ``LimitExceeded`` only if the instant's UTC year is
    outside 1-9999."""
    if hour != 24 and second != 60:
        try:  # the common case: the fields already name a real instant
            instant = dt.datetime(year, month, day, hour, minute, second, micro, tzinfo=_UTC)
        except ValueError:
            pass  # Feb 31, year 0 and the like: counted from the epoch below
        else:
            return _after(instant, -offset, 0, year) if offset else instant
    seconds = (days_since_epoch(year, month) + day - 1) * 86400 + hour * 3600 + minute * 60 + second
    return _after(_EPOCH, seconds - offset, micro, year)


def check_clock(month: int, day: int, hour: int, minute: int, second: int) -> None:
    """``Time.utc``'s range checks (``ValueError``, Ruby's ArgumentError): a day up to 31 in any
    month (it rolls over), 24:00:00 and a leap second 60 allowed."""
    last = 0 if hour == 24 else 59
    if not (1 <= month <= 12 and 1 <= day <= 31 and 0 <= hour <= 24 and 0 <= minute <= last):
        raise ValueError("argument out of range")
    if not 0 <= second <= (0 if hour == 24 else 60):
        raise ValueError("argument out of range")


def days_since_epoch(year: int, month: int) -> int:
    """Days from 1970-01-01 to the 1st of ``month`` in ``year`` (any year, proleptic Gregorian): the
    calendar repeats every 400 years (146,097 days), so a year 400 to 799 stands in for it."""
    cycles, year_in_cycle = divmod(year, 400)
    first = dt.date(year_in_cycle + 400, month, 1).toordinal() - _EPOCH_ORDINAL
    return first + (cycles - 1) * 146_097


def _after(instant: dt.datetime, seconds: int, micro: int, year: int) -> dt.datetime:
    try:
        return instant + dt.timedelta(seconds=seconds, microseconds=micro)
    except OverflowError:
        raise LimitExceeded("year", 9999, None if 1 <= year <= 9999 else year) from None


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=_UTC)
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()


def _ruby_date(s: str, year: int, month: int, day: int) -> Any:
    """``Date.strptime(s, '%Y-%m-%d')``: Julian calendar before 1582-10-15, as Ruby's Date::ITALY."""
    if year < 1582 or (year == 1582 and (month, day) < (10, 15)):
        if year == 1582 and month == 10 and 5 <= day <= 14:
            return s  # the days the reform skipped do not exist
        leap = year % 4 == 0
        days = (31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
        if not (1 <= month <= 12 and 1 <= day <= days[month - 1]):
            return s
        try:
            return dt.date(year, month, day)  # the Julian fields, as Ruby prints them
        except ValueError:
            raise LimitExceeded("calendar date (proleptic Gregorian, years 1-9999)", 9999, year) from None
    try:
        return dt.date(year, month, day)
    except ValueError:
        return s


def big_decimal(s: str) -> decimal.Decimal:
    """``BigDecimal._load("18:0.125e2")``: the precision before ``:`` is a hint; the value is exact."""
    dumped = _DUMPED_BIG_DECIMAL.match(s)
    if dumped is not None:  # BigDecimal#_dump's own form, which read_big_decimal reads alike
        return _decimal(dumped[1])
    return read_big_decimal(s)


def read_big_decimal(s: str) -> decimal.Decimal:
    """``big_decimal`` by the general rule: any spelling ``BigDecimal._load`` accepts."""
    precision, colon, text = s.partition(":")
    match = _BIG_DECIMAL.match(text)
    if not colon or not (precision == "" or (precision.isascii() and precision.isdigit())) or match is None:
        raise Unreadable(f"the scalar is not a dumped BigDecimal ({_size(s)})")
    if match[1]:
        return _decimal(match[1])
    number = match[2].replace("_", "").translate(_EXPONENT_D)
    if not any(c.isdigit() for c in number.partition("e")[0]):
        raise Unreadable(f"the scalar is not a dumped BigDecimal ({_size(s)})")
    return _decimal(number)


def _decimal(text: str) -> decimal.Decimal:
    """``Decimal(text)``; ``LimitExceeded`` for an exponent past what Python's decimal holds
    (``decimal.MAX_EMAX``, 10^18 - 1), which it refuses with ``InvalidOperation``."""
    try:
        return decimal.Decimal(text)
    except decimal.InvalidOperation:
        raise LimitExceeded("a BigDecimal's exponent (Python's decimal)", decimal.MAX_EMAX) from None


_EXPONENT_D = str.maketrans("dDE", "eee")


def binary(s: str) -> str | bytes:
    """A ``!binary`` scalar: base64 read leniently like Ruby's ``unpack('m')``.

    Psych tags a String ``!binary`` when its bytes are not printable text: often UTF-8 all the
    same (the value is then that ``str``), or a ``bytea`` column's raw bytes (then ``bytes``).
    """
    alphabet = _NOT_BASE64.sub("", s.partition("=")[0])
    if len(alphabet) % 4 == 1:
        alphabet = alphabet[:-1]  # a lone sextet carries no whole byte
    raw = base64.b64decode(alphabet + "=" * (-len(alphabet) % 4))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw
