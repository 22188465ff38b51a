"""An activity log's document as MongoDB relaxed Extended JSON, in one pass and orjson.

The text reads back (``bson.json_util.loads``, ``mongoimport``) to exactly the document of
``bson.json_util.dumps(encode_activity_log(log), json_options=RELAXED_JSON_OPTIONS)``, but is
written compactly by orjson: no spaces after ``,`` and ``:``, UTF-8 instead of ``\\u`` escapes, and
floats as orjson prints them — the shortest digits that read back to the same double, in orjson's
own spelling: ``1e+16``, ``1e-7``, ``0.00001``, where ``json`` writes ``1e+16``, ``1e-07``, ``1e-05``
(the spelling is orjson's and may differ between its releases; every spelling reads back to the
same double, and the compiled line prints floats through orjson too, so both paths write the same
bytes). ``json_util`` first rebuilds the whole document in Python (one call per value) before
``json.dumps``; here the value walk of ``bson_values`` builds the JSON-ready document directly —
the same rules, with relaxed Extended JSON leaves:

* ``Decimal128`` → ``{"$numberDecimal": str}`` (``"NaN"`` for every NaN, as ``Decimal128.__str__``);
* a datetime (already UTC, whole milliseconds) → ``{"$date": "YYYY-MM-DDTHH:MM:SS[.mmm]Z"}`` from
  the epoch on, ``{"$date": {"$numberLong": "<ms>"}}`` before it;
* ``bytes`` → ``{"$binary": {"base64": str, "subType": "00"}}``;
* NaN and ±inf floats → ``{"$numberDouble": "NaN" | "Infinity" | "-Infinity"}``; other floats, ints
  (int64 by then), strings, booleans and null are JSON as they are;

then ``orjson.dumps``. A string holding a lone surrogate (not UTF-8, and not encodable in BSON
either) makes orjson raise ``TypeError``: the log cannot be written, as MongoDB would refuse it.
A datetime's seconds are printed by orjson: ``isoformat`` of an aware datetime costs ten times as
much, and was the sink's largest single cost. An aware UTC datetime and a ``Decimal`` Decimal128
holds exactly — most of them — take a shortcut to the same leaf (``value_encoder``'s ``shortcuts``;
a property test holds each equal to the walk without it).

When it was built (``setup.py``), the compiled ``_cline`` writes the same bytes in one C pass,
without the document's dicts, and hands the whole log back to this pure path for anything it does
not write itself (``_cline.pyx`` says what); ``pure_relaxed_json_bytes`` is the pure path alone.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import math
from collections.abc import Callable
from typing import Any, Final

import orjson
from bson import DatetimeMS, Decimal128

from crm_audit_transform.domain import ActivityLog

from .bson_values import ValueEncoder, escape_key, to_bson_datetime, value_encoder
from .documents import ATTRIBUTE_ROOM, METADATA_ROOM, activity_log_document, encode_leaf
from .documents_types import Document

__all__ = [
    "COMPILED_LINE",
    "RELAXED_JSON",
    "pure_relaxed_json_bytes",
    "relaxed_json_bytes",
    "relaxed_json_document",
    "relaxed_json_line",
    "relaxed_json_line_bytes",
]

_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_DECIMAL128_DIGITS: Final = 34


def _decimal(value: decimal.Decimal, encoded: Decimal128 | str) -> Any:
    if isinstance(encoded, str):
        return encoded  # not exact in Decimal128: kept as its digits
    # encode_decimal keeps only exact values, so str(encoded) is str(value), bar NaN's sign/payload.
    return {"$numberDecimal": "NaN" if value.is_nan() else str(value)}


_WHOLE_SECONDS: Final = orjson.OPT_UTC_Z | orjson.OPT_OMIT_MICROSECONDS


def _any_datetime(value: dt.datetime) -> Any:
    """``_datetime(to_bson_datetime(value))``, read straight off an aware UTC ``datetime`` from the
    epoch on (a log's timestamp, most datetime values): its seconds and ``microsecond // 1000`` are
    the truncated datetime's, and orjson prints them — ``"YYYY-MM-DDTHH:MM:SSZ"`` for whole seconds,
    else six fraction digits, of which the first three are the milliseconds."""
    if value.tzinfo is dt.UTC and type(value) is dt.datetime and value.year >= 1970:
        if value.microsecond < 1000:  # no milliseconds: no fraction
            return {"$date": orjson.dumps(value, option=_WHOLE_SECONDS)[1:-1].decode("ascii")}
        return {"$date": orjson.dumps(value, option=orjson.OPT_UTC_Z)[1:24].decode("ascii") + "Z"}
    return _datetime(to_bson_datetime(value))


def _any_decimal(value: decimal.Decimal) -> Any:
    """The walk's leaf of a ``Decimal``, with a cheaper test of the common case: a finite decimal whose
    text has at most 34 characters has at most 34 digits (the text shows every digit of the
    coefficient), and with its adjusted exponent within ±6000 its exponent is within Decimal128's
    range; Decimal128 then holds it exactly and its text is the decimal's (``_fitting_decimal``)."""
    text = str(value)
    if len(text) <= _DECIMAL128_DIGITS and value.is_finite() and -6000 <= value.adjusted() <= 6000:
        return {"$numberDecimal": text}
    return _walk_decimal(value)


def _datetime(value: dt.datetime) -> Any:
    if value >= _EPOCH:
        millis = value.microsecond // 1000
        if type(value) is dt.datetime:  # orjson's text starts '"YYYY-MM-DDTHH:MM:SS' as isoformat's
            seconds = orjson.dumps(value)[1:20].decode("ascii")
        else:
            seconds = value.isoformat(timespec="seconds")[:19]  # aware UTC: drop the "+00:00"
        return {"$date": f"{seconds}.{millis:03d}Z" if millis else f"{seconds}Z"}
    return {"$date": {"$numberLong": str(int(DatetimeMS(value)))}}  # bson's own milliseconds


def _float(value: float) -> Any:
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return {"$numberDouble": "NaN"}
    return {"$numberDouble": "Infinity" if value > 0 else "-Infinity"}


def _fitting_decimal(value: decimal.Decimal) -> Any:
    return {"$numberDecimal": str(value)}  # finite and exact in Decimal128: its str() is value's


def _bytes(value: bytes) -> Any:
    return {"$binary": {"base64": base64.b64encode(value).decode("ascii"), "subType": "00"}}


_WALK: Final[ValueEncoder] = value_encoder(
    decimal_out=_decimal,
    datetime_out=_datetime,
    float_out=_float,
    fitting_decimal_out=_fitting_decimal,
    bytes_out=_bytes,
)
"""The walk without the shortcuts: the definition ``RELAXED_JSON`` is held equal to."""

_walk_decimal = _WALK.value

RELAXED_JSON: Final[ValueEncoder] = value_encoder(
    decimal_out=_decimal,
    datetime_out=_datetime,
    float_out=_float,
    fitting_decimal_out=_fitting_decimal,
    bytes_out=_bytes,
    shortcuts={dt.datetime: _any_datetime, decimal.Decimal: _any_decimal},
)
"""Values as the plain JSON of their relaxed Extended JSON form."""


def relaxed_json_document(log: ActivityLog) -> Document:
    """The log's MongoDB document with every value already in its relaxed Extended JSON form."""
    return activity_log_document(log, RELAXED_JSON)


def pure_relaxed_json_bytes(log: ActivityLog) -> bytes:
    """The document as compact UTF-8 relaxed Extended JSON (no newline); ``TypeError`` if unencodable."""
    return orjson.dumps(relaxed_json_document(log))


def _pure_line_bytes(log: ActivityLog, newline: bool = False) -> bytes:
    line = pure_relaxed_json_bytes(log)
    return line + b"\n" if newline else line


try:
    from . import _cline  # optional: built by setup.py when it can
except ImportError:  # no compiler, or skipped on purpose: the pure path
    _cline = None  # type: ignore[assignment]

_FLAT_LEAVES: Final = (decimal.Decimal, float, int, dt.date, dt.datetime, bytes)
"""The exact types the walk turns into a leaf that holds no other value (``_cline`` asks the walk)."""

COMPILED_LINE: Final = _cline is not None and _cline.configure(
    pure_relaxed_json_bytes,
    RELAXED_JSON,
    encode_leaf,
    escape_key,
    _FLAT_LEAVES,
    ATTRIBUTE_ROOM,
    METADATA_ROOM,
)
"""Whether lines are written by the compiled ``_cline`` (built, and orjson prints as it expects)."""

_LINE: Final[Callable[[ActivityLog, bool], bytes]] = (
    _cline.relaxed_json_bytes if COMPILED_LINE else _pure_line_bytes
)


def relaxed_json_bytes(log: ActivityLog) -> bytes:
    """The document as compact UTF-8 relaxed Extended JSON (no newline); ``TypeError`` if unencodable.

    The compiled line when it was built, else ``pure_relaxed_json_bytes``: the same bytes."""
    return _LINE(log, False)


def relaxed_json_line_bytes(log: ActivityLog) -> bytes:
    """``relaxed_json_bytes(log) + b"\\n"`` in one piece (the JSONL sink's line)."""
    return _LINE(log, True)


def relaxed_json_line(log: ActivityLog) -> str:
    """``relaxed_json_bytes`` as text: what ``json_util.loads`` reads back as ``encode_activity_log(log)``."""
    return relaxed_json_bytes(log).decode()
