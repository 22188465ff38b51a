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
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from attrs import frozen

from ..errors import LimitExceeded, MalformedYaml, NotAMapping, UnsupportedTag
from ..json_scan import bare_pieces, count_values
from ._limits import LoaderLimits
from ._ruby_keys import name_keys

_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
"""A bracket's step of depth as a signed byte: +1 opening, -1 (0xff) closing."""
_NOT_BRACKETS = bytes(byte for byte in range(256) if byte not in b"[]{}")
"""Every byte but the brackets: what ``_check_depth`` drops before summing."""
_SIZE_CHUNK = 1 << 20
"""Characters of text whose UTF-8 bytes ``from_json_text`` holds at a time to size it."""


@frozen
class JsonbText:
    """A jsonb (or json) column's value as the text PostgreSQL sends, not yet decoded."""

    text: str


def from_json_text(text: str, limits: LoaderLimits) -> dict[str, Any]:
    """The ``dict[str, Value]`` of jsonb text: size and depth checked before ``json.loads`` recurses."""
    size = len(text) if text.isascii() else _utf8_size(text)
    if size > limits.max_bytes:
        raise LimitExceeded("payload bytes", limits.max_bytes, size)
    nodes = _check_depth(text, limits.max_depth)
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


def _utf8_size(text: str) -> int:
    """The UTF-8 bytes of ``text`` (lone surrogates as 3), encoded ``_SIZE_CHUNK`` characters at a time."""
    return sum(
        len(text[start : start + _SIZE_CHUNK].encode("utf-8", "surrogatepass"))
        for start in range(0, len(text), _SIZE_CHUNK)
    )


def _check_depth(text: str, max_depth: int) -> int:
    """Nesting depth of JSON text (brackets outside strings), in one pass and without recursion;
    returns the nodes ``from_json`` would count (``json_scan.json_values``), counted in that pass.

    The text is read a piece at a time (``json_scan.bare_pieces``: its strings cut out, ~16 KiB of
    it as UTF-8 bytes; no byte of a multi-byte character is a bracket), so only a piece is held,
    never the whole text without its strings (one ``re.sub`` of a text of ``"",`` held 6.4 times
    its size). Each piece becomes a byte a bracket, +1 opening and -1 closing, all else dropped
    (``bytes.translate``); the running sum of those is the depth after each bracket
    (``itertools.accumulate``), at C speed, and the first that passes ``max_depth`` is the error's,
    as a step a bracket found it, the rest not summed. A depth that passes a negative limit after a
    closing bracket is no opening's: such limits (no loader's, which are positive) go a step a
    bracket, to fail where that did.
    """
    return count_values(_depth_checked(bare_pieces(text), max_depth))


def _depth_checked(pieces: Iterator[bytes], max_depth: int) -> Iterator[bytes]:
    """``pieces``, each after its brackets were summed into the depth (``_check_depth``)."""
    depth = 0
    for bare in pieces:
        steps = bare.translate(_STEPS, _NOT_BRACKETS)
        if max_depth < -1:
            depth = _stepwise(steps, depth, max_depth)
            yield bare
            continue
        sums = itertools.accumulate(memoryview(steps).cast("b"), initial=depth)
        next(sums)  # the depth before the piece: not past the limit
        # A depth is first past a limit of -1 or more just after an opening bracket (the depth
        # before was not past it), so the first sum past it is the depth the stepwise scan raised.
        passed = next(filter(max_depth.__lt__, sums), None)
        if passed is not None:
            raise LimitExceeded("nesting depth", max_depth, passed)
        depth += steps.count(1) - steps.count(0xFF)
        yield bare


def _stepwise(steps: bytes, depth: int, max_depth: int) -> int:
    """The depth after ``steps`` (``_STEPS``' bytes) from ``depth``, a Python step a bracket."""
    for step in steps:
        if step == 1:
            depth += 1
            if depth > max_depth:
                raise LimitExceeded("nesting depth", max_depth, depth)
        else:
            depth -= 1
    return depth


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
