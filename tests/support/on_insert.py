"""A store wrapper that runs an action right after a chosen insert batch (to disturb a run mid-way)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from crm_audit_transform.domain import ActivityLog, WriteResult


class OnInsert:
    """Runs ``action`` right after the ``on_call``-th insert batch."""

    def __init__(self, store: Any, on_call: int, action: Callable[[], object]) -> None:
        self._store = store
        self._on_call = on_call
        self._action = action
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def insert_batch(self, logs: Sequence[ActivityLog]) -> Sequence[WriteResult]:
        result = self._store.insert_batch(logs)
        self.calls += 1
        if self.calls == self._on_call:
            self._action()
        return result
