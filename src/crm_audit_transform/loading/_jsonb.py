"""``audited_changes`` from a jsonb column: the already-decoded JSON, checked and copied.

Ruby reads such a column with ``ActiveSupport::JSON.decode`` and leaves strings alone, so times
stay ISO strings and decimals stay strings; what the driver decoded is already the value model.
The copy keeps the caller's object out of the result and applies the same depth and node limits
as YAML (and survives a cyclic object by failing at ``max_nodes``).
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import LimitExceeded, UnsupportedTag
from ._limits import LoaderLimits
from ._ruby_keys import name_keys

_SCALARS = (type(None), bool, int, float, str, decimal.Decimal, dt.date)


def from_json(value: Mapping[Any, Any], limits: LoaderLimits) -> dict[str, Any]:
    """A fresh ``dict[str, Value]`` of a decoded jsonb mapping."""
    max_nodes, max_depth = limits.max_nodes, limits.max_depth
    nodes = 1
    root: dict[str, Any] = {}
    todo: list[tuple[Any, Any, int]] = [(value, root, 1)]
    while todo:
        source, target, depth = todo.pop()
        if depth > max_depth:
            raise LimitExceeded("nesting depth", max_depth, depth)
        nodes += len(source)
        if nodes > max_nodes:
            raise LimitExceeded("nodes", max_nodes, nodes)
        children = source.items() if type(target) is dict else enumerate(source)
        pairs: list[tuple[Any, Any]] = []
        for key, child in children:
            if isinstance(child, Mapping):
                copied: Any = {}
                todo.append((child, copied, depth + 1))
            elif isinstance(child, Sequence) and not isinstance(child, str | bytes | bytearray):
                copied = []
                todo.append((child, copied, depth + 1))
            else:
                copied = _scalar(child)
            pairs.append((key, copied))
        if type(target) is list:
            target.extend(child for _, child in pairs)
        elif all(type(key) is str for key, _ in pairs):
            target.update(pairs)
        else:
            for key, _ in pairs:
                _scalar(key)
            target.update(name_keys(pairs))
    return root


def _scalar(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise UnsupportedTag("python:datetime without a time zone")
        return value.astimezone(dt.UTC)
    if isinstance(value, _SCALARS):
        return value
    raise UnsupportedTag(f"python:{type(value).__qualname__}")
