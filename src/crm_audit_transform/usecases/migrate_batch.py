"""MigrateBatch: write at most 20 activity logs idempotently and say what became of each.

Idempotency is the store's unique ``(company_sso_id, external_id)`` index, not a read before the
write: a record already there comes back ``skipped: duplicate_external_id``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from ..domain import ActivityLog, BatchResult, EncodedLog
from ..errors import BatchTooLarge
from ..ports import ActivityLogWriter

MAX_BATCH_SIZE: Final = 20
"""The CDP's bulk-create limit; larger batches are refused with ``BATCH_TOO_LARGE``."""


def migrate_batch(
    logs: Sequence[ActivityLog | EncodedLog], writer: ActivityLogWriter, *, max_size: int = MAX_BATCH_SIZE
) -> BatchResult:
    """Write one batch through ``writer``: counts and one ``WriteResult`` per log, in order.

    An ``EncodedLog`` must be ``writer``'s own encoding (``ports.ActivityLogWriter``).

    ``BatchTooLarge`` above ``max_size`` (nothing written); ``StoreUnavailable`` propagates.
    """
    if len(logs) > max_size:
        raise BatchTooLarge(len(logs), max_size)
    if not logs:
        return BatchResult(0, 0, 0, ())
    results = tuple(writer.insert_batch(logs))
    counts = {"inserted": 0, "skipped": 0, "failed": 0}
    for result in results:
        counts[result.status] += 1
    return BatchResult(counts["inserted"], counts["skipped"], counts["failed"], results)
