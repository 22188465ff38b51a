"""What the permitted tags revive to, and the Ruby hash semantics the builder needs.

Tags are compared after YAML expanded them (``!!str`` is ``tag:yaml.org,2002:str``). Psych
ignores tags it does not know on plain scalars and collections; this loader refuses them
instead (``UnsupportedTag``): audited never writes them, so they mark foreign or edited data.
"""

from __future__ import annotations

import decimal
import re
from collections.abc import Callable
from typing import Any

from ._psych_scalars import Symbol
from ._ruby_keys import name_keys

YAML_STR = "tag:yaml.org,2002:str"
MERGE = "tag:yaml.org,2002:merge"

# Scalar tags: what Psych's ToRuby#deserialize does with each.
STRING_TAGS = frozenset({YAML_STR, "!str", "!ruby/string", "!str:String", "!ruby/string:String"})
BINARY_TAGS = frozenset({"!binary", "tag:yaml.org,2002:binary"})
FLOAT_TAGS = frozenset({"tag:yaml.org,2002:float", "!float"})
BIG_DECIMAL = "!ruby/object:BigDecimal"
DATE_TIME = "!ruby/object:DateTime"
SYMBOL_TAG = re.compile(r"!ruby/sym")  # Psych: /^!ruby\/sym(bol)?:?(.*)?$/, i.e. any such prefix
# Standard tags Psych reads by tokenizing the text as if untagged.
TOKENIZED_TAGS = frozenset(
    {
        "tag:yaml.org,2002:int",
        "tag:yaml.org,2002:bool",
        "tag:yaml.org,2002:null",
        "tag:yaml.org,2002:timestamp",
    }
)

SEQ, HASH, HWIA, TIME_WITH_ZONE, TIME_ZONE = range(5)
SEQUENCE_TAGS = {"tag:yaml.org,2002:seq": SEQ, "!ruby/array:Array": SEQ, "!seq:Array": SEQ}
MAPPING_TAGS = {
    "tag:yaml.org,2002:map": HASH,
    "!ruby/object:Hash": HASH,
    "!ruby/hash:Hash": HASH,
    "!map:Hash": HASH,
    "!ruby/hash:ActiveSupport::HashWithIndifferentAccess": HWIA,
    "!map:ActiveSupport::HashWithIndifferentAccess": HWIA,
    "!ruby/object:ActiveSupport::TimeWithZone": TIME_WITH_ZONE,
    "!ruby/object:ActiveSupport::TimeZone": TIME_ZONE,
}


def identity(key: Any) -> Any:
    """What makes two Ruby hash keys the same key (``eql?``): 1, 1.0 and true stay apart."""
    kind = type(key)
    if kind is str or kind is Symbol or key is None:
        return key
    if kind is float:
        return (float, "NaN" if key != key else key + 0.0)  # -0.0 and 0.0 hash alike in Ruby
    if kind is decimal.Decimal:
        return (decimal.Decimal, "NaN" if key.is_nan() else key)
    return (kind, key)


class RubyKeys:
    """The Ruby keys of every built hash that had a non-String key, for later re-keying, and the
    hashes that are already ActiveSupport::HashWithIndifferentAccess."""

    __slots__ = ("_indifferent", "_table")

    def __init__(self) -> None:
        self._table: dict[int, tuple[dict[str, Any], list[Any]]] = {}
        self._indifferent: dict[int, dict[str, Any]] = {}

    def name(self, pairs: list[tuple[Any, Any]]) -> dict[str, Any]:
        """Apply the key rule, remembering the Ruby keys when any is not a String."""
        named = name_keys(pairs)
        if any(type(key) is not str for key, _ in pairs):
            self._table[id(named)] = (named, [key for key, _ in pairs])
        return named

    def pairs(self, named: dict[str, Any]) -> list[tuple[Any, Any]]:
        """The Ruby ``(key, value)`` pairs behind a built hash."""
        entry = self._table.get(id(named))
        if entry is None or entry[0] is not named:
            return list(named.items())
        return list(zip(entry[1], named.values(), strict=True))

    def copy(self, value: Any) -> Any:
        """A deep copy of an anchored value for one alias, so the result stays a tree."""
        return _rebuild(value, self._shallow)

    def _shallow(self, value: Any) -> Any:
        if type(value) is list:
            return list(value)
        clone = dict(value)
        entry = self._table.get(id(value))
        if entry is not None and entry[0] is value:
            self._table[id(clone)] = (clone, entry[1])
        if self._is_indifferent(value):
            self._indifferent[id(clone)] = clone
        return clone

    def _is_indifferent(self, value: Any) -> bool:
        return self._indifferent.get(id(value)) is value

    def indifferent(self, pairs: list[tuple[Any, Any]]) -> dict[str, Any]:
        """``HashWithIndifferentAccess#[]=`` for each pair: Symbol keys become Strings (a later
        equal key overwrites in place) and every Hash nested in the values is converted too.

        A hash that is already one (``nested_under_indifferent_access`` returns it as it is) is not
        walked again: rebuilding it would give the same hash, and walking every nested one's tree
        once for each level above it cost a row of nested ones nodes times depth (100,000 nodes
        under 90 levels: 17 s)."""
        merged: dict[Any, list[Any]] = {}
        for key, value in pairs:
            ruby_key = key.name if type(key) is Symbol else key
            converted = self._indifferent_tree(value)
            slot = merged.get(identity(ruby_key))
            if slot is None:
                merged[identity(ruby_key)] = [ruby_key, converted]
            else:
                slot[1] = converted
        return self._as_indifferent(self.name([(key, value) for key, value in merged.values()]))

    def _as_indifferent(self, named: dict[str, Any]) -> dict[str, Any]:
        self._indifferent[id(named)] = named
        return named

    def _indifferent_tree(self, value: Any) -> Any:
        return _rebuild(value, self._indifferent_node, self._is_indifferent)

    def _indifferent_node(self, value: Any) -> Any:
        if type(value) is list:
            return value  # Ruby converts arrays in place (map!)
        merged: dict[Any, list[Any]] = {}
        for key, child in self.pairs(value):
            ruby_key = key.name if type(key) is Symbol else key
            slot = merged.get(identity(ruby_key))
            if slot is None:
                merged[identity(ruby_key)] = [ruby_key, child]
            else:
                slot[1] = child
        return self._as_indifferent(self.name([(key, child) for key, child in merged.values()]))


def _rebuild(value: Any, node: Callable[[Any], Any], kept: Callable[[Any], bool] | None = None) -> Any:
    """Replace every dict and list in ``value`` by ``node(it)``, top down, with an explicit stack
    (no recursion, so depth is bounded by the loader's limits, not by Python's stack). A dict or
    list for which ``kept`` is true stays as it is, and what it holds is not walked."""
    if type(value) is not dict and type(value) is not list:
        return value
    if kept is not None and kept(value):
        return value
    root = node(value)
    todo = [root]
    while todo:
        container = todo.pop()
        slots = container.items() if type(container) is dict else enumerate(container)
        for slot, child in list(slots):
            if (type(child) is dict or type(child) is list) and (kept is None or not kept(child)):
                container[slot] = rebuilt = node(child)
                todo.append(rebuilt)
    return root
