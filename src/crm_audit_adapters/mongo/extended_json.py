"""An activity log's document as MongoDB relaxed Extended JSON, in one pass and orjson.

The text reads back (``bson.json_util.loads``, ``mongoimport``) to exactly the document of
``bson.json_util.dumps(encode_activity_log(log), json_options=RELAXED_JSON_OPTIONS)``, but is
written compactly by orjson: no spaces after ``,`` and ``:``, UTF-8 instead of ``\\u`` escapes, and
floats in their shortest round-trip form (``1e16`` where ``json`` writes ``1e+16``). ``json_util``
first rebuilds the whole document in Python (one call per value) before ``json.dumps``; here the
value walk of ``bson_values`` builds the JSON-ready document directly — the same rules, with
relaxed Extended JSON leaves:

* ``Decimal128`` → ``{"$numberDecimal": str}`` (``"NaN"`` for every NaN, as ``Decimal128.__str__``);
* a datetime (already UTC, whole milliseconds) → ``{"$date": "YYYY-MM-DDTHH:MM:SS[.mmm]Z"}`` from
  the epoch on, ``{"$date": {"$numberLong": "<ms>"}}`` before it;
* ``bytes`` → ``{"$binary": {"base64": str, "subType": "00"}}``;
* NaN and ±inf floats → ``{"$numberDouble": "NaN" | "Infinity" | "-Infinity"}``; other floats, ints
  (int64 by then), strings, booleans and null are JSON as they are;

then ``orjson.dumps``. A string holding a lone surrogate (not UTF-8, and not encodable in BSON
either) makes orjson raise ``TypeError``: the log cannot be written, as MongoDB would refuse it.
A datetime's seconds are printed by orjson: ``isoformat`` of an aware datetime costs ten times as
much, and was the sink's largest single cost.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import math
from typing import Any, Final

import orjson
from bson import Decimal128
from bson.datetime_ms import _datetime_to_millis

from crm_audit_transform.domain import ActivityLog

from .bson_values import ValueEncoder, value_encoder
from .documents import activity_log_document
from .documents_types import Document

__all__ = ["RELAXED_JSON", "relaxed_json_bytes", "relaxed_json_document", "relaxed_json_line"]

_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _decimal(value: decimal.Decimal, encoded: Decimal128 | str) -> Any:
    if isinstance(encoded, str):
        return encoded  # not exact in Decimal128: kept as its digits
    # encode_decimal keeps only exact values, so str(encoded) is str(value), bar NaN's sign/payload.
    return {"$numberDecimal": "NaN" if value.is_nan() else str(value)}


def _datetime(value: dt.datetime) -> Any:
    if value >= _EPOCH:
        millis = value.microsecond // 1000
        if type(value) is dt.datetime:  # orjson's text starts '"YYYY-MM-DDTHH:MM:SS' as isoformat's
            seconds = orjson.dumps(value)[1:20].decode("ascii")
        else:
            seconds = value.isoformat(timespec="seconds")[:19]  # aware UTC: drop the "+00:00"
        return {"$date": f"{seconds}.{millis:03d}Z" if millis else f"{seconds}Z"}
    return {"$date": {"$numberLong": str(_datetime_to_millis(value))}}


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


RELAXED_JSON: Final[ValueEncoder] = value_encoder(
    decimal_out=_decimal,
    datetime_out=_datetime,
    float_out=_float,
    fitting_decimal_out=_fitting_decimal,
    bytes_out=_bytes,
)
"""Values as the plain JSON of their relaxed Extended JSON form."""


def relaxed_json_document(log: ActivityLog) -> Document:
    """The log's MongoDB document with every value already in its relaxed Extended JSON form."""
    return activity_log_document(log, RELAXED_JSON)


def relaxed_json_bytes(log: ActivityLog) -> bytes:
    """The document as compact UTF-8 relaxed Extended JSON (no newline); ``TypeError`` if unencodable."""
    return orjson.dumps(relaxed_json_document(log))


def relaxed_json_line(log: ActivityLog) -> str:
    """``relaxed_json_bytes`` as text: what ``json_util.loads`` reads back as ``encode_activity_log(log)``."""
    return relaxed_json_bytes(log).decode()
