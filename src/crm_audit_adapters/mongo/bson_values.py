"""Values of the value model ↔ what BSON can hold, losslessly where BSON allows it.

The rules (docs/mongodb.md explains each):

* ``Decimal`` → ``Decimal128`` when Decimal128 holds it digit for digit (NaN, ±Infinity and -0
  included); otherwise — more than 34 significant digits, an exponent outside Decimal128's range, a
  NaN payload — the decimal's ``str()``, so no digit is silently rounded away.
* ``int`` within int64 → int; beyond int64 → like a Decimal (Decimal128 up to 34 digits, else the
  digits as a string): BSON has no bigger integer.
* ``float`` → BSON double, NaN and ±inf included.
* ``datetime`` → timezone-aware UTC, truncated to milliseconds (BSON keeps milliseconds); a naive one
  is taken as UTC. The truncation happens here, so every sink writes the same instant.
* ``bytes`` (a ``!binary`` value that is not UTF-8) → BSON Binary, subtype 0 (generic).
* ``date`` → ``"YYYY-MM-DD"``: BSON has no date-only type, and midnight UTC would invent a time and
  a zone the CRM never had.
* ``dict`` keys → ``str``; a key holding ``.``, ``%`` or NUL, or starting with ``$``, is
  percent-escaped (``%2E``, ``%25``, ``%00``, leading ``%24``) and unescaped on decode.
* nesting: MongoDB refuses a document nested past ``MONGODB_MAX_NESTING`` levels; the core's
  ``bson_nesting.nests_past`` tells whether a value would take its document there (``documents``
  checks each list or dict value, as the in-memory stores do).
  The check comes before any walk, so no writer meets ``RecursionError``: a value nested past the
  interpreter's stack fails this check, and the deepest one it lets through is encoded in about 300
  frames (the default recursion limit is 1,000; tests/unit/test_encoded_logs.py holds it to 400).
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

from attrs import frozen
from bson import Decimal128

from crm_audit_transform.values import Value

from .documents_types import Document, ReadDocument

MONGODB_MAX_NESTING: Final = 100
"""MongoDB's "Nested Depth for BSON Documents" limit (docs: Limits and Thresholds): the document is
level 1 and each non-empty embedded document or array one level more (the server's
``validateBSONDepthForUserStorage`` does not count an empty one). A deeper insert is refused."""

NESTS_PAST_MONGODB: Final = (
    f"the document nests more than {MONGODB_MAX_NESTING} levels deep, past MongoDB's limit "
    "for a document (a list or hash value nests too deep)"
)
"""Why a log whose document MongoDB would refuse for its nesting fails alone (``write_error``)."""

INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1

_NEEDS_ESCAPE: Final = re.compile(r"[.%\x00]|^\$")
_ESCAPED: Final = re.compile(r"%(25|2E|24|00)")
_UNESCAPE: Final = {"25": "%", "2E": ".", "24": "$", "00": "\x00"}


@functools.lru_cache(maxsize=4096, typed=True)  # documents repeat few keys: field and metadata names
def escape_key(key: object) -> str:
    """A document key MongoDB stores and queries plainly: reversible percent-escaping."""
    text = key if isinstance(key, str) else str(key)
    if not _NEEDS_ESCAPE.search(text):
        return text
    text = text.replace("%", "%25").replace(".", "%2E").replace("\x00", "%00")
    return "%24" + text[1:] if text.startswith("$") else text


def unescape_key(key: str) -> str:
    if "%" not in key:
        return key
    return _ESCAPED.sub(lambda m: _UNESCAPE[m.group(1)], key)


def to_bson_datetime(value: dt.datetime) -> dt.datetime:
    """Aware UTC with the microseconds BSON would drop already dropped (floor to the millisecond)."""
    tzinfo = value.tzinfo
    if tzinfo is dt.UTC and type(value) is dt.datetime:  # the common case: already UTC
        utc = value
    else:
        utc = value.replace(tzinfo=dt.UTC) if tzinfo is None else value.astimezone(dt.UTC)
    extra = utc.microsecond % 1000
    return utc.replace(microsecond=utc.microsecond - extra) if extra else utc


def from_bson_datetime(value: dt.datetime) -> dt.datetime:
    """pymongo decodes naive UTC unless the client is ``tz_aware``; both come back aware UTC."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


# Decimal128's coefficient holds 34 digits and its exponent (of the last digit) spans this range;
# inside both, the conversion is exact without a round trip.
_DECIMAL128_DIGITS: Final = 34
_DECIMAL128_EXPONENTS: Final = range(-6176, 6111 + 1)


def fits_decimal128(value: decimal.Decimal) -> bool:
    """Finite, at most 34 digits, exponent in range: ``Decimal128(value)`` is exact."""
    parts = value.as_tuple()
    return (
        isinstance(parts.exponent, int)
        and len(parts.digits) <= _DECIMAL128_DIGITS
        and parts.exponent in _DECIMAL128_EXPONENTS
    )


def encode_decimal(value: decimal.Decimal) -> Decimal128 | str:
    if fits_decimal128(value):
        return Decimal128(value)
    try:
        encoded = Decimal128(value)
    except (ValueError, ArithmeticError):
        return str(value)
    # Decimal128 may round, clamp the exponent or drop a sign; keep only exact representations.
    if str(encoded.to_decimal()) != str(value):
        return str(value)
    return encoded


def _same(value: Any) -> Any:
    return value


_PLAIN: Final = frozenset({str, bool, type(None)})
"""The exact types every encoder leaves as they are (``_same``)."""


# The encoder's leaves are the chosen wire form's (BSON objects, or Extended JSON wrappers), so what
# a walk returns is typed ``Any``: pymongo and json.dumps take it as it is, nothing reads it back.
@frozen
class ValueEncoder:
    """The walk from the value model to one representation of the rules above.

    The walk (types, int64 range, exact decimals, UTC milliseconds, dates, key escaping) is shared;
    only the leaves differ: BSON keeps ``Decimal128``/``datetime``/``float`` objects, while relaxed
    Extended JSON turns them into the ``$numberDecimal``/``$date``/``$numberDouble`` wrappers.
    """

    value: Callable[[Value], Any]
    mapping: Callable[[Mapping[Any, Value]], Document]
    datetime: Callable[[dt.datetime], Any]


def value_encoder(
    *,
    decimal_out: Callable[[decimal.Decimal, Decimal128 | str], Any] = lambda _, encoded: encoded,
    datetime_out: Callable[[dt.datetime], Any] = _same,
    float_out: Callable[[float], Any] = _same,
    fitting_decimal_out: Callable[[decimal.Decimal], Any] | None = None,
    bytes_out: Callable[[bytes], Any] = _same,
    shortcuts: Mapping[type, Callable[[Any], Any]] | None = None,
) -> ValueEncoder:
    """A walk whose leaves are given: ``decimal_out(original, encode_decimal(original))``, the UTC
    millisecond ``datetime_out``, ``float_out``; ``fitting_decimal_out(original)``, when given, stands
    for ``decimal_out`` of a decimal Decimal128 holds exactly, without building the Decimal128.

    ``shortcuts`` maps an exact type (``datetime``, ``Decimal``) to a function that gives the very
    leaf the walk's own path gives, in fewer steps: the walk then calls it for that type, at any
    depth (``ValueEncoder.datetime`` too, for ``datetime``). A property test holds each equal."""

    def datetime(value: dt.datetime) -> Any:
        return datetime_out(to_bson_datetime(value))

    def number(value: decimal.Decimal) -> Any:
        if fitting_decimal_out is not None and fits_decimal128(value):
            return fitting_decimal_out(value)
        return decimal_out(value, encode_decimal(value))

    def exact_int(value: int) -> Any:
        return value if INT64_MIN <= value <= INT64_MAX else number(decimal.Decimal(value))

    # Strings, booleans and None are their own form in every encoding: put in without a call.
    def exact_dict(value: dict[Any, Value]) -> Document:
        plain = _PLAIN
        return {escape_key(key): item if type(item) in plain else encode(item) for key, item in value.items()}

    def exact_list(value: list[Value] | tuple[Value, ...]) -> list[Any]:
        plain = _PLAIN
        return [item if type(item) in plain else encode(item) for item in value]

    # The exact built-in types by a single lookup; subclasses take the isinstance chain below.
    exact: dict[type, Callable[[Any], Any]] = {
        str: _same,
        bool: _same,
        type(None): _same,
        int: exact_int,
        dict: exact_dict,
        float: float_out,
        list: exact_list,
        tuple: exact_list,
        decimal.Decimal: number,
        dt.datetime: datetime,
        dt.date: dt.date.isoformat,
        bytes: bytes_out,
    }
    exact.update(shortcuts or {})
    exact_get = exact.get

    def encode(value: Value) -> Any:
        handler = exact_get(type(value))
        if handler is not None:
            return handler(value)
        # Most frequent kinds first; bool before int (bool is an int), datetime before date.
        if value is None or isinstance(value, bool | str):
            return value
        if isinstance(value, dict):
            return {escape_key(key): encode(item) for key, item in value.items()}
        if isinstance(value, int):
            if INT64_MIN <= value <= INT64_MAX:
                return int(value)
            return number(decimal.Decimal(value))
        if isinstance(value, float):
            return float_out(value)
        if isinstance(value, list | tuple):
            return [encode(item) for item in value]
        if isinstance(value, decimal.Decimal):
            return number(value)
        if isinstance(value, dt.datetime):
            return datetime(value)
        if isinstance(value, dt.date):
            return value.isoformat()
        if isinstance(value, bytes):
            return bytes_out(bytes(value))
        if isinstance(value, Mapping):
            return mapping(value)
        raise TypeError(f"{type(value).__name__} is not a value of the value model")

    def mapping(value: Mapping[Any, Value]) -> Document:
        return {escape_key(key): item if type(item) is str else encode(item) for key, item in value.items()}

    return ValueEncoder(encode, mapping, exact[dt.datetime])


BSON: Final = value_encoder()
"""Values as pymongo/``bson.encode`` take them."""


def encode_value(value: Value) -> Any:
    """One value of the value model → its BSON-ready form (see the module docstring)."""
    return BSON.value(value)


def encode_mapping(value: Mapping[Any, Value]) -> Document:
    return BSON.mapping(value)


def decode_value(value: object) -> Value:
    """A stored value → the value model: Decimal128 → Decimal, datetimes aware UTC, keys unescaped.

    Dates were stored as strings and come back as strings; anything outside the value model (an
    ObjectId in a foreign document, say) comes back as its ``str()``.
    """
    if value is None or isinstance(value, bool | str | float):
        return value
    if isinstance(value, int):
        return int(value)  # bson.Int64 → int
    if isinstance(value, bytes):
        return bytes(value)  # Binary subtype 0 decodes to bytes
    if isinstance(value, Decimal128):
        return value.to_decimal()
    if isinstance(value, dt.datetime):
        return from_bson_datetime(value)
    if isinstance(value, Mapping):
        return decode_mapping(value)
    if isinstance(value, list | tuple):
        return [decode_value(item) for item in value]
    return str(value)


def decode_mapping(value: ReadDocument) -> dict[str, Value]:
    return {unescape_key(key): decode_value(item) for key, item in value.items()}
