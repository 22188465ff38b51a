"""A faster ``__init__`` for the frozen attrs classes the pipeline builds for every audit row.

attrs gives a frozen slotted class an ``__init__`` that sets each field with
``object.__setattr__(self, name, value)`` (its own ``__setattr__`` refuses every write): a generic
attribute lookup by name per field. The ``__init__`` made here calls each slot's own descriptor
(``Cls.__dict__[name].__set__``, what that lookup ends at) directly, so it builds the very same
object — same fields, defaults, converters, equality, hash, repr; still frozen — with fewer
instructions: 23 % fewer for a ``FieldChange``, 16 % for an ``AuditRow`` (cachegrind), 1.2–1.4 ×
less CPU time (``benchmarks/bench_fast_init.py``). A row builds a dozen such objects, a
``FieldChange`` per changed column among them.

Where the optional compiled ``_cslots`` was built (``setup.py``), the ``__init__`` makes all its
writes in one call of a ``SlotWriter`` instead of one descriptor call per field (each such call
builds an argument tuple and unpacks it again): the same values in the same slots, an ``AuditRow``
in about a third of the time. ``COMPILED_SLOTS`` says which path the classes use.

Only what these value classes use is supported: positional fields with plain or ``Factory``
defaults and plain converters. A class with validators, ``kw_only`` or ``init=False`` fields,
``__attrs_pre_init__``/``__attrs_post_init__``, or slots that are not its fields (``cache_hash``)
raises ``TypeError`` at import: it keeps attrs' own ``__init__``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, TypeVar, cast

import attrs

__all__ = ["COMPILED_SLOTS", "attrs_init", "descriptor_init", "fast_init"]

try:
    from . import _cslots  # optional: built by setup.py when it can
except ImportError:  # pragma: no cover - the pure path, when no compiler was at hand
    _cslots = None  # type: ignore[assignment]

COMPILED_SLOTS: Final = _cslots is not None
"""Whether ``fast_init``'s ``__init__`` writes the slots through the compiled ``_cslots``."""

_C = TypeVar("_C", bound=type)

_ATTRS_INITS: Final[dict[type, Callable[..., None]]] = {}
_DESCRIPTOR_SOURCES: Final[dict[type, tuple[str, dict[str, Any]]]] = {}
_FACTORY: Final = cast(Any, attrs.Factory)  # a class at run time; the stubs type it as a function


def fast_init(cls: _C) -> _C:
    """Give the frozen slotted attrs class ``cls`` the descriptor-setting ``__init__``; return it."""
    fields = attrs.fields(cls)
    _refuse_unsupported(cls, fields)
    names: dict[str, Any] = {"NOTHING": attrs.NOTHING}
    params: list[str] = []
    lines: list[str] = []
    values: list[str] = []
    for index, field in enumerate(fields):
        setter = f"_set_{index}"
        names[setter] = _slot(cls, field.name).__set__
        value = field.alias
        default = field.default
        if default is attrs.NOTHING:
            params.append(field.alias)
        elif isinstance(default, _FACTORY):
            names[f"_factory_{index}"] = default.factory
            params.append(f"{field.alias}=NOTHING")
            value = f"_factory_{index}() if {field.alias} is NOTHING else {field.alias}"
        else:
            names[f"_default_{index}"] = default
            params.append(f"{field.alias}=_default_{index}")
        if field.converter is not None:
            names[f"_convert_{index}"] = field.converter
            value = f"_convert_{index}({value})"
        lines.append(f"    {setter}(self, {value})")
        values.append(value)
    header = f"def __init__(self, {', '.join(params)}):\n"
    _DESCRIPTOR_SOURCES[cls] = (header + "\n".join(lines or ["    pass"]) + "\n", names)
    if _cslots is not None and len(fields) <= _cslots.MAX_FIELDS:  # the same values, in one call
        offsets = [_cslots.slot_offset(_slot(cls, field.name)) for field in fields]
        names = {**names, "_put": _cslots.SlotWriter(cls, offsets).put}
        lines = [f"    _put(self, {', '.join(values)})"] if values else []
    generated = cast(Any, cls).__init__
    _ATTRS_INITS[cls] = generated
    type.__setattr__(cls, "__init__", _compiled(cls, header + "\n".join(lines or ["    pass"]) + "\n", names))
    return cls


def attrs_init(cls: type) -> Callable[..., None]:
    """The ``__init__`` attrs generated for a class ``fast_init`` replaced (to compare the two)."""
    return _ATTRS_INITS[cls]


def descriptor_init(cls: type) -> Callable[..., None]:
    """The ``__init__`` of ``fast_init``'s pure path for a class it replaced (one descriptor call a
    field), whichever path the class uses: to compare the two (``benchmarks/bench_fast_init.py``)."""
    source, names = _DESCRIPTOR_SOURCES[cls]
    return _compiled(cls, source, dict(names))


def _compiled(cls: type, source: str, names: dict[str, Any]) -> Callable[..., None]:
    exec(compile(source, f"<fast_init {cls.__qualname__}>", "exec"), names)  # noqa: S102 - built here
    init: Callable[..., None] = names["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__doc__ = cast(Any, _ATTRS_INITS[cls]).__doc__
    return init


def _slot(cls: type, name: str) -> Any:
    for klass in cls.__mro__:
        descriptor = klass.__dict__.get(name)
        if descriptor is not None:
            if type(descriptor).__name__ != "member_descriptor":
                break
            return descriptor
    raise TypeError(f"{cls.__qualname__}.{name} is not a slot: fast_init needs a slotted class")


def _refuse_unsupported(cls: type, fields: tuple[attrs.Attribute[Any], ...]) -> None:
    why = []
    if cast(Any, cls).__setattr__ is object.__setattr__:
        why.append("not frozen")
    if hasattr(cls, "__attrs_pre_init__") or hasattr(cls, "__attrs_post_init__"):
        why.append("a pre- or post-init hook")
    for field in fields:
        if field.validator is not None or field.kw_only or not field.init:
            why.append(f"field {field.name} (validator, kw_only or init=False)")
        if field.converter is not None and not _plain_callable(field.converter):
            why.append(f"field {field.name}'s converter takes more than the value")
        if isinstance(field.default, _FACTORY) and field.default.takes_self:
            why.append(f"field {field.name}'s factory takes self")
    own = {field.name for field in fields} | {"__weakref__"}
    extra = [slot for klass in cls.__mro__ for slot in klass.__dict__.get("__slots__", ()) if slot not in own]
    if extra:
        why.append(f"slots {extra} that are not fields")
    if why:
        raise TypeError(f"fast_init cannot build {cls.__qualname__}: {'; '.join(why)}")


def _plain_callable(converter: object) -> bool:
    return callable(converter) and type(converter).__name__ != "Converter"
