"""Builds the value model straight from YAML parser events: no node graph, no recursion.

Working on events rather than a composed node tree keeps every limit exact and cheap: depth is
the length of an explicit stack, so a 10,000-deep document fails at the limit instead of
recursing, and an alias is checked against ``max_nodes`` before it is copied, so an alias bomb
fails before it allocates. Only the first document is read, as Psych's ``safe_load`` does.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Protocol

from yaml.events import (
    AliasEvent,
    Event,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)

from ..errors import LimitExceeded, MalformedYaml, UnsupportedTag
from . import _psych_floats as pf
from . import _psych_scalars as ps
from . import _ruby_objects as ro
from ._limits import LoaderLimits

_NO_KEY = object()
_OPEN = object()


class EventSource(Protocol):
    def get_event(self) -> Event: ...


class _Frame:
    __slots__ = (
        "anchor",
        "height",
        "items",
        "key",
        "key_mark",
        "kind",
        "mark",
        "merge",
        "seen",
        "start",
        "typed",
    )

    def __init__(self, kind: int, anchor: str | None, start: int, mark: Any) -> None:
        self.kind = kind
        self.anchor = anchor
        self.start = start
        self.mark = mark
        self.height = 0
        self.items: Any = [] if kind == ro.SEQ else {}
        self.key: Any = _NO_KEY
        self.key_mark: Any = None
        self.merge = False
        self.typed: list[tuple[Any, Any]] | None = None
        self.seen: set[Any] | None = None


def malformed(message: str, mark: Any) -> MalformedYaml:
    if mark is None:
        return MalformedYaml(message)
    return MalformedYaml(message, mark.line + 1, mark.column + 1)


def build(source: EventSource, limits: LoaderLimits) -> tuple[bool, Any]:
    """``(True, value)`` of the first document, or ``(False, None)`` for a stream without one."""
    get_event = source.get_event
    get_event()  # StreamStartEvent
    if type(get_event()) is StreamEndEvent:
        return False, None
    max_nodes, max_depth, digits = limits.max_nodes, limits.max_depth, limits.max_int_digits
    # Module globals bound to locals: this loop runs once per YAML event.
    tokenize, symbol, unreadable, seq, plain_hash = ps.tokenize, ps.Symbol, ps.Unreadable, ro.SEQ, ro.HASH
    scalar_event, alias_event = ScalarEvent, AliasEvent
    mapping_start, sequence_start, mapping_end, sequence_end = (
        MappingStartEvent,
        SequenceStartEvent,
        MappingEndEvent,
        SequenceEndEvent,
    )
    no_key = _NO_KEY
    keys = ro.RubyKeys()
    anchors: dict[str, Any] = {}
    stack: list[_Frame] = []
    nodes = 0
    while True:
        event: Any = get_event()
        kind = type(event)
        if kind is scalar_event:
            nodes += 1
            if nodes > max_nodes:
                raise LimitExceeded("nodes", max_nodes, nodes)
            if event.implicit[0]:  # plain: the common case, tokenized without a call to _scalar
                value = event.value
                first = value[:1]
                # A word longer than any null/true/false spelling is tokenize's own answer.
                if len(value) <= 5 or not (first.isascii() and first.isalpha()):
                    try:
                        value = tokenize(value, digits)
                    except (unreadable, ValueError) as exc:
                        raise malformed(str(exc), event.start_mark) from None
            else:
                value = _scalar(event, digits)
            height = 0
            if event.anchor is not None:
                anchors[event.anchor] = (value, 1, 0)
        elif kind is mapping_start or kind is sequence_start:
            nodes += 1
            if nodes > max_nodes:
                raise LimitExceeded("nodes", max_nodes, nodes)
            if len(stack) >= max_depth:
                raise LimitExceeded("nesting depth", max_depth, len(stack) + 1)
            if stack:
                _check_collection_slot(stack[-1], event)
            if event.tag is None:  # untagged: no call to _collection_kind
                collection = seq if kind is sequence_start else plain_hash
            else:
                collection = _collection_kind(event, kind is sequence_start)
            frame = _Frame(collection, event.anchor, nodes - 1, event.start_mark)
            if event.anchor is not None:
                anchors[event.anchor] = _OPEN  # an alias inside its own anchor would recurse
            stack.append(frame)
            continue
        elif kind is mapping_end or kind is sequence_end:
            frame = stack.pop()
            if frame.typed is None and (frame.kind == seq or frame.kind == plain_hash):
                value = frame.items  # _finish's common case inline
            else:
                value = _finish(frame, keys)
            height = frame.height + 1
            if frame.anchor is not None:
                anchors[frame.anchor] = (value, nodes - frame.start, height)
        elif kind is alias_event:
            entry = anchors.get(event.anchor)
            if entry is None:
                raise malformed("found an undefined alias", event.start_mark)
            if entry is _OPEN:
                raise LimitExceeded("alias expansion", max_nodes, None)
            value, size, height = entry
            nodes += size
            if nodes > max_nodes:
                raise LimitExceeded("nodes", max_nodes, nodes)
            if len(stack) + height > max_depth:
                raise LimitExceeded("nesting depth", max_depth, len(stack) + height)
            if height:
                if stack:
                    _check_collection_slot(stack[-1], event)
                value = keys.copy(value)
        else:
            raise malformed(f"unexpected {kind.__name__}", getattr(event, "start_mark", None))
        if not stack:
            get_event()  # DocumentEndEvent: Psych reads up to here, and no further
            return True, value.name if type(value) is symbol else value
        top = stack[-1]
        if height > top.height:
            top.height = height
        if top.kind == seq:
            top.items.append(value.name if type(value) is symbol else value)
        elif top.key is no_key:
            top.key = value
            top.key_mark = event.start_mark
            # Psych merges under any "<<" key not tagged !!str; audited never writes one.
            top.merge = value == "<<" and type(value) is str and getattr(event, "tag", None) != ro.YAML_STR
        else:
            if type(value) is symbol:
                value = value.name
            key = top.key
            items = top.items
            if top.typed is None and type(key) is str and key not in items:
                # _put's common case inline: a new string key
                items[key] = value
                top.key = no_key
                top.merge = False
            else:
                _put(top, value)


def _scalar(event: ScalarEvent, digits: int) -> Any:
    plain, quoted = event.implicit
    text = event.value
    tag = event.tag
    try:
        if plain or tag == "!":  # untagged plain, or the non-specific "!" tag: Psych tokenizes both
            return ps.tokenize(text, digits)
        if quoted:
            return text
        if tag in ro.STRING_TAGS:
            return text
        if tag == ro.BIG_DECIMAL:
            return ps.big_decimal(text)
        if tag == ro.DATE_TIME:
            return ps.parse_time(text)
        if tag in ro.BINARY_TAGS:
            return ps.binary(text)
        if tag in ro.FLOAT_TAGS:
            return pf.tagged_float(text, digits)
        if tag in ro.TOKENIZED_TAGS:
            return ps.tokenize(text, digits)
        if tag is not None and ro.SYMBOL_TAG.match(tag):
            return ps.Symbol(text)
    except (ps.Unreadable, ValueError) as exc:
        raise malformed(str(exc), event.start_mark) from None
    raise UnsupportedTag(str(tag))


def _collection_kind(event: MappingStartEvent | SequenceStartEvent, sequence: bool) -> int:
    tag = event.tag
    if tag is None or tag == "!":
        return ro.SEQ if sequence else ro.HASH
    kind = (ro.SEQUENCE_TAGS if sequence else ro.MAPPING_TAGS).get(tag)
    if kind is None:
        raise UnsupportedTag(tag)
    return kind


def _check_collection_slot(top: _Frame, event: Event) -> None:
    """A collection may not be a hash key, nor the value of a ``<<`` merge key."""
    if top.kind == ro.SEQ:
        return
    if top.key is _NO_KEY:
        raise malformed("a collection used as a hash key is not supported", event.start_mark)
    if top.merge:
        raise UnsupportedTag(ro.MERGE)


def _put(frame: _Frame, value: Any) -> None:
    key = frame.key
    frame.key = _NO_KEY
    frame.merge = False
    if frame.typed is None and type(key) is str:
        if key in frame.items:
            raise malformed("duplicate key", frame.key_mark)  # named by position: a key may be data
        frame.items[key] = value
        return
    if frame.typed is None:
        frame.typed = list(frame.items.items())
        frame.seen = set(frame.items)
    assert frame.seen is not None
    ident = ro.identity(key)
    if ident in frame.seen:
        raise malformed("duplicate key", frame.key_mark)
    frame.seen.add(ident)
    frame.typed.append((key, value))


def _finish(frame: _Frame, keys: ro.RubyKeys) -> Any:
    kind = frame.kind
    if kind == ro.SEQ:
        return frame.items
    pairs = frame.typed
    if kind == ro.HASH:
        return frame.items if pairs is None else keys.name(pairs)
    if pairs is None:
        pairs = list(frame.items.items())
    if kind == ro.HWIA:
        return keys.indifferent(pairs)
    wanted = "utc" if kind == ro.TIME_WITH_ZONE else "name"
    found = [value for key, value in pairs if key == wanted and type(key) is str]
    if kind == ro.TIME_WITH_ZONE:
        if not found or not isinstance(found[0], dt.datetime):
            raise malformed("an ActiveSupport::TimeWithZone without a Time under utc:", frame.mark)
        return found[0]
    if not found or type(found[0]) is not str:
        raise malformed("an ActiveSupport::TimeZone without a name:", frame.mark)
    return found[0]
