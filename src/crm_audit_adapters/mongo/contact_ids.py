"""A CDP contact's ``_id`` as the text an activity log's ``customer_id`` carries, and back.

``customer_id`` is "the CDP contact's id" (docs/activity-log.md): text a CDP reader matches against
the contact's ``_id``. Only an ``_id`` with one agreed text has one:

* an ObjectId → its 24 lowercase hex digits (``str(ObjectId)``, what every driver prints);
* a string → itself;
* an integer (int32/int64, never a bool) → its decimal digits;
* a UUID — BSON binary subtype 4 of 16 bytes, or a ``uuid.UUID`` a codec decoded → its canonical
  text, ``7d4c1f0e-2f6a-4c7b-9a55-0c2b9d3e8f11``.

Anything else has no such text, and the contact is not found (``contact_not_found``), as a
contact with no sync time is: a legacy UUID (subtype 3, whose byte order differs from driver to
driver, so no one text is "the" UUID), other binary subtypes (``str()`` gave Python's bytes repr,
``b'}L\\x1f…'``, which names no contact), doubles, decimals, dates, documents.
"""

from __future__ import annotations

import uuid
from typing import Any, Final

from bson import Binary, Int64, ObjectId
from bson.binary import UUID_SUBTYPE, UuidRepresentation

__all__ = ["contact_id_order", "contact_id_text", "stored_contact_ids"]

_INT64: Final = range(-(2**63), 2**63)


def contact_id_text(value: object) -> str | None:
    """The ``customer_id`` text of a contact ``_id`` (rules above), or None when it has none."""
    if isinstance(value, ObjectId):
        return str(value)
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(int(value))
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Binary) and value.subtype == UUID_SUBTYPE and len(value) == 16:
        return str(value.as_uuid(UuidRepresentation.STANDARD))
    return None


def stored_contact_ids(text: str) -> list[object]:
    """Every ``_id`` whose ``contact_id_text`` is ``text``, for a ``find`` by ``customer_id``.

    The text itself, plus an ObjectId for 24 hex digits, an integer (int32/int64 compare equal in a
    query) for canonical decimal digits, and the UUID's subtype-4 binary for a canonical UUID text.
    """
    ids: list[object] = [text]
    if ObjectId.is_valid(text) and str(ObjectId(text)) == text:
        ids.append(ObjectId(text))
    try:
        number = int(text)
    except ValueError:
        number = None
    if number is not None and str(number) == text and number in _INT64:
        ids.append(Int64(number))
    try:
        as_uuid = uuid.UUID(text)
    except ValueError:
        as_uuid = None
    if as_uuid is not None and str(as_uuid) == text:
        ids.append(Binary.from_uuid(as_uuid, UuidRepresentation.STANDARD))
    return ids


_NUMBER: Final = 1
_STRING: Final = 2
_BINARY: Final = 5
_OBJECT_ID: Final = 7
"""BSON's sort ranks of the types an admitted ``_id`` has (numbers, strings, binary data, ObjectIds;
objects, arrays and the rest lie between and after them)."""


def contact_id_order(value: object) -> tuple[int, Any] | None:
    """Where MongoDB sorts this ``_id`` ascending (``sort=[("_id", 1)]``, no collation): by BSON's
    type order — numbers, then strings, then binary data, then ObjectIds — then within a type a
    number by its value, a string by its UTF-8 bytes (which order as Python's code points do), a
    binary by its length, subtype and bytes, an ObjectId by its 12 bytes. None for an ``_id`` that
    ``contact_id_text`` gives no text (no contact is found with it, so it never competes).

    The MongoDB directory keeps the first contact of a person in that order; a contacts file keeps
    the same one (``files.contact_index``).
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return (_NUMBER, int(value))
    if isinstance(value, str):
        return (_STRING, value)
    if isinstance(value, uuid.UUID):
        return (_BINARY, (16, UUID_SUBTYPE, value.bytes))
    if isinstance(value, Binary) and value.subtype == UUID_SUBTYPE and len(value) == 16:
        return (_BINARY, (16, UUID_SUBTYPE, bytes(value)))
    if isinstance(value, ObjectId):
        return (_OBJECT_ID, value.binary)
    return None
