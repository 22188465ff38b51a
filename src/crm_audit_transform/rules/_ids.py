"""Reading ids out of loaded values, shared by the rules."""

from __future__ import annotations

from ..numerals import is_int_text
from ..values import Value


def as_id(value: Value) -> int | None:
    """An id from a loaded value: an int (not a bool) or a string of digits, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        digits = value.strip()
        # The strict rule of numerals (ASCII, bounded); a negative id names no person.
        if is_int_text(digits) and not digits.startswith("-"):
            return int(digits)
    return None


def new_value(value: Value) -> Value:
    """The new side of an update's ``[old, new]``; the value itself for anything else."""
    if isinstance(value, list) and len(value) == 2:
        return value[1]
    return value
