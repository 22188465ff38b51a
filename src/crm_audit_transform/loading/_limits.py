"""How much one ``audited_changes`` value may cost to load."""

from __future__ import annotations

from attrs import field, frozen, validators

_positive = validators.and_(validators.instance_of(int), validators.ge(1))


@frozen
class LoaderLimits:
    """Bounds that keep a hostile row from exhausting memory or time; every one raises ``LimitExceeded``.

    The defaults load realistic rows — a 16 MiB rich-text value (an inline ``data:`` image) on both
    sides of an update; the corpus peaks at 52 KB, 132 YAML events and 7 levels of nesting — and
    still bound one row's cost: its text is refused before parsing past ``max_bytes``, and what is
    built from it past ``max_nodes`` and ``max_depth``. Every limit is a runner setting
    (``CRM_AUDIT_LOADER_MAX_BYTES``, …), a dry-run option and an HTTP setting.
    """

    max_bytes: int = field(default=32 << 20, validator=_positive)
    """UTF-8 size of the YAML (or jsonb) text, checked before any parsing: 32 MiB."""
    max_nodes: int = field(default=100_000, validator=_positive)
    """Scalars and collections built, counting every alias as the copy it expands to."""
    max_depth: int = field(default=100, validator=_positive)
    """Collections nested inside one another (the top-level hash is depth 1)."""
    max_int_digits: int = field(default=4300, validator=_positive)
    """Decimal digits of one integer: converting longer ones costs quadratic time."""
