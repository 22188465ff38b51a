"""CRM timestamps are ``timestamp without time zone`` holding UTC (Rails' default): convert at the edge."""

from __future__ import annotations

import datetime as dt


def naive_utc(value: dt.datetime) -> dt.datetime:
    """An aware datetime as the naive UTC value the CRM's columns hold."""
    if value.tzinfo is None:
        raise ValueError("timestamps sent to the CRM must be timezone-aware")
    return value.astimezone(dt.UTC).replace(tzinfo=None)


def aware_utc(value: dt.datetime) -> dt.datetime:
    """A column value as an aware UTC datetime (naive means UTC; ``timestamptz`` is converted)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)
