"""OpenAPI 3.0 schemas generated from the answer types, so a route's type and its document cannot drift.

Every answer body is a ``TypedDict`` (``http/answers.py``, and the core's ``StatusDocument`` and
``VerifyReportDocument``). ``schema_of`` walks one into a schema in which every object declares
each of its keys, lists the ``Required`` ones as required, and forbids others
(``additionalProperties: false``): a field added to a type appears in the document, and a route
that answered a field its type lacks would fail mypy where it builds the body, and the fuzz where it
validates the answer.

The walk covers what the answers use, and refuses anything else with ``TypeError`` naming it:

    TypedDict                → object, properties, required, additionalProperties: false,
                               description from its docstring
    X | None                 → X's schema with nullable: true (OpenAPI 3.0)
    Literal["a", "b"]        → string enum
    str · int · float · bool → string · integer · number · boolean
    IsoTime                  → string, format: date-time
    list[X]                  → array of X
    dict[str, X]             → object whose values are X

Our own walk rather than a library: pydantic (``TypeAdapter.json_schema``) and msgspec
(``json.schema``) both emit JSON Schema 2020-12 (``$defs``, ``anyOf`` with ``type: null``), which
would move the document to OpenAPI 3.1 and add a dependency for one startup-time call; this walk of
the few shapes the answers use emits the 3.0 the document declares, inline, and refuses the rest.
"""

from __future__ import annotations

import inspect
import types
import typing
from typing import Literal, NotRequired, Required, Union, get_args, get_origin, get_type_hints, is_typeddict

from crm_audit_transform.usecases.status import IsoTime

__all__ = ["Schema", "schema_of"]

Schema = dict[str, object]

_SCALARS: dict[object, Schema] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    IsoTime: {"type": "string", "format": "date-time"},
}


def schema_of(tp: object) -> Schema:
    """The OpenAPI 3.0 schema of ``tp`` (see the module's table); ``TypeError`` for another type."""
    if tp in _SCALARS:
        return dict(_SCALARS[tp])
    if is_typeddict(tp):
        return _object(tp)
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, types.UnionType):
        present = [arg for arg in args if arg is not type(None)]
        if len(present) != 1 or len(args) != 2:
            raise TypeError(f"no schema for {tp!r}: only X | None unions are answered")
        return {**schema_of(present[0]), "nullable": True}
    if origin is Literal and all(isinstance(arg, str) for arg in args):
        return {"type": "string", "enum": list(args)}
    if origin is list and len(args) == 1:
        return {"type": "array", "items": schema_of(args[0])}
    if origin is dict and len(args) == 2 and args[0] is str:
        return {"type": "object", "additionalProperties": schema_of(args[1])}
    raise TypeError(f"no schema for {tp!r}")


def _object(tp: typing.Any) -> Schema:  # a TypedDict class: typing has no type for "any TypedDict"
    schema: Schema = {"type": "object"}
    doc = inspect.getdoc(tp)
    if doc and doc != inspect.getdoc(dict):
        schema["description"] = " ".join(doc.split("\n\n")[0].split())
    required, properties = [], {}
    # Required / NotRequired read from the hints: under ``from __future__ import annotations``,
    # Python 3.11's ``__required_keys__`` cannot see them and follows ``total`` alone.
    for name, hint in get_type_hints(tp, include_extras=True).items():
        marker = get_origin(hint)
        if marker in (Required, NotRequired):
            (hint,) = get_args(hint)
        if marker is Required or (marker is not NotRequired and tp.__total__):
            required.append(name)
        properties[name] = schema_of(hint)
    if required:
        schema["required"] = required
    schema["properties"] = properties
    schema["additionalProperties"] = False
    return schema
