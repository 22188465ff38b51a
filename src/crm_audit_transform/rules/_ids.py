"""Reading ids out of loaded values, shared by the rules (``as_id`` is ``numerals.as_id``)."""

from __future__ import annotations

from ..numerals import as_id
from ..values import Value

__all__ = ["as_id", "new_value"]


def new_value(value: Value) -> Value:
    """The new side of an update's ``[old, new]``; the value itself for anything else."""
    if isinstance(value, list) and len(value) == 2:
        return value[1]
    return value
