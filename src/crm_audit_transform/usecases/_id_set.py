"""A set of audit ids in one bit each: what verify walked, for the stray pass, in flat memory."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

_CHUNK_BITS: Final = 1 << 16
"""Ids per chunk: a chunk costs 8 KiB once any id in its range is added (sparse ids stay cheap)."""


class AuditIdSet:
    """Integers (negative ones too) in 8 KiB bitmaps per 65,536 consecutive ids."""

    __slots__ = ("_chunks", "_count")

    def __init__(self) -> None:
        self._chunks: dict[int, bytearray] = {}
        self._count = 0

    def add(self, audit_id: int) -> None:
        self.update((audit_id,))

    def update(self, audit_ids: Iterable[int]) -> None:
        """``add`` each id (a page's ids mostly share one chunk)."""
        chunks = self._chunks
        index, bits = None, bytearray()
        added = 0
        for audit_id in audit_ids:
            chunk, bit = divmod(audit_id, _CHUNK_BITS)
            if chunk != index:
                index, found = chunk, chunks.get(chunk)
                bits = chunks[chunk] = bytearray(_CHUNK_BITS // 8) if found is None else found
            byte, mask = bit >> 3, 1 << (bit & 7)
            if not bits[byte] & mask:
                bits[byte] |= mask
                added += 1
        self._count += added

    def __contains__(self, audit_id: object) -> bool:
        if type(audit_id) is not int:
            return False
        chunk, bit = divmod(audit_id, _CHUNK_BITS)
        bits = self._chunks.get(chunk)
        return bits is not None and bool(bits[bit >> 3] & (1 << (bit & 7)))

    def __len__(self) -> int:
        return self._count
