"""SyncWatermark: the contact's ``created_at`` is when the live feed took over its history.

An audit at or after it belongs to the live CRM → CDP feed, so migrating it would duplicate a
log; it is skipped as ``post_sync_live_feed``. The contact is the one already resolved, so this
costs no lookup.
"""

from __future__ import annotations

import datetime as dt

from .. import reasons
from ..domain import AuditRow, Contact, UnreadableTime
from .verdict import Rejection, shown_name


class SyncWatermark:
    __slots__ = ()

    def check(self, row: AuditRow, contact: Contact) -> Rejection | None:
        created_at = row.created_at
        if not isinstance(created_at, dt.datetime):  # no time, no side of the watermark: not placed
            return time_rejection(created_at)
        if created_at >= contact.created_at:
            return Rejection(
                reasons.POST_SYNC_LIVE_FEED,
                f"audit at {created_at.isoformat()} is not before the contact's sync at "
                f"{contact.created_at.isoformat()}",
            )
        return None


def time_rejection(created_at: UnreadableTime | None) -> Rejection:
    """Why a row without a usable ``created_at`` fails: NULL (``missing_created_at``), or a time a
    ``datetime`` cannot hold (``invalid_audit_row``, see ``UnreadableTime``)."""
    if created_at is None:
        return Rejection(reasons.MISSING_CREATED_AT, "created_at is NULL", skip=False)
    return Rejection(reasons.INVALID_AUDIT_ROW, unreadable_time(created_at), skip=False)


def unreadable_time(created_at: UnreadableTime) -> str:
    """The failure detail of a row whose ``created_at`` is an ``UnreadableTime``."""
    text = shown_name(created_at.text)
    return f"created_at {text} is not a time of the years 1-9999 (UTC) that a datetime can hold"
