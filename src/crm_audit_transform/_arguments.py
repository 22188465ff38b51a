"""The one check of a public constructor's arguments that a caller gives of a wrong type.

A value of the wrong type handed to ``Transformer`` or ``MigrationService`` failed far from the call,
as an ``AttributeError`` of the code that first used it (``'str' object has no attribute 'types'``);
a ``TypeError`` naming the argument at the call says what was wrong. ``typed`` and ``aware_time`` are
the same check as attrs validators of a value's fields (``MigrationJob``, ``JobShard``, ``HaltRule``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["aware_time", "port_of", "refuse_wrong_types", "typed"]


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


def typed(kind: type | tuple[type, ...], *, optional: bool = False) -> Callable[[Any, Any, Any], None]:
    """An attrs validator: ``TypeError`` naming the class and field (``JobShard.tally must be a
    Tally, got str``; ``HaltRule.sample must be an int, got float``) for a value that is not of
    ``kind`` (None allowed with ``optional``). A bool is no number here: ``True`` for a share or a
    count is a caller's mistake, not 1."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    wanted = " or ".join(("an " if k.__name__[0] in "AEIOUaeiou" else "a ") + k.__name__ for k in kinds)
    wanted += " or None" if optional else ""
    refuse_bool = bool not in kinds

    def check(instance: Any, attribute: Any, value: Any) -> None:
        if (optional and value is None) or (
            isinstance(value, kind) and not (refuse_bool and isinstance(value, bool))
        ):
            return
        raise TypeError(
            f"{type(instance).__name__}.{attribute.name} must be {wanted}, got {type(value).__name__}"
        )

    return check


def aware_time(*, optional: bool = False) -> Callable[[Any, Any, Any], None]:
    """An attrs validator of a stored time: ``TypeError`` for anything but a ``datetime`` (ISO text,
    a date, epoch seconds: never parsed), ``ValueError`` for a naive one (its zone is unknown, and the
    core never reads the local zone: ``timestamps.as_utc``), each naming the class and field; None allowed
    with ``optional``. An aware value of another offset is kept: it is the same instant."""

    def check(instance: Any, attribute: Any, value: Any) -> None:
        if value is None and optional:
            return
        if not isinstance(value, dt.datetime):
            wanted = "a timezone-aware datetime" + (" or None" if optional else "")
            raise TypeError(
                f"{type(instance).__name__}.{attribute.name} must be {wanted}, got {type(value).__name__}"
            )
        if value.utcoffset() is None:
            raise ValueError(
                f"{type(instance).__name__}.{attribute.name}: naive datetime: every timestamp in the "
                "domain is timezone-aware UTC"
            )

    return check


def port_of(
    port: str, methods: tuple[str, ...], *, optional: bool = False
) -> Callable[[Any, Any, Any], None]:
    """An attrs validator of a port given by a caller: ``TypeError`` naming the class, the field and
    the first of ``methods`` the value does not have as a callable (``RunPorts.clock has no
    monotonic(): a Clock gives now() and monotonic()``), when the ports are built, before any read
    or write: the call that needed it raised ``AttributeError`` mid-operation. None allowed with
    ``optional``."""
    listed = " and ".join(f"{name}()" for name in methods)

    def check(instance: Any, attribute: Any, value: Any) -> None:
        if value is None and optional:
            return
        for name in methods:
            if not callable(getattr(value, name, None)):
                raise TypeError(
                    f"{type(instance).__name__}.{attribute.name} has no {name}(): a {port} gives "
                    f"{listed} (got {type(value).__name__})"
                )

    return check
