"""SyncWatermark: the contact's ``created_at`` is when the live feed took over its history.

An audit at or after it belongs to the live CRM → CDP feed, so migrating it would duplicate a
log; it is skipped as ``post_sync_live_feed``. The contact is the one already resolved, so this
costs no lookup.
"""

from __future__ import annotations

from .. import reasons
from ..domain import AuditRow, Contact
from .verdict import Rejection


class SyncWatermark:
    __slots__ = ()

    def check(self, row: AuditRow, contact: Contact) -> Rejection | None:
        created_at = row.created_at
        if created_at is None:  # no time, so no side of the watermark: the row cannot be placed
            return Rejection(reasons.MISSING_CREATED_AT, "created_at is NULL", skip=False)
        if created_at >= contact.created_at:
            return Rejection(
                reasons.POST_SYNC_LIVE_FEED,
                f"audit at {created_at.isoformat()} is not before the contact's sync at "
                f"{contact.created_at.isoformat()}",
            )
        return None
