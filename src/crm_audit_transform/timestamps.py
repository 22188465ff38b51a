"""The one conversion of datetimes to aware UTC, with the treatment of naive values said at the call.

The domain's timestamps are timezone-aware UTC, so the core refuses a naive datetime. Some sources
hold naive values that are UTC by contract — PostgreSQL ``timestamp without time zone`` as Rails
writes it, BSON dates as pymongo decodes them, ISO text without an offset in our files and CLI
options — and their adapters say so with ``naive="utc"``. Nothing here ever reads the local zone.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

__all__ = ["as_utc"]


def as_utc(value: dt.datetime, *, naive: Literal["refuse", "utc"] = "refuse") -> dt.datetime:
    """``value`` as an aware ``datetime`` in UTC (the same instant).

    A naive value (no ``tzinfo``, or one that gives no offset) raises ``ValueError`` with
    ``naive="refuse"`` (the default: the domain's rule) and is taken as UTC with ``naive="utc"``.
    ``OverflowError`` when the instant falls outside ``datetime``'s range once in UTC
    (``0001-01-01T00:00+14:00``). Anything but a ``datetime`` (ISO text, a ``date``, epoch seconds)
    is a ``TypeError``: it is never parsed or guessed.
    """
    if type(value) is dt.datetime and value.tzinfo is dt.UTC:  # the common case: nothing to build
        return value
    if not isinstance(value, dt.datetime):
        raise TypeError(f"expected a datetime, got {type(value).__name__}: every timestamp is a datetime")
    if value.utcoffset() is None:
        if naive == "utc":
            return value.replace(tzinfo=dt.UTC)
        raise ValueError("naive datetime: every timestamp in the domain is timezone-aware UTC")
    return value.astimezone(dt.UTC)
