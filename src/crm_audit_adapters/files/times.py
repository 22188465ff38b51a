"""Timestamps as the files write them: ISO-8601 or PostgreSQL's text form, and the times PostgreSQL
holds that ``datetime`` cannot (``infinity``, BC, past 9999), read as the end of the range they fall past."""

from __future__ import annotations

import datetime as dt
import re
from typing import Final

from crm_audit_transform.timestamps import as_utc


class TimeOutOfRange(ValueError):
    """A timestamp whose text reads, but whose instant is outside ``datetime``'s years 1-9999 in UTC."""


EARLIEST: Final = dt.datetime.min.replace(tzinfo=dt.UTC)
LATEST: Final = dt.datetime.max.replace(tzinfo=dt.UTC)
_LONG_YEAR: Final = re.compile(r"\+?[0-9]{5,}(?=-)")


def time_past_range(text: str) -> dt.datetime | None:
    """``EARLIEST`` or ``LATEST`` for a time PostgreSQL holds and ``datetime`` cannot, else None.

    Such a time is ``infinity`` or ``-infinity``, a year past 9999 (``10000-01-01``), a BC one
    (PostgreSQL's ``0044-03-15 00:00:00 BC``), or a text that reads but leaves years 1-9999 once in
    UTC (``0001-01-01T00:00+05:00``). Each comes back as the end of the range it falls past, which
    keeps its order against every time of that range (a sync watermark compares alike) and is set
    (a user's ``deleted_at``): what the PostgreSQL source reads for such a value. Anything else,
    including a text that is no time at all, is None.
    """
    word = text.strip().lower()
    if word in ("infinity", "+infinity"):
        return LATEST
    if word == "-infinity":
        return EARLIEST
    if word.endswith(" bc"):
        rest, end = text.strip()[:-3], EARLIEST
    elif (long_year := _LONG_YEAR.match(text)) is not None:
        rest, end = "9999" + text[long_year.end() :], LATEST
    else:
        try:
            parse_timestamp(text)
        except TimeOutOfRange:  # it reads, so fromisoformat gives its year: 1 or 9999
            return EARLIEST if dt.datetime.fromisoformat(text).year == 1 else LATEST
        except ValueError:
            return None
        return None
    try:
        dt.datetime.fromisoformat(rest)  # the rest must be a time, or the text is no time at all
    except ValueError:
        return None
    return end


def parse_timestamp(text: str) -> dt.datetime:
    """ISO-8601 or PostgreSQL's text form (``2019-01-04 05:44:28.125496``); no offset means UTC.

    ``ValueError`` when it is no timestamp; ``TimeOutOfRange`` (a ``ValueError``) when it is one but
    falls outside years 1-9999 once in UTC (``0001-01-01T00:00+05:00``), as PostgreSQL's
    ``infinity`` falls outside them for the PostgreSQL source.
    """
    value = dt.datetime.fromisoformat(text)
    try:
        return as_utc(value, naive="utc")
    except OverflowError:
        raise TimeOutOfRange(f"created_at {text!r} is not a time of the years 1-9999 (UTC)") from None
