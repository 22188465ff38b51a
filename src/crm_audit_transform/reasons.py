"""Named reasons for every skipped or failed record, shared by the whole project.

A record's fate is always a value (``Migrated`` / ``Skipped`` / ``Failed``) carrying one of these;
counters, job documents, reports and the HTTP surface all speak these strings.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "CONTACT_NOT_FOUND",
    "DUPLICATE_AUDIT_ID",
    "DUPLICATE_EXTERNAL_ID",
    "ENRICH_AMBIGUOUS",
    "ENRICH_CONFLICT",
    "ENRICH_NO_CANDIDATE",
    "FAILURE_REASONS",
    "INVALID_AUDIT_ROW",
    "MALFORMED_AUDITED_CHANGES",
    "MISSING_CREATED_AT",
    "POST_SYNC_LIVE_FEED",
    "SKIP_REASONS",
    "STATUS_FALLTHROUGH",
    "UNMAPPED_ACTION_TYPE",
    "WRITE_ERROR",
]

# Skips: the row is understood and deliberately not written.
UNMAPPED_ACTION_TYPE: Final = "unmapped_action_type"
CONTACT_NOT_FOUND: Final = "contact_not_found"
POST_SYNC_LIVE_FEED: Final = "post_sync_live_feed"
DUPLICATE_EXTERNAL_ID: Final = "duplicate_external_id"
ENRICH_AMBIGUOUS: Final = "enrich_ambiguous"
ENRICH_NO_CANDIDATE: Final = "enrich_no_candidate"
ENRICH_CONFLICT: Final = "enrich_conflict"
"""A log and its target name different referent ids: enrichment leaves both alone."""

# Failures: the row could not be processed; it counts against the job's failure rate.
MALFORMED_AUDITED_CHANGES: Final = "malformed_audited_changes"
INVALID_AUDIT_ROW: Final = "invalid_audit_row"
WRITE_ERROR: Final = "write_error"
MISSING_CREATED_AT: Final = "missing_created_at"
"""The row's ``created_at`` is NULL: it has no place on a timeline and no watermark to pass."""
DUPLICATE_AUDIT_ID: Final = "duplicate_audit_id"
"""An input file repeats an audit id: the first row is processed, every repeat fails with this."""

# Not an outcome: counts update rows whose status change fell through to a generic update
# because no won/resolved/done id-set is configured for the tenant (OQ-12).
STATUS_FALLTHROUGH: Final = "status_fallthrough"

SKIP_REASONS: Final = frozenset(
    {
        UNMAPPED_ACTION_TYPE,
        CONTACT_NOT_FOUND,
        POST_SYNC_LIVE_FEED,
        DUPLICATE_EXTERNAL_ID,
        ENRICH_AMBIGUOUS,
        ENRICH_NO_CANDIDATE,
        ENRICH_CONFLICT,
    }
)
FAILURE_REASONS: Final = frozenset(
    {MALFORMED_AUDITED_CHANGES, INVALID_AUDIT_ROW, WRITE_ERROR, MISSING_CREATED_AT, DUPLICATE_AUDIT_ID}
)
