"""The ``(company_sso_id, external_id)`` keys a sink has written, in a few bytes per key.

A migration's external ids are ``crm:{tenant}:audit:{id}``: per company and prefix only the audit id
varies, so it is kept as an int64 in a sorted ``array`` (8 bytes a key, where a set of key tuples
costs ~180). A run writes ids in ascending order, which appends; an id out of order waits in a small
set until the next merge. Any other external id (no decimal tail, or one outside int64) is kept as
it is.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Iterable
from typing import Final, TypeAlias

__all__ = ["WrittenKeys"]

_MAX_DIGITS: Final = 18  # any 18-digit decimal fits in int64
_MERGE_AT: Final = 4096


class _Ids:
    """A set of ints: a sorted array plus a small set of ids that came out of order."""

    __slots__ = ("_pending", "_sorted")

    def __init__(self) -> None:
        self._sorted = array("q")
        self._pending: set[int] = set()

    def __contains__(self, number: int) -> bool:
        if number in self._pending:
            return True
        ids = self._sorted
        if not ids or number > ids[-1]:  # a run's next id: past every id written, no search
            return False
        index = bisect_left(ids, number)
        return index < len(ids) and ids[index] == number

    def add(self, number: int) -> None:
        if not self._sorted or number > self._sorted[-1]:
            self._sorted.append(number)
        elif number not in self:
            self._pending.add(number)
            if len(self._pending) >= _MERGE_AT:
                self._merge()

    def remove_all(self, numbers: Iterable[int]) -> None:
        """Rare (a rollback): one filtered copy of the array."""
        self._merge()
        gone = set(numbers)
        self._sorted = array("q", (n for n in self._sorted if n not in gone))

    def _merge(self) -> None:
        # Splice the few pending ids into the sorted array: no set or list of every id, whose
        # ints would briefly cost ~60 bytes each.
        old, merged, start = self._sorted, array("q"), 0
        for number in sorted(self._pending):
            index = bisect_left(old, number, start)
            merged.extend(old[start:index])
            merged.append(number)
            start = index
        merged.extend(old[start:])
        self._sorted = merged
        self._pending = set()

    def __len__(self) -> int:
        return len(self._sorted) + len(self._pending)


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
        return ids is not None and rest in ids  # type: ignore[operator]

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
