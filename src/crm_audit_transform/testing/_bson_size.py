"""The bytes MongoDB counts for a document of the value model, without a BSON encoder.

The core loads no driver, so the in-memory stores cannot ``bson.encode`` a document; they size it
here to refuse what MongoDB refuses: a document past ``MAX_DOCUMENT_BYTES`` (``_id`` included,
MongoDB's "BSON Document Size" limit). Each value is sized in the form the MongoDB adapter stores it
(``crm_audit_adapters.mongo.bson_values``), by the BSON spec (bsonspec.org):

* a document or array: 4 (its length) + its elements + 1; an element: 1 (type) + the key's UTF-8
  bytes + 1 (NUL) + the value; an array's keys are ``"0"``, ``"1"``, …;
* ``None`` 0, ``bool`` 1, ``int`` 4 (int32) or 8 (int64), ``float`` 8, aware ``datetime`` 8;
* ``str``: 4 + UTF-8 bytes + 1; a ``date`` is stored as its ISO text, ``bytes`` as Binary (4 + 1 + n);
* ``Decimal`` (and an ``int`` past int64): Decimal128 (16) when it holds the value exactly (at most 34
  digits, exponent in range; NaN without a payload and the infinities too), else its text;
* a key holding ``.``, ``%`` or NUL, or starting with ``$``, is stored percent-escaped: 2 bytes more
  for each such character.

tests/property/test_bson_size.py holds these sizes equal to ``bson.encode`` of the adapter's form.
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
from collections.abc import Mapping
from typing import Any, Final

__all__ = ["ID_BYTES", "MAX_DOCUMENT_BYTES", "document_bytes", "key_bytes", "value_bytes"]

MAX_DOCUMENT_BYTES: Final = 16 * 1024 * 1024
"""MongoDB's document size limit, as ``crm_audit_adapters.mongo.document_limits`` has it."""
ID_BYTES: Final = 17
"""What an ObjectId ``_id`` element adds (type, ``_id`` and its NUL, 12 bytes), as MongoDB adds one."""

_INT32: Final = range(-(2**31), 2**31)
_INT64: Final = range(-(2**63), 2**63)
_DECIMAL128_DIGITS: Final = 34
_DECIMAL128_EXPONENTS: Final = range(-6176, 6111 + 1)


def document_bytes(document: Mapping[Any, object]) -> int:
    """The BSON size of ``document`` (its keys escaped as stored), without an ``_id`` it lacks.

    ``TypeError`` for a value outside the value model.
    """
    size = 5
    for key, value in document.items():  # a loop, not sum() of a generator: the in-memory stores
        # size every log they insert
        if type(value) is str and value.isascii():
            size += _key_bytes(key) + 5 + len(value)
        elif value is None:
            size += _key_bytes(key)
        else:
            size += _key_bytes(key) + _value_bytes(value)
    return size


def key_bytes(key: object) -> int:
    """What the key of an element adds (its type byte, the key escaped as stored, its NUL)."""
    return _key_bytes(key)


def value_bytes(value: object) -> int:
    """What ``value`` adds as an element's value, its key not counted; ``TypeError`` as
    ``document_bytes``."""
    if type(value) is str and value.isascii():
        return 5 + len(value)
    return _value_bytes(value)


@functools.lru_cache(maxsize=4096, typed=True)  # documents repeat few keys: field and metadata names
def _key_bytes(key: object) -> int:
    text = key if isinstance(key, str) else str(key)
    escaped = text.count(".") + text.count("%") + text.count("\x00") + text.startswith("$")
    return 2 + len(text.encode("utf-8", "surrogatepass")) + 2 * escaped


def _text_bytes(text: str) -> int:
    return 5 + len(text.encode("utf-8", "surrogatepass"))


def _decimal_bytes(value: decimal.Decimal) -> int:
    parts = value.as_tuple()
    if not value.is_finite():  # Decimal128 has NaN and the infinities, not a NaN's payload
        exact = value.is_infinite() or not parts.digits
    else:
        exact = len(parts.digits) <= _DECIMAL128_DIGITS and parts.exponent in _DECIMAL128_EXPONENTS
    return 16 if exact else _text_bytes(str(value))


def _value_bytes(value: object) -> int:
    if value is None:
        return 0
    if isinstance(value, bool):
        return 1
    if isinstance(value, int):
        if value in _INT32:
            return 4
        return 8 if value in _INT64 else _decimal_bytes(decimal.Decimal(value))
    if isinstance(value, float | dt.datetime):
        return 8
    if isinstance(value, str):
        return _text_bytes(value)
    if isinstance(value, dt.date):
        return _text_bytes(value.isoformat())
    if isinstance(value, bytes):
        return 5 + len(value)
    if isinstance(value, decimal.Decimal):
        return _decimal_bytes(value)
    if isinstance(value, Mapping):
        return document_bytes(value)
    if isinstance(value, list | tuple):
        return 5 + sum(2 + len(str(i)) + _value_bytes(item) for i, item in enumerate(value))
    raise TypeError(f"{type(value).__name__} is not a value of the value model")
