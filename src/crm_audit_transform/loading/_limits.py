"""How much one ``audited_changes`` value may cost to load."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Final

from attrs import Attribute, field, frozen, validators

LOADER_MAXIMA: Final = {
    "max_bytes": 1 << 30,
    "max_nodes": 10_000_000,
    "max_depth": 1_000,
    "max_int_digits": 100_000,
}
"""The largest value each limit takes: 1 GiB of text (PostgreSQL's largest field value is 1 GB, so no
``audited_changes`` column holds more), a hundred times the default nodes, 1,000 levels (Python's
default recursion limit; MongoDB stores 100, docs/value-model.md), and 100,000 digits (converting one
integer of them already takes a noticeable time). A larger number is a typo, not a tuning."""


def _in_range(_: object, attribute: Attribute[int], value: int) -> None:
    maximum = LOADER_MAXIMA[attribute.name]
    if not 1 <= value <= maximum:
        raise ValueError(f"{attribute.name} must be in [1, {maximum}], got {value}")


_bounded = validators.and_(validators.instance_of(int), _in_range)


@frozen
class LoaderLimits:
    """Bounds that keep a hostile row from exhausting memory or time; every one raises ``LimitExceeded``.

    The defaults load realistic rows — a 16 MiB rich-text value (an inline ``data:`` image) on both
    sides of an update; the corpus peaks at 52 KB, 132 YAML events and 7 levels of nesting — and
    still bound one row's cost: its text is refused before parsing past ``max_bytes``, and what is
    built from it past ``max_nodes`` and ``max_depth``. Every limit is a runner setting
    (``CRM_AUDIT_LOADER_MAX_BYTES``, …), a dry-run option and an HTTP setting. Each is an int in
    ``[1, MAXIMA[name]]`` (``ValueError`` naming the field otherwise).
    """

    MAXIMA: ClassVar[Mapping[str, int]] = LOADER_MAXIMA
    """The largest value of each limit: ``max_bytes`` 1 GiB (PostgreSQL's largest field value),
    ``max_nodes`` 10,000,000, ``max_depth`` 1,000 (Python's default recursion limit), ``max_int_digits``
    100,000. A larger number is a typo, not a tuning."""

    max_bytes: int = field(default=32 << 20, validator=_bounded)
    """UTF-8 size of the YAML (or jsonb) text, checked before any parsing: 32 MiB."""
    max_nodes: int = field(default=100_000, validator=_bounded)
    """Scalars and collections built, counting every alias as the copy it expands to."""
    max_depth: int = field(default=100, validator=_bounded)
    """Collections nested inside one another (the top-level hash is depth 1)."""
    max_int_digits: int = field(default=4300, validator=_bounded)
    """Decimal digits of one integer: converting longer ones costs quadratic time."""
