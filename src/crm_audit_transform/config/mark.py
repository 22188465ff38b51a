"""The mark of a mapping: a digest of its parsed, canonical form, kept by each job (``mapping_mark``).

Of the ``MappingConfig`` as read, never of the file's bytes: a comment, a blank line or another order
of a mapping's keys (a YAML mapping has none) leaves the mark as it was; any value, key or list
order that reaches the rules changes it. A tuple keeps its order (``person_id_keys`` and the other
lists are tried in order); a set (a tenant's id-set) is sorted.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence, Set
from typing import TYPE_CHECKING, Final, cast

import attrs

from .model import MappingConfig

if TYPE_CHECKING:
    from attrs import AttrsInstance

MARK_PREFIX: Final = "mapping-sha256:"
"""Every mark starts with this: the digest's kind and what it is of (64 hex digits follow)."""


def mapping_mark(config: MappingConfig, *, rule_chain: Sequence[tuple[str, str]] | None = None) -> str:
    """``mapping-sha256:<64 hex digits>``: the SHA-256 of ``config``'s canonical JSON (its classes'
    fields by name, mapping keys sorted, sets sorted, tuples in order). Equal for two files that
    parse to equal configurations; a different mark means different rules.

    ``rule_chain``: the ``(name, code)`` of each stage of a rule chain other than the mapping's
    default one (``chain.stage_codes``; ``Transformer.mapping_mark`` passes it), digested with the
    mapping: a service that passes another chain in code writes other logs, as another mapping
    file would. None, the default chain, gives the mapping's mark alone, as every job kept before.
    """
    import hashlib  # here: a dry run, whose job has no mark, never loads it (tests/e2e/test_cli_imports)

    canonical = _canonical(config)
    if rule_chain is not None:
        canonical = {"mapping": canonical, "rule_chain": [[name, code] for name, code in rule_chain]}
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return MARK_PREFIX + hashlib.sha256(text.encode("ascii")).hexdigest()


def _canonical(value: object) -> object:
    if attrs.has(type(value)):
        fields = attrs.fields(cast("type[AttrsInstance]", type(value)))
        return {f.name: _canonical(getattr(value, f.name)) for f in fields}
    if isinstance(value, Mapping):
        return {str(key): _canonical(item) for key, item in value.items()}
    if isinstance(value, Set):
        return sorted((_canonical(item) for item in value), key=lambda item: json.dumps(item, sort_keys=True))
    if isinstance(value, tuple | list):
        return [_canonical(item) for item in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise TypeError(f"a mapping holds no {type(value).__name__}")  # a new field type: mark it here
