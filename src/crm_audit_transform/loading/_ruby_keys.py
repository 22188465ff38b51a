"""The key rule: Ruby hash keys of any class become ``str`` keys without ever losing an entry.

1. A String key is itself, always.
2. Any other key takes Ruby's ``key.to_s`` (what ActiveSupport's ``stringify_keys`` uses): a Symbol
   its name, an Integer its digits, nil ``""``, true ``"true"``, a Float ``Float#to_s``
   (``"1.5"``, ``"1.0e-07"``), a BigDecimal ``BigDecimal#to_s`` (``"0.125e2"``), a Date or Time
   its ISO 8601 form.
3. When that name is taken in the same hash (by a String key anywhere in it, or by an earlier
   key), the key takes its Ruby ``inspect`` form instead (``:theme``, ``nil``), then that form
   followed by ``#2``, ``#3`` … until the name is free.

So ``{:theme => 1, "theme" => 2}`` loads as ``{":theme": 1, "theme": 2}``, in Ruby's order.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
from collections.abc import Iterable
from typing import Any

from ..errors import BadEncoding
from ._psych_scalars import Symbol


def key_name(key: Any) -> str:
    """Ruby's ``key.to_s`` for a scalar key."""
    kind = type(key)
    if kind is str:
        return str(key)
    if kind is Symbol:
        return str(key.name)
    if key is None:
        return ""
    if kind is bool:
        return "true" if key else "false"
    if kind is int:
        return str(key)
    if kind is float:
        return ruby_float_to_s(key)
    if kind is decimal.Decimal:
        return ruby_big_decimal_to_s(key)
    if isinstance(key, dt.date):
        return key.isoformat()
    if kind is bytes:  # a !binary key that is not UTF-8 has no str name to take
        raise BadEncoding("a !binary hash key is not UTF-8 text")
    raise TypeError(f"not a scalar key: {key!r}")


def key_inspect(key: Any) -> str:
    """Ruby's ``key.inspect`` where it differs from ``to_s``."""
    if type(key) is Symbol:
        return f":{key.name}"
    if key is None:
        return "nil"
    return key_name(key)


def name_keys(pairs: Iterable[tuple[Any, Any]]) -> dict[str, Any]:
    """A ``str``-keyed dict of Ruby ``(key, value)`` pairs (keys already unique), in their order."""
    pairs = list(pairs)
    claimed = {key for key, _ in pairs if type(key) is str}
    named: dict[str, Any] = {}
    for key, value in pairs:
        if type(key) is str:
            named[key] = value
            continue
        name = key_name(key)
        if name in claimed or name in named:
            base = name = key_inspect(key)
            suffix = 2
            while name in claimed or name in named:
                name = f"{base}#{suffix}"
                suffix += 1
        named[name] = value
    return named


def ruby_float_to_s(value: float) -> str:
    """``Float#to_s``: shortest digits, fixed below 1e16 and down to 1e-4, else ``d.ddde+XX``."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    sign = "-" if math.copysign(1.0, value) < 0 else ""
    if value == 0:
        return f"{sign}0.0"
    digits, point = _digits(decimal.Decimal(repr(abs(value))))
    if 0 < point < 16:
        whole = digits[:point].ljust(point, "0")
        return f"{sign}{whole}.{digits[point:] or '0'}"
    if -4 < point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    return f"{sign}{digits[0]}.{digits[1:] or '0'}e{point - 1:+03d}"


def ruby_big_decimal_to_s(value: decimal.Decimal) -> str:
    """``BigDecimal#to_s``: ``0.<digits>e<exponent>``."""
    if value.is_nan():
        return "NaN"
    sign = "-" if value.is_signed() else ""
    if value.is_infinite():
        return f"{sign}Infinity"
    if value.is_zero():
        return f"{sign}0.0"
    digits, point = _digits(value.copy_abs())
    return f"{sign}0.{digits}e{point}"


def _digits(value: decimal.Decimal) -> tuple[str, int]:
    """Significant digits without trailing zeros, and where the decimal point sits before them."""
    _, digit_tuple, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple)).lstrip("0")
    stripped = digits.rstrip("0")
    return stripped, len(digits) + exponent
