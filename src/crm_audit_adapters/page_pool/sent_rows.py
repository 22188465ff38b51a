"""A page's rows as sent to a worker: pickled as usual, or flat when pickle would recurse too deep.

pickle recurses once or twice per nesting level, so a jsonb ``audited_changes`` nested a few hundred
levels deep (which ``json`` and orjson still decode, and which the loader fails by its
``max_depth``) cannot be pickled: the page, and with it the run, would fail. ``SentRows`` pickles
its rows itself; when that raises ``RecursionError`` the rows' dicts, lists and tuples are sent as
a flat table instead and rebuilt without recursion in the worker, so the worker loads exactly the
values one process loads and the row fails alone, by the same limit, with the same reason.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

_CONTAINERS: dict[type, str] = {dict: "d", list: "l", tuple: "t"}

Node: TypeAlias = tuple[str, list[tuple[Any, Any]]]
"""A container: its kind (``d``, ``l``, ``t``) and its ``(key, item)`` pairs (keys only for a dict)."""


class Ref(int):
    """An item that is the container at this index of the table, not a number."""

    __slots__ = ()


class SentRows:
    """``rows`` for a worker; unpickled there as the plain list."""

    __slots__ = ("rows",)

    def __init__(self, rows: list[Any]) -> None:
        self.rows = rows

    def __reduce__(self) -> tuple[Callable[..., list[Any]], tuple[Any]]:
        try:
            return pickle.loads, (pickle.dumps(self.rows, pickle.HIGHEST_PROTOCOL),)
        except RecursionError:
            return rebuilt, (flat_table(self.rows),)


def flat_table(value: Any) -> list[Node]:
    """``value`` (a container) as a table of containers whose items name each other by ``Ref``.

    Without recursion; a container met twice is one entry, so shared and cyclic values stay so.
    """
    table: list[Node] = []
    index: dict[int, int] = {}
    todo: list[Any] = []

    def ref(container: Any) -> Ref:
        found = index.get(id(container))
        if found is None:
            found = index[id(container)] = len(table)
            table.append((_CONTAINERS[type(container)], []))
            todo.append(container)
        return Ref(found)

    ref(value)
    while todo:
        container = todo.pop()
        pairs = table[index[id(container)]][1]
        items = container.items() if type(container) is dict else enumerate(container)
        for key, item in items:
            pairs.append((key, ref(item) if type(item) in _CONTAINERS else item))
    return table


def rebuilt(table: Sequence[Node]) -> Any:
    """The value ``flat_table`` made ``table`` of, without recursion."""
    made: list[Any] = [{} if kind == "d" else [] if kind == "l" else None for kind, _ in table]

    def item_of(item: Any) -> Any:
        return made[item] if type(item) is Ref else item

    for start, (kind, _) in enumerate(table):
        stack = [start] if kind == "t" else []
        while stack:  # a tuple is made once the tuples in it are
            position = stack[-1]
            pairs = table[position][1]
            waiting = [i for _, i in pairs if type(i) is Ref and table[i][0] == "t" and made[i] is None]
            if waiting:
                stack.extend(waiting)
                continue
            made[position] = tuple(item_of(item) for _, item in pairs)
            stack.pop()
    for (kind, pairs), target in zip(table, made, strict=True):
        if kind == "d":
            target.update((key, item_of(item)) for key, item in pairs)
        elif kind == "l":
            target.extend(item_of(item) for _, item in pairs)
    return made[0]
