"""The ``(company_sso_id, external_id)`` keys a sink has written, in a few bits per key.

A migration's external ids are ``crm:{tenant}:audit:{id}``: per company and prefix only the audit id
varies, so it is kept as a number in a set of ``_Ids``: blocks of 65,536 consecutive ids, each a
sorted ``array("H")`` of the ids' low 16 bits (2 bytes an id) while it holds at most 4,096 of them,
then a bitmap (8 KiB: a bit for each id of the block). Audit ids are a table's sequence, so a run's
ids are dense and take about a bit each: 1,000,000 audits' logs in about 125 KiB, where a sorted
``array("q")`` took 8 bytes a log (5.8 MB for 727,000 logs) and a set of key tuples ~180. Only ids
more than 65,536 apart cost more (about 100 bytes for each block they alone touch). Any other
external id (no decimal tail, or one of more than 18 digits) is kept as it is.
"""

from __future__ import annotations

import itertools
import operator
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from typing import Final, TypeAlias

from crm_audit_transform.packed import PackedOutcomes

__all__ = ["WrittenKeys", "new_packed_ids"]

_MAX_DIGITS: Final = 18  # any 18-digit decimal fits in int64
_BLOCK_BITS: Final = 16
_LOW_MASK: Final = (1 << _BLOCK_BITS) - 1
_ARRAY_MAX: Final = 4096
"""A block of more ids than this is a bitmap: 8 KiB, which 4,096 ids take as an array of 2 bytes."""
_BITMAP_BYTES: Final = 1 << (_BLOCK_BITS - 3)
_CANONICAL_LIMIT: Final = 10**18
"""Audit ids below this are split off their external ids by ``WrittenKeys`` (18 digits at most)."""

_Block: TypeAlias = "array[int] | bytearray"


class _Ids:
    """A set of non-negative ints, by blocks of 65,536: a sorted array of the low 16 bits, or a bitmap.

    The block size and masks are written out in the methods below (``_BLOCK_BITS``, ``_LOW_MASK``):
    a log asks and adds once each, and a global's load there was a measurable share.
    """

    __slots__ = ("_blocks",)

    def __init__(self) -> None:
        self._blocks: dict[int, _Block] = {}

    def has(self, number: int) -> bool:
        block = self._blocks.get(number >> 16)
        if block is None:
            return False
        low = number & 0xFFFF
        if type(block) is bytearray:
            return block[low >> 3] >> (low & 7) & 1 == 1
        if not block or low > block[-1]:  # a run's next id: past every id written, no search
            return False
        index = bisect_left(block, low)
        return index < len(block) and block[index] == low

    __contains__ = has

    def add(self, number: int) -> None:
        block = self._blocks.get(number >> 16)
        low = number & 0xFFFF
        if type(block) is bytearray:
            block[low >> 3] |= 1 << (low & 7)
            return
        if block is None:
            self._blocks[number >> 16] = array("H", (low,))
            return
        if not block or low > block[-1]:  # ascending ids (a run's): an append
            block.append(low)
        else:
            index = bisect_left(block, low)
            if index < len(block) and block[index] == low:
                return
            block.insert(index, low)  # at most 8 KiB moved
        if len(block) > _ARRAY_MAX:
            self._blocks[number >> 16] = _bitmap(block)

    def none_of(self, numbers: Sequence[int]) -> bool:
        """Whether no number of ``numbers`` (ascending) is here; in one comparison a block when each
        is past the block's highest, as a run's next ids are."""
        blocks = self._blocks
        index, count = 0, len(numbers)
        while index < count:
            high = numbers[index] >> 16
            end = bisect_left(numbers, (high + 1) << 16, index)
            block = blocks.get(high)
            first, last = numbers[index] & 0xFFFF, numbers[end - 1] & 0xFFFF
            if type(block) is bytearray:
                # No bit set from the first number's on, through the last one's byte: none is here.
                a, b = first >> 3, last >> 3
                overlaps = block[a] >> (first & 7) != 0 or block[a + 1 : b + 1].count(0) != b - a
            else:
                overlaps = block is not None and len(block) > 0 and first <= block[-1]
            if overlaps and any(self.has(number) for number in numbers[index:end]):
                return False
            index = end
        return True

    def add_ascending(self, numbers: Sequence[int]) -> None:
        """``add`` each of ``numbers`` (ascending, distinct); a block's run past its highest id is
        appended in one call."""
        blocks = self._blocks
        index, count = 0, len(numbers)
        while index < count:
            high = numbers[index] >> 16
            end = bisect_left(numbers, (high + 1) << 16, index)
            block = blocks.get(high)
            base = high << 16
            if block is None:
                block = blocks[high] = array("H")
            if type(block) is bytearray:
                for number in numbers[index:end]:
                    low = number - base
                    block[low >> 3] |= 1 << (low & 7)
            elif block and numbers[index] - base <= block[-1]:
                for number in numbers[index:end]:
                    self.add(number)
            else:
                block.extend(number - base for number in numbers[index:end])
                if len(block) > _ARRAY_MAX:
                    blocks[high] = _bitmap(block)
            index = end

    def remove_all(self, numbers: Iterable[int]) -> None:
        """Rare (a rollback): each block touched is filtered once."""
        gone: dict[int, set[int]] = {}
        for number in numbers:
            gone.setdefault(number >> _BLOCK_BITS, set()).add(number & _LOW_MASK)
        for high, lows in gone.items():
            block = self._blocks.get(high)
            if isinstance(block, bytearray):
                for low in lows:
                    block[low >> 3] &= ~(1 << (low & 7)) & 0xFF
            elif block is not None:
                self._blocks[high] = array("H", (low for low in block if low not in lows))

    def __len__(self) -> int:
        return sum(
            int.from_bytes(block, "little").bit_count() if isinstance(block, bytearray) else len(block)
            for block in self._blocks.values()
        )


def _bitmap(block: Iterable[int]) -> bytearray:
    bits = bytearray(_BITMAP_BYTES)
    for low in block:
        bits[low >> 3] |= 1 << (low & 7)
    return bits


Token: TypeAlias = tuple[tuple[str, str], int] | tuple[None, tuple[str, str]]
"""A key as ``WrittenKeys`` keeps it (``token``): ``((company, head), id)``, or ``(None, key)``."""


class WrittenKeys:
    """Membership of ``(company_sso_id, external_id)`` keys; behaves like a set of those tuples.

    A writer that asks about a key and then adds it reads the key once: ``token`` gives its
    kept form, which ``has`` and ``add_token`` take (equal keys, equal tokens).
    """

    __slots__ = ("_ids", "_other")

    def __init__(self) -> None:
        self._ids: dict[tuple[str, str], _Ids] = {}
        self._other: set[tuple[str, str]] = set()

    def __contains__(self, key: tuple[str, str]) -> bool:
        return self.has(self.token(key[0], key[1]))

    def __len__(self) -> int:
        return len(self._other) + sum(len(ids) for ids in self._ids.values())

    @staticmethod
    def token(company_sso_id: str, external_id: str) -> Token:
        """The key's kept form: hashable, and equal for equal keys."""
        split = _split(external_id)
        if split is None:
            return None, (company_sso_id, external_id)
        return (company_sso_id, split[0]), split[1]

    def has(self, token: Token) -> bool:
        group, rest = token
        if group is None:
            return rest in self._other
        ids = self._ids.get(group)
        return ids is not None and ids.has(rest)  # type: ignore[arg-type]

    def add(self, key: tuple[str, str]) -> None:
        self.add_token(self.token(key[0], key[1]))

    def add_token(self, token: Token) -> None:
        group, rest = token
        if group is None:
            self._other.add(rest)  # type: ignore[arg-type]
            return
        ids = self._ids.get(group)
        if ids is None:  # not setdefault: that would build an _Ids for every key
            ids = self._ids[group] = _Ids()
        ids.add(rest)  # type: ignore[arg-type]

    def none_of(self, group: tuple[str, str], numbers: Sequence[int]) -> bool:
        """Whether none of the keys ``(group[0], f"{group[1]}:{n}")`` is here, for ``numbers``
        ascending, distinct and canonical (``0 <= n < 10**18``: what ``token`` splits off)."""
        ids = self._ids.get(group)
        return ids is None or ids.none_of(numbers)

    def add_ascending(self, group: tuple[str, str], numbers: Sequence[int]) -> None:
        """``add`` those keys (``none_of``'s), in a few calls a block."""
        ids = self._ids.get(group)
        if ids is None:
            ids = self._ids[group] = _Ids()
        ids.add_ascending(numbers)

    def discard_all(self, keys: Iterable[tuple[str, str]]) -> None:
        """Forget these keys (absent ones are ignored); one rebuild per prefix touched."""
        removed: dict[tuple[str, str], list[int]] = {}
        for key in keys:
            split = _split(key[1])
            if split is None:
                self._other.discard(key)
            else:
                removed.setdefault((key[0], split[0]), []).append(split[1])
        for group, numbers in removed.items():
            ids = self._ids.get(group)
            if ids is not None:
                ids.remove_all(numbers)


def _split(external_id: str) -> tuple[str, int] | None:
    """``("crm:acme:audit", 42)`` for ``crm:acme:audit:42``; None unless the tail is a canonical
    decimal (no sign, no leading zero) that fits in int64, so ``f"{head}:{id}"`` gives it back."""
    head, colon, tail = external_id.rpartition(":")
    if (
        not colon
        or not tail
        or len(tail) > _MAX_DIGITS
        or not (tail.isascii() and tail.isdigit())
        or (tail[0] == "0" and tail != "0")
    ):
        return None
    return head, int(tail)


def new_packed_ids(keys: WrittenKeys, outcomes: PackedOutcomes) -> tuple[tuple[str, str], array[int]] | None:
    """``(group, ids)`` of a plain packed step's logs, as ``WrittenKeys.add_ascending`` takes them
    (their company and external id prefix without its last ``:``; their audit ids), when ``keys``
    holds none of them and each key splits as ``WrittenKeys`` splits it (the prefix ends in ``:``,
    the ids ascend within ``0 .. 10**18 - 1``); else None: the step is written row by row
    (``JsonlActivityLogSink.insert_packed``)."""
    rows = outcomes.rows
    numbers = outcomes.packed_ids()
    head, colon, tail = rows.prefix.rpartition(":")
    if (
        not outcomes.plain
        or not colon
        or tail  # the prefix's last ":" must be the one before the id, as WrittenKeys splits it
        or not numbers
        or numbers[0] < 0
        or numbers[-1] >= _CANONICAL_LIMIT
        or not _ascending(numbers)
        or not keys.none_of((rows.company, head), numbers)
    ):
        return None
    return (rows.company, head), numbers


def _ascending(numbers: array[int]) -> bool:
    """Whether ``numbers`` are strictly ascending (a page's ids are)."""
    return all(map(operator.lt, numbers, itertools.islice(numbers, 1, None)))
