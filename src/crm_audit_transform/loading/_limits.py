"""How much one ``audited_changes`` value may cost to load."""

from __future__ import annotations

from attrs import field, frozen, validators

_positive = validators.and_(validators.instance_of(int), validators.ge(1))


@frozen
class LoaderLimits:
    """Bounds that keep a hostile row from exhausting memory or time; every one raises ``LimitExceeded``.

    The defaults sit far above anything audited writes (the corpus peaks at 52 KB, 132 YAML events
    and 7 levels of nesting) and far below what would hurt a worker.
    """

    max_bytes: int = field(default=1 << 20, validator=_positive)
    """UTF-8 size of the YAML text, checked before any parsing."""
    max_nodes: int = field(default=100_000, validator=_positive)
    """Scalars and collections built, counting every alias as the copy it expands to."""
    max_depth: int = field(default=100, validator=_positive)
    """Collections nested inside one another (the top-level hash is depth 1)."""
    max_int_digits: int = field(default=4300, validator=_positive)
    """Decimal digits of one integer: converting longer ones costs quadratic time."""
