"""How deep a value nests, counted as MongoDB counts it (its "Nested Depth for BSON Documents" limit).

One walk for every place that must refuse what MongoDB would: the Mongo adapter's documents
(``crm_audit_adapters.mongo.bson_values``) and the in-memory stores (``testing``), so a test that
passes on one does not fail on the other.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Mapping
from typing import Any, Final

__all__ = ["nests_past"]

# The value model's types that hold no other value: a walk for nesting never looks into them.
_FLAT: Final = frozenset({str, bool, int, float, type(None), decimal.Decimal, dt.datetime, dt.date, bytes})


def nests_past(value: object, levels: int) -> bool:
    """Whether ``value``'s non-empty lists and dicts nest more than ``levels`` deep (``levels`` ≥ 0).

    Counted as MongoDB counts (100 levels for a stored document): a non-empty list or dict is one
    level, an empty one none, a scalar none. Only lists and dicts are looked into, and the walk stops
    as soon as the answer is known, at most ``levels + 1`` calls deep, so it never meets the recursion limit.
    """
    kind = type(value)
    if kind is list:  # the common kinds by identity: isinstance on Mapping is an ABC check
        items: Any = value
    elif kind is dict or isinstance(value, Mapping):
        items = value.values()  # type: ignore[attr-defined]
    elif isinstance(value, list | tuple):
        items = value
    else:
        return False
    if not items:
        return False
    if levels <= 0:
        return True
    flat, inner = _FLAT, levels - 1
    for item in items:  # a loop, not any(): no generator per list, the common case is a short one  # noqa: SIM110
        if type(item) not in flat and nests_past(item, inner):
            return True
    return False
