"""Logs encoded ahead by the workers, handed to the writer that would otherwise encode them.

A worker that transforms a page can also encode its logs in the writer's own format (a JSONL
line, say), so that the run loop's process — the one writer — only writes them. The pool puts
each log it receives with its encoding here; the writer asks for a log's encoding when it writes
it. An encoding is given only for the very object it was made for (``is``, not ``==``): a log the
loop replaced before writing it (one given its ``linked_entity_name``, say) is encoded again by
the writer, so what is written is always the log as written.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, TypeVar

from crm_audit_transform.domain import ActivityLog

__all__ = ["EncodedLogs"]

T = TypeVar("T")


class EncodedLogs(Generic[T]):
    """Encodings by log object, each taken once; ``clear`` drops what was never written."""

    __slots__ = ("_by_id",)

    def __init__(self) -> None:
        # Keyed by id(log), holding the log too: the id stays its own while the entry lives.
        self._by_id: dict[int, tuple[ActivityLog, T]] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def add(self, logs: Sequence[ActivityLog], encodings: Sequence[T]) -> None:
        """Remember ``encodings[i]`` as the encoding of ``logs[i]``."""
        for log, encoding in zip(logs, encodings, strict=True):
            self._by_id[id(log)] = (log, encoding)

    def take(self, log: ActivityLog) -> T | None:
        """The encoding made for this very ``log`` (then forgotten), else None."""
        # An entry holds its log alive, so an entry under id(log) is this very log's.
        entry = self._by_id.pop(id(log), None)
        return None if entry is None else entry[1]

    def clear(self) -> None:
        self._by_id.clear()
