"""The ``--json`` schemas of docs/runner.md, read from its ``json schema=NAME`` blocks, and their checker.

The notation is the one docs/runner.md ("JSON output: one schema per command") explains: an object
lists exactly its keys (``key?`` may be absent, ``{"*": S}`` any keys, ``"...": "#NAME"`` the keys
of another schema); ``[S]`` an array of ``S``; a string is a ``|`` choice of type names, ``#NAME``
references and literal strings; any other value is itself.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

RUNNER_DOC = Path(__file__).resolve().parents[2] / "docs" / "runner.md"
_BLOCK = re.compile(r"^```json schema=(\S+)\n(.*?)^```", re.S | re.M)

_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
}


def documented_schemas(path: Path = RUNNER_DOC) -> dict[str, Any]:
    """Every ``json schema=NAME`` block of ``path`` by NAME (``ValueError`` on a repeated NAME)."""
    schemas: dict[str, Any] = {}
    for name, body in _BLOCK.findall(path.read_text(encoding="utf-8")):
        if name in schemas:
            raise ValueError(f"{path.name}: schema {name} is defined twice")
        schemas[name] = json.loads(body)
    return schemas


def problems(value: Any, schema: Any, schemas: Mapping[str, Any], where: str = "$") -> list[str]:
    """What in ``value`` breaks ``schema``, one line per problem with its JSON path (empty: none)."""
    if isinstance(schema, dict):
        return _object_problems(value, schema, schemas, where)
    if isinstance(schema, list):
        if not isinstance(value, list):
            return [f"{where}: expected an array, got {value!r}"]
        items = (problems(item, schema[0], schemas, f"{where}[{i}]") for i, item in enumerate(value))
        return [p for found in items for p in found]
    if isinstance(schema, str):
        if any(_matches(value, choice.strip(), schemas) for choice in schema.split("|")):
            return []
        return [f"{where}: expected {schema}, got {value!r}"]
    if value != schema or type(value) is not type(schema):
        return [f"{where}: expected {schema!r}, got {value!r}"]
    return []


def _matches(value: Any, choice: str, schemas: Mapping[str, Any]) -> bool:
    if choice in _TYPES:
        return _TYPES[choice](value)
    if choice.startswith("#"):
        return not problems(value, schemas[choice[1:]], schemas)
    return value == choice


def _object_problems(value: Any, schema: dict[str, Any], schemas: Mapping[str, Any], where: str) -> list[str]:
    if not isinstance(value, dict):
        return [f"{where}: expected an object, got {value!r}"]
    if set(schema) == {"*"}:
        items = (problems(item, schema["*"], schemas, f"{where}.{key}") for key, item in value.items())
        return [p for found in items for p in found]
    keys = _expand(schema, schemas)
    found: list[str] = []
    for key, (item_schema, optional) in keys.items():
        if key in value:
            found += problems(value[key], item_schema, schemas, f"{where}.{key}")
        elif not optional:
            found.append(f"{where}: missing key {key!r}")
    found += [f"{where}: key {key!r} is not documented" for key in value if key not in keys]
    return found


def _expand(schema: dict[str, Any], schemas: Mapping[str, Any]) -> dict[str, tuple[Any, bool]]:
    """``{key: (schema, optional)}`` with every ``"...": "#NAME"`` spread in place."""
    keys: dict[str, tuple[Any, bool]] = {}
    for key, item in schema.items():
        if key == "...":
            keys.update(_expand(schemas[item.removeprefix("#")], schemas))
        else:
            keys[key.removesuffix("?")] = (item, key.endswith("?"))
    return keys
