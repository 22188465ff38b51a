"""``audited_changes`` from a jsonb column: decoded JSON, checked and copied, or its text, decoded here.

Ruby reads such a column with ``ActiveSupport::JSON.decode`` and leaves strings alone, so times
stay ISO strings and decimals stay strings; what the driver decoded is already the value model.
The copy keeps the caller's object out of the result and applies the same depth and node limits
as YAML (and survives a cyclic object by failing at ``max_nodes``).

A driver that decodes jsonb itself recurses once per nesting level, so a value nested deeper than
Python's recursion limit makes the whole fetch raise. Adapters therefore hand over the column's text
(``JsonbText``); it is decoded here only after its size and nesting depth were checked against the
limits, without recursion, so such a value is that row's ``LimitExceeded`` and nothing more.
"""

from __future__ import annotations

import datetime as dt
import decimal
import itertools
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from attrs import frozen

from ..errors import LimitExceeded, MalformedYaml, NotAMapping, UnsupportedTag
from ._limits import LoaderLimits
from ._ruby_keys import name_keys

# Possessive: sre then keeps no backtracking state an escape (a greedy loop held ~75 bytes of it
# a character of a string of ``\\"``: a 2 MiB body, 150 MiB). The match is the same: the loop is
# unambiguous, so no match needs to give any of it back. A string that never closes runs to the
# end, as json.loads reads it (it parses nothing after it): required to close, the pattern failed
# there and sre tried it again at each quote inside it, to the end each time (a 1 MiB body of
# ``\\"``: hours, in the HTTP app's event loop).
_JSON_STRING = re.compile(r'"[^"\\]*+(?:\\.?[^"\\]*+)*+"?', re.S)
_BRACKET = re.compile(r"[\[\]{}]")
_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
"""A bracket's step of depth as a signed byte: +1 opening, -1 (0xff) closing."""
_NOT_BRACKETS = bytes(byte for byte in range(256) if byte not in b"[]{}")
"""Every byte but the brackets: what ``_check_depth`` drops before summing."""
_NO_BLANKS = str.maketrans("", "", " \t\n\r")
"""JSON's blanks: what ``_values`` drops (outside strings), so ``[ ]`` reads as ``[]``."""
_CHUNK = 1 << 20
"""Characters of text ``_check_depth`` encodes at a time: it holds their bytes, not the whole text's."""


@frozen
class JsonbText:
    """A jsonb (or json) column's value as the text PostgreSQL sends, not yet decoded."""

    text: str


def from_json_text(text: str, limits: LoaderLimits) -> dict[str, Any]:
    """The ``dict[str, Value]`` of jsonb text: size and depth checked before ``json.loads`` recurses."""
    size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
    if size > limits.max_bytes:
        raise LimitExceeded("payload bytes", limits.max_bytes, size)
    bare = _check_depth(text, limits.max_depth)
    nodes = _values(bare)
    if nodes > limits.max_nodes:  # before json.loads builds them: a value of "[]," is ~60 bytes
        raise LimitExceeded("nodes", limits.max_nodes, nodes)
    try:
        decoded = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise MalformedYaml(f"jsonb text is not JSON: {exc}") from None
    if not isinstance(decoded, dict):
        raise NotAMapping(type(decoded).__name__)
    return from_json(decoded, limits)


def check_json_depth(text: str, max_depth: int) -> None:
    """``LimitExceeded`` when JSON ``text`` nests arrays/objects deeper than ``max_depth``.

    One pass over the brackets outside strings, without recursion, so it is safe on any input
    (run it before ``json.loads``, which recurses once per level). Malformed text is not judged here;
    the brackets after a string that never closes are not counted (json.loads parses none of them).
    """
    _check_depth(text, max_depth)


def _values(bare: str) -> int:
    """The nodes ``from_json`` counts (the whole, and each item of an array or object) of JSON text
    whose strings are cut to one character, counted at C speed before anything is built: one more
    than its commas for each array or object that is not empty. A 30 MiB value of ``[],`` held
    730 MiB once decoded, and was refused by that count only then."""
    bare = bare.translate(_NO_BLANKS)
    collections = bare.count("[") + bare.count("{")
    return 1 + bare.count(",") + collections - bare.count("[]") - bare.count("{}")


def _check_depth(text: str, max_depth: int) -> str:
    """Nesting depth of JSON text (brackets outside strings), in one pass and without recursion.

    At C speed, not a Python step a bracket (wide text, ``[[],[],…]``, took one each): the text
    without its strings, ``_CHUNK`` characters at a time as UTF-8 (no byte of a multi-byte
    character is a bracket), becomes a byte a bracket, +1 opening and -1 closing, all else dropped
    (``bytes.translate``); the running sum of those is the depth after each bracket
    (``itertools.accumulate``), and the first that passes ``max_depth`` is the error's, as a step a
    bracket found it, the rest not summed. A depth that passes a negative limit after a closing
    bracket is no opening's: such limits (no loader's, which are positive) go the step-a-bracket
    way, to fail where it did. Returns the text with each string cut to one character, which
    ``_values`` counts.
    """
    stripped = _JSON_STRING.sub("0", text)  # a string is one value: its place kept, its text gone
    if max_depth < -1:
        _check_depth_stepwise(stripped, max_depth)
        return stripped
    depth = 0
    for start in range(0, len(stripped), _CHUNK):
        steps = (
            stripped[start : start + _CHUNK].encode("utf-8", "surrogatepass").translate(_STEPS, _NOT_BRACKETS)
        )
        sums = itertools.accumulate(memoryview(steps).cast("b"), initial=depth)
        next(sums)  # the depth before the chunk: not past the limit
        # A depth is first past a limit of -1 or more just after an opening bracket (the depth
        # before was not past it), so the first sum past it is the depth the stepwise scan raised.
        passed = next(filter(max_depth.__lt__, sums), None)
        if passed is not None:
            raise LimitExceeded("nesting depth", max_depth, passed)
        depth += steps.count(1) - steps.count(0xFF)
    return stripped


def _check_depth_stepwise(stripped: str, max_depth: int) -> None:
    """``_check_depth`` a Python step a bracket of ``stripped`` (text without its JSON strings)."""
    depth = 0
    for match in _BRACKET.finditer(stripped):
        if match.group() in "[{":
            depth += 1
            if depth > max_depth:
                raise LimitExceeded("nesting depth", max_depth, depth)
        else:
            depth -= 1


_SCALARS = (type(None), bool, int, float, str, decimal.Decimal, dt.date)


def from_json(value: Mapping[Any, Any], limits: LoaderLimits) -> dict[str, Any]:
    """A fresh ``dict[str, Value]`` of a decoded jsonb mapping."""
    max_nodes, max_depth = limits.max_nodes, limits.max_depth
    nodes = 1
    root: dict[str, Any] = {}
    todo: list[tuple[Any, Any, int]] = [(value, root, 1)]
    while todo:
        source, target, depth = todo.pop()
        if depth > max_depth:
            raise LimitExceeded("nesting depth", max_depth, depth)
        nodes += len(source)
        if nodes > max_nodes:
            raise LimitExceeded("nodes", max_nodes, nodes)
        children = source.items() if type(target) is dict else enumerate(source)
        pairs: list[tuple[Any, Any]] = []
        for key, child in children:
            if isinstance(child, Mapping):
                copied: Any = {}
                todo.append((child, copied, depth + 1))
            elif isinstance(child, Sequence) and not isinstance(child, str | bytes | bytearray):
                copied = []
                todo.append((child, copied, depth + 1))
            else:
                copied = _scalar(child)
            pairs.append((key, copied))
        if type(target) is list:
            target.extend(child for _, child in pairs)
        elif all(type(key) is str for key, _ in pairs):
            target.update(pairs)
        else:
            for key, _ in pairs:
                _scalar(key)
            target.update(name_keys(pairs))
    return root


def _scalar(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise UnsupportedTag("python:datetime without a time zone")
        return value.astimezone(dt.UTC)
    if isinstance(value, _SCALARS):
        return value
    raise UnsupportedTag(f"python:{type(value).__qualname__}")
