"""MigrateBatch: write at most 20 activity logs idempotently and say what became of each.

Idempotency is the store's unique ``(company_sso_id, external_id)`` index, not a read before the
write: a record already there comes back ``skipped: duplicate_external_id``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from ..domain import ActivityLog, BatchResult
from ..errors import BatchTooLarge
from ..ports import ActivityLogStore

MAX_BATCH_SIZE: Final = 20
"""The CDP's bulk-create limit; larger batches are refused with ``BATCH_TOO_LARGE``."""


class MigrateBatch:
    """Write one batch through an ``ActivityLogStore``; ``StoreUnavailable`` propagates."""

    __slots__ = ("_max", "_store")

    def __init__(self, store: ActivityLogStore, max_size: int = MAX_BATCH_SIZE) -> None:
        self._store = store
        self._max = max_size

    @property
    def max_size(self) -> int:
        return self._max

    def __call__(self, logs: Sequence[ActivityLog]) -> BatchResult:
        if len(logs) > self._max:
            raise BatchTooLarge(len(logs), self._max)
        if not logs:
            return BatchResult(0, 0, 0, ())
        results = tuple(self._store.insert_batch(logs))
        counts = {"inserted": 0, "skipped": 0, "failed": 0}
        for result in results:
            counts[result.status] += 1
        return BatchResult(counts["inserted"], counts["skipped"], counts["failed"], results)
