"""The corpus's typed truth encoding (fixtures README, "Typed encoding") decoded into the value model.

``decode`` turns what Ruby read back into what ``load_audited_changes`` must return; ``canonical``
makes two values comparable exactly (NaN equals NaN, ``-0.0`` differs from ``0.0``, a bool differs
from an int, hash key order counts). The key rule of docs/value-model.md is restated here on
purpose rather than imported, so that the golden test checks the loader's rule against it.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "audited-5.8.0"
TEXT_ROWS = CORPUS / "audits.jsonl"
TEXT_TRUTH = CORPUS / "audits.truth.jsonl"
JSONB_ROWS = CORPUS / "jsonb" / "audits.jsonl"
JSONB_TRUTH = CORPUS / "jsonb" / "audits.truth.jsonl"


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            yield json.loads(line)


def rows_with_truth(rows: Path, truth: Path) -> list[tuple[dict[str, Any], Any]]:
    """Every corpus row paired with the typed truth of its ``audited_changes``."""
    expected = {(t["tenant"], t["id"]): t["changes"] for t in read_jsonl(truth)}
    return [(row, expected[(row["tenant"], row["id"])]) for row in read_jsonl(rows)]


class RubyKey:
    """A decoded non-String hash key: its ``to_s`` and ``inspect``."""

    def __init__(self, to_s: str, inspect: str) -> None:
        self.to_s = to_s
        self.inspect = inspect


def decode(encoded: Any) -> Any:
    """The value-model value of one typed-encoded Ruby value."""
    if encoded is None or isinstance(encoded, bool | int | str):
        return encoded
    if isinstance(encoded, list):
        return [decode(item) for item in encoded]
    (tag, payload), *_ = encoded.items()
    if tag == "$hash":
        return named(_pairs(payload))
    if tag == "$int":
        return int(payload)
    if tag == "$float":
        return float(payload)  # Float#to_s digits, NaN and Infinity all parse back exactly
    if tag == "$decimal":
        return decimal.Decimal(payload)
    if tag == "$date":
        return dt.date.fromisoformat(payload)
    if tag == "$time":
        return _time(payload)
    if tag in ("$timezone", "$symbol"):
        return payload
    raise ValueError(f"unknown typed encoding {encoded!r}")


def _pairs(payload: list[list[Any]]) -> list[tuple[Any, Any]]:
    return [(_key(key), decode(value)) for key, value in payload]


def _time(text: str) -> dt.datetime:
    """``YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ``, cut (not rounded) to microseconds."""
    whole, fraction = text.rstrip("Z").split(".")
    return dt.datetime.fromisoformat(whole).replace(
        microsecond=int(fraction[:6].ljust(6, "0")), tzinfo=dt.UTC
    )


def _key(encoded: Any) -> Any:
    if isinstance(encoded, str):
        return encoded
    if encoded is None:
        return RubyKey("", "nil")
    if isinstance(encoded, bool):
        return RubyKey(str(encoded).lower(), str(encoded).lower())
    if isinstance(encoded, int):
        return RubyKey(str(encoded), str(encoded))
    (tag, payload), *_ = encoded.items()
    if tag == "$symbol":
        return RubyKey(payload, f":{payload}")
    if tag in ("$float", "$int"):
        return RubyKey(payload, payload)
    if tag == "$decimal":
        return RubyKey(_engineering(decimal.Decimal(payload)), _engineering(decimal.Decimal(payload)))
    if tag in ("$date", "$time"):
        iso = decode(encoded).isoformat()
        return RubyKey(iso, iso)
    raise ValueError(f"unsupported key encoding {encoded!r}")


def _engineering(value: decimal.Decimal) -> str:
    """``BigDecimal#to_s`` from ``to_s("F")``: ``0.<digits>e<exponent>``."""
    if not value.is_finite():
        return str(value)  # NaN, Infinity, -Infinity
    sign = "-" if value.is_signed() else ""
    if value.is_zero():
        return f"{sign}0.0"
    _, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    text = "".join(map(str, digits))
    return f"{sign}0.{text.rstrip('0')}e{len(text) + exponent}"


def named(pairs: list[tuple[Any, Any]]) -> dict[str, Any]:
    """The key rule: Strings keep their name; others take to_s, else inspect, else inspect#2…"""
    strings = {key for key, _ in pairs if isinstance(key, str)}
    named: dict[str, Any] = {}
    for key, value in pairs:
        if isinstance(key, str):
            named[key] = value
            continue
        name, suffix = key.to_s, 2
        if name in strings or name in named:
            name = key.inspect
            while name in strings or name in named:
                name, suffix = f"{key.inspect}#{suffix}", suffix + 1
        named[name] = value
    return named


def canonical(value: Any) -> Any:
    """A comparable form that tells apart everything the value model tells apart."""
    if value is None:
        return ("nil",)
    kind = type(value)
    if kind is bool or kind is int or kind is str:
        return (kind.__name__, value)
    if kind is float:
        return ("float", "nan" if math.isnan(value) else repr(value))
    if kind is decimal.Decimal:
        return ("decimal", "NaN" if value.is_nan() else (value.is_signed(), value))
    if kind is dt.datetime:
        if value.utcoffset() != dt.timedelta(0):
            return ("naive-or-local-time", repr(value))
        return ("time", value.replace(tzinfo=None).isoformat())
    if kind is dt.date:
        return ("date", value.isoformat())
    if kind is list:
        return ("list", tuple(canonical(item) for item in value))
    if kind is dict:
        return ("dict", tuple((_exact_key(key), canonical(item)) for key, item in value.items()))
    return ("not-in-the-value-model", repr(value))


def _exact_key(key: Any) -> Any:
    return key if type(key) is str else ("non-str-key", repr(key))
