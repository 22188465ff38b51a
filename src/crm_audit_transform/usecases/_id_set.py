"""A set of audit ids: what verify walked, for the stray pass, in at most 8 bytes an id.

Ids are kept by blocks of 65,536 consecutive ids. A block holding at least 1,024 ids is a bitmap
(8 KiB: a bit for each id of the block), so a table's dense ids cost about a bit each. The ids of
the other blocks are kept in one sorted ``array("q")``, 8 bytes each, so sparse ids (ids 65,536 or
more apart: time-based 64-bit ids, a sequence shared by many tenants) cost 8 bytes each, not a
block's 8 KiB. New ids are gathered unsorted and sorted in at 16,384 (a walk's ids ascend: then
they are appended), and a block of the sorted ids that reaches 1,024 becomes its bitmap. Ids
outside int64, which no ``audits.id`` is, are kept in a plain set.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Iterable
from typing import Final

_BLOCK_BITS: Final = 16
_BITMAP_BYTES: Final = 1 << (_BLOCK_BITS - 3)
_DENSE: Final = _BITMAP_BYTES // 8
"""Sorted ids of one block that take as much room (8 bytes each) as its bitmap: it becomes one."""
_MERGE: Final = 1 << 14
"""Unsorted new ids sorted in at this many (the sort's transient objects stay around 1 MiB)."""
_Q_MIN, _Q_MAX = -(2**63), 2**63 - 1


class AuditIdSet:
    """Integers (negative ones too): bitmaps for dense blocks of 65,536 ids, 8 bytes for the others."""

    __slots__ = ("_bitmaps", "_loose", "_pending", "_wide")

    def __init__(self) -> None:
        self._bitmaps: dict[int, bytearray] = {}
        self._loose = array("q")  # sorted, unique, none in a block with a bitmap
        self._pending = array("q")  # added since the last merge, in any order, maybe repeated
        self._wide: set[int] = set()

    def add(self, audit_id: int) -> None:
        self.update((audit_id,))

    def update(self, audit_ids: Iterable[int]) -> None:
        """``add`` each id (a page's ids mostly share one block)."""
        bitmaps, pending = self._bitmaps, self._pending
        index: int | None = None
        bits: bytearray | None = None
        for audit_id in audit_ids:
            if not _Q_MIN <= audit_id <= _Q_MAX:
                self._wide.add(audit_id)
                continue
            block = audit_id >> _BLOCK_BITS
            if block != index:
                index, bits = block, bitmaps.get(block)
            if bits is None:
                pending.append(audit_id)
            else:
                low = audit_id & 0xFFFF
                bits[low >> 3] |= 1 << (low & 7)
        if len(pending) >= _MERGE:
            self._merge()

    def __contains__(self, audit_id: object) -> bool:
        if type(audit_id) is not int:
            return False
        if not _Q_MIN <= audit_id <= _Q_MAX:
            return audit_id in self._wide
        if self._pending:
            self._merge()
        bits = self._bitmaps.get(audit_id >> _BLOCK_BITS)
        if bits is not None:
            low = audit_id & 0xFFFF
            return bool(bits[low >> 3] & (1 << (low & 7)))
        loose = self._loose
        at = bisect_left(loose, audit_id)
        return at < len(loose) and loose[at] == audit_id

    def __len__(self) -> int:
        if self._pending:
            self._merge()
        dense = sum(int.from_bytes(bits, "little").bit_count() for bits in self._bitmaps.values())
        return len(self._loose) + dense + len(self._wide)

    def _merge(self) -> None:
        """Sort the pending ids into the loose ones; a block of them grown dense becomes its bitmap."""
        new = sorted(set(self._pending))
        self._pending = array("q")
        loose, bitmaps = self._loose, self._bitmaps
        if not new:  # pending ids are of blocks without a bitmap: ``update`` sets a bitmap's bits
            return
        if not loose or new[0] > loose[-1]:
            loose.extend(new)  # a walk's ids ascend: an append
        else:
            loose = self._loose = _merged(loose, new)
        for block in sorted({audit_id >> _BLOCK_BITS for audit_id in new}):
            start = bisect_left(loose, block << _BLOCK_BITS)
            end = bisect_left(loose, (block + 1) << _BLOCK_BITS, start)
            if end - start < _DENSE:
                continue
            bits = bytearray(_BITMAP_BYTES)
            for audit_id in loose[start:end]:
                low = audit_id & 0xFFFF
                bits[low >> 3] |= 1 << (low & 7)
            bitmaps[block] = bits
            del loose[start:end]


def _merged(loose: array[int], new: list[int]) -> array[int]:
    """``loose`` (sorted, unique) with ``new`` (sorted, unique) sorted in, none twice: a bisect for
    each new id, and the held ids between two new ones copied as one slice. The stray pass sorts in
    the tenant's ids it meets in the stream's text order, spread over all it holds, so a merge that
    stepped through every held id in Python would cost the square of their number
    (benchmarks/stray_memory.py)."""
    out = array("q")
    start, size = 0, len(loose)
    for audit_id in new:
        at = bisect_left(loose, audit_id, start)
        if at < size and loose[at] == audit_id:
            continue  # held already: copied with the run it is in
        out += loose[start:at]
        out.append(audit_id)
        start = at
    out += loose[start:]
    return out
