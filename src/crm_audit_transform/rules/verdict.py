"""What a rule returns when a row must not become a log: the reason and a detail for people."""

from __future__ import annotations

import datetime as dt
import decimal
import itertools
import uuid
from typing import Any

from attrs import frozen

from .._fast_init import fast_init

__all__ = ["NAME_SHOWN", "Rejection", "shown_name", "shown_value"]

NAME_SHOWN = 120  # characters of a row's name (a column, a type, an action) that a detail shows
_ITEMS_SHOWN = 6  # items of a container shown_value shows (reprlib's maxlist)
_LEVELS_SHOWN = 3  # levels of nested containers shown_value enters
_INT_BITS_SHOWN = 256  # an int past these bits is shown by its size (77 digits): str() of one is quadratic
_SHORT_REPRS = frozenset(
    {type(None), bool, float, complex, dt.date, dt.datetime, dt.time, dt.timedelta, uuid.UUID}
)
"""Types whose ``repr`` is short whatever the value: shown as it is."""
_BRACKETS: dict[type, tuple[str, str]] = {
    list: ("[", "]"),
    tuple: ("(", ")"),
    set: ("{", "}"),
    frozenset: ("frozenset({", "})"),
    dict: ("{", "}"),
}


@fast_init  # built for every row: see _fast_init
@frozen
class Rejection:
    """A rule's verdict against a row; ``skip`` decides ``Skipped`` versus ``Failed``."""

    reason: str
    detail: str = ""
    skip: bool = True


def shown_name(name: str) -> str:
    """A name a row wrote (an ``audited_changes`` key, ``auditable_type``, ``action``, a
    ``created_at`` text) as a rejection's detail shows it: its first ``NAME_SHOWN`` characters,
    escaped by ``repr`` (control and non-printable characters as ``\\x..`` escapes), and its length
    when cut. audited stores these in unbounded varchar/text columns (and a file holds any string),
    so a row may carry any size and any character; the detail goes to logs, status and outcomes."""
    if len(name) <= NAME_SHOWN:
        return repr(name)
    return f"{name[:NAME_SHOWN]!r}… ({len(name)} characters)"


def shown_value(value: object) -> str:
    """A value of any type as a detail shows it: its ``repr`` when that is at most ``NAME_SHOWN``
    characters, else its first ``NAME_SHOWN`` characters and its size (``… (5000000 bytes)``,
    ``… (8388608 items)``).

    The work is bounded by what is shown, not by the value: a container shows its first 6 items
    and 3 levels (as ``reprlib`` does, unsorted), an int past 256 bits, a ``Decimal`` past 77 digits
    and a value of any other type show their type and size only (their ``repr`` is the type's own
    code). A wrong-typed column of a row may be a 64 MiB list or an int of millions of digits
    (a file's JSON, a jsonb column); its whole ``repr`` was built before it was cut."""
    if isinstance(value, (str, bytes, bytearray)) and len(value) > NAME_SHOWN:
        unit = "characters" if isinstance(value, str) else "bytes"
        return f"{value[:NAME_SHOWN]!r}… ({len(value)} {unit})"
    shown, cut = _bounded_repr(value, _LEVELS_SHOWN)
    if not cut and len(shown) <= NAME_SHOWN:
        return shown
    size = _size(value)
    return f"{shown[:NAME_SHOWN]}… ({size})" if size else f"{shown[:NAME_SHOWN]}…"


def _bounded_repr(value: Any, levels: int) -> tuple[str, bool]:
    """``repr(value)`` built from at most ``_ITEMS_SHOWN`` items a level, and whether any was left out."""
    kind = type(value)
    if kind is str or kind is bytes or kind is bytearray:
        return repr(value[:NAME_SHOWN]), len(value) > NAME_SHOWN
    if kind is int:
        if value.bit_length() <= _INT_BITS_SHOWN:
            return repr(value), False
        return f"<int of {value.bit_length()} bits>", True
    if kind in _SHORT_REPRS:
        return repr(value), False
    if kind is decimal.Decimal:
        digits = len(value.as_tuple().digits)
        return (repr(value), False) if digits <= 77 else (f"<Decimal of {digits} digits>", True)
    brackets = _BRACKETS.get(kind)
    if brackets is None:
        size = _size(value)
        return (f"<{kind.__qualname__} of {size}>" if size else f"<{kind.__qualname__}>"), True
    if not value:
        return repr(value), False
    opening, closing = brackets
    if levels == 0:
        return f"{opening}...{closing}", True
    more = len(value) > _ITEMS_SHOWN
    cut = more
    parts = []
    if kind is dict:
        for key, item in itertools.islice(value.items(), _ITEMS_SHOWN):
            key_shown, key_cut = _bounded_repr(key, levels - 1)
            item_shown, item_cut = _bounded_repr(item, levels - 1)
            parts.append(f"{key_shown}: {item_shown}")
            cut = cut or key_cut or item_cut
    else:
        for item in itertools.islice(value, _ITEMS_SHOWN):
            item_shown, item_cut = _bounded_repr(item, levels - 1)
            parts.append(item_shown)
            cut = cut or item_cut
    if more:
        parts.append("...")
    elif kind is tuple and len(value) == 1:
        parts[0] += ","
    return f"{opening}{', '.join(parts)}{closing}", cut


def _size(value: object) -> str:
    """``N items`` (``N bytes`` of bytes) of a value that has a length, else ``""``."""
    try:
        length = len(value)  # type: ignore[arg-type]
    except Exception:  # no length, or a __len__ of a type's own that fails: shown by its type alone
        return ""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"{length} bytes"
    return f"{length} characters" if isinstance(value, str) else f"{length} items"
