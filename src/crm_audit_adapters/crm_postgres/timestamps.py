"""CRM timestamps are ``timestamp without time zone`` holding UTC (Rails' default): convert at the edge."""

from __future__ import annotations

import datetime as dt

from crm_audit_transform.timestamps import as_utc


def naive_utc(value: dt.datetime) -> dt.datetime:
    """An aware datetime as the naive UTC value the CRM's columns hold."""
    return as_utc(value).replace(tzinfo=None)


def aware_utc(value: dt.datetime) -> dt.datetime:
    """A column value as an aware UTC datetime (naive means UTC; ``timestamptz`` is converted)."""
    return as_utc(value, naive="utc")
