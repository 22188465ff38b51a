"""The one check of a public constructor's arguments that a caller gives of a wrong type.

A value of the wrong type handed to ``Transformer`` or ``MigrationService`` failed far from the call,
as an ``AttributeError`` of the code that first used it (``'str' object has no attribute 'types'``);
a ``TypeError`` naming the argument at the call says what was wrong.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["refuse_wrong_types"]


def refuse_wrong_types(
    owner: str, arguments: Iterable[tuple[str, object, type | tuple[type, ...], bool]]
) -> None:
    """``TypeError`` for the first of ``arguments`` — (name, value, expected type(s), None allowed) —
    whose value is not of its type: ``Transformer(config=...) must be a MappingConfig, got str``."""
    for name, value, expected, optional in arguments:
        if (optional and value is None) or isinstance(value, expected):
            continue
        kinds = expected if isinstance(expected, tuple) else (expected,)
        wanted = " or ".join(kind.__name__ for kind in kinds) + (" or None" if optional else "")
        raise TypeError(f"{owner}({name}=...) must be a {wanted}, got {type(value).__name__}")
