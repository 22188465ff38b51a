"""Reading a mapping configuration from YAML: cattrs structures it, then the rules are checked.

Every problem is collected with the path of its key (``$.types['Crm::Deal'].category``) and
raised together as one :class:`~crm_audit_transform.errors.ConfigError`, so a user fixes a file in
one pass instead of one error at a time.
"""

from __future__ import annotations

import copy
import functools
import os
import stat
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import cattrs
import yaml

from ..errors import ConfigError
from .model import AUDIT_ACTIONS, MappingConfig

T = TypeVar("T")

DEFAULT_CONFIG_RESOURCE = "default_mapping.yaml"


def _strict(kind: type[T], name: str) -> Callable[[Any, Any], T]:
    # cattrs would turn 5 into "5" or "10" into 10; a mapping file with the wrong type is a mistake.
    def structure(value: Any, _: Any) -> T:
        if type(value) is not kind:
            raise TypeError(f"expected {name}, got {type(value).__name__} {value!r}")
        return value

    return structure


def _make_converter() -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=True)
    converter.register_structure_hook(str, _strict(str, "a string"))
    converter.register_structure_hook(int, _strict(int, "an integer"))
    converter.register_structure_hook(bool, _strict(bool, "true or false"))
    return converter


_CONVERTER = _make_converter()


MAX_MAPPING_BYTES = 1 << 20
"""A mapping file is read up to this many bytes (1 MiB; the shipped one is a few KiB): a larger one
(``/dev/zero``, a file named by mistake) is a ``ConfigError`` at once instead of a read without end."""


MAX_MAPPING_NODES = 1 << 20
"""Scalars and collections a mapping document may expand to, every alias counted as the copy it
stands for: no alias-free file under ``MAX_MAPPING_BYTES`` comes near (each node takes two bytes
at least), so aliases stay usable, but a few KiB of nested aliases (an alias bomb) cannot make the
structuring build millions of values: ``ConfigError`` after about a second instead."""


def load_config(path_or_text: str | os.PathLike[str]) -> MappingConfig:
    """Read a mapping configuration from a file path or from YAML text.

    A ``PathLike`` is always a path; a ``str`` is YAML text when it spans several lines or starts
    with ``{``, else the path of a file. ``ConfigError`` for a file that cannot be read, is not a
    regular file (a device, a FIFO: they may never end or never open), is larger
    than ``MAX_MAPPING_BYTES``, expands through its aliases past ``MAX_MAPPING_NODES`` values, or is
    not a valid configuration.
    """
    if isinstance(path_or_text, str) and ("\n" in path_or_text or path_or_text.lstrip().startswith("{")):
        text, origin = path_or_text, "<text>"
    else:
        path = Path(path_or_text)
        try:
            if not stat.S_ISREG(path.stat().st_mode):
                # A FIFO with no writer blocks open() for ever, /dev/zero never ends: neither is a file.
                why = f"{path} is not a regular file (a device, a FIFO, a socket or a directory)"
                raise ConfigError([("$", why)], source=f"mapping file {path}")
            with path.open("rb") as stream:
                data = stream.read(MAX_MAPPING_BYTES + 1)
            text = data.decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError([("$", f"cannot read {path}: {exc}")], source=f"mapping file {path}") from exc
        if len(data) > MAX_MAPPING_BYTES:
            why = f"{path} is larger than {MAX_MAPPING_BYTES} bytes: not a mapping configuration"
            raise ConfigError([("$", why)], source=f"mapping file {path}")
        origin = str(path)
    try:
        return _parse(text, origin=origin)
    except ConfigError as exc:
        source = "mapping text" if origin == "<text>" else f"mapping file {origin}"
        raise ConfigError(exc.problems, source=source) from None


def load_default_config() -> MappingConfig:
    """The configuration shipped with the package (fits the CRM of the audited 5.8.0 corpus).

    Each call returns a configuration of its own, structured and checked afresh from the shipped
    YAML, which is parsed once per process (``_shipped_document``): PyYAML's pure-Python parser
    takes about 12 ms of CPU over it, the rest about 0.6 ms, and a program that builds a service per
    step (library use of ``run_shard`` or a dry run over files, resumed step by step) parsed it
    hundreds of times."""
    return _structure(copy.deepcopy(_shipped_document()), origin=DEFAULT_CONFIG_RESOURCE)


@functools.cache
def _shipped_document() -> Any:
    # Kept for the process and never handed out: each caller structures a deep copy of it.
    resource = resources.files("crm_audit_transform").joinpath("data", DEFAULT_CONFIG_RESOURCE)
    return _document(resource.read_text("utf-8"), origin=DEFAULT_CONFIG_RESOURCE)


def _parse(text: str, *, origin: str = "<text>") -> MappingConfig:
    """Structure and validate YAML text; raise ``ConfigError`` listing every problem found."""
    return _structure(_document(text, origin=origin), origin=origin)


def _document(text: str, *, origin: str) -> Any:
    """The YAML document of ``text``; ``ConfigError`` for text that is not YAML or nests too deep."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([("$", f"{origin} is not valid YAML: {exc}")]) from exc
    except RecursionError:  # PyYAML composes one level per call: no mapping nests this deep
        raise ConfigError([("$", f"{origin} nests collections too deep to read")]) from None


def _structure(document: Any, *, origin: str) -> MappingConfig:
    """``document`` as a checked ``MappingConfig``; ``ConfigError`` listing every problem found."""
    if not isinstance(document, Mapping):
        raise ConfigError([("$", f"{origin} must be a mapping, found {type(document).__name__}")])
    if not _within_nodes(document, MAX_MAPPING_NODES):
        why = f"{origin} expands to more than {MAX_MAPPING_NODES} values (nested aliases?)"
        raise ConfigError([("$", why)])
    try:
        config = _CONVERTER.structure(document, MappingConfig)
    except cattrs.BaseValidationError as exc:
        raise ConfigError(_paths(exc)) from exc
    except RecursionError:
        raise ConfigError([("$", f"{origin} nests collections too deep to read")]) from None
    problems = _validate(config)
    if problems:
        raise ConfigError(problems)
    return config


def _within_nodes(document: object, limit: int) -> bool:
    """Whether ``document`` holds at most ``limit`` values when every alias is expanded.

    PyYAML builds an alias as a reference to the one object, so the document stays small however
    far it expands; each collection's expanded size is computed once (by ``id``, depth first,
    without recursion) from its children's, so the check costs the document's size, not the
    expansion's. A collection that contains itself (``&a [*a]``) expands without end: refused.
    """
    sizes: dict[int, int] = {}
    entered: set[int] = set()
    stack: list[tuple[object, bool]] = [(document, False)]
    while stack:
        value, done = stack.pop()
        children = _children(value)
        if children is None:
            continue
        key = id(value)
        if done:
            total = 1 + (len(children) if isinstance(value, Mapping) else 0)  # the keys: scalars
            for child in children:
                total += sizes.get(id(child), 1)
            sizes[key] = min(total, limit + 1)
            entered.discard(key)
            continue
        if key in sizes:
            continue
        if key in entered:
            return False
        entered.add(key)
        stack.append((value, True))
        stack.extend((child, False) for child in children if id(child) not in sizes)
    return sizes.get(id(document), 1) <= limit


def _children(value: object) -> list[object] | None:
    """The values inside a collection PyYAML built (a mapping's keys are scalars), else None."""
    if isinstance(value, Mapping):
        return list(value.values())
    if isinstance(value, list):
        return value
    return None


def _paths(exc: cattrs.BaseValidationError) -> list[tuple[str, str]]:
    problems = []
    for line in cattrs.transform_error(exc, path="$"):
        message, _, path = line.rpartition(" @ ")
        problems.append((path or "$", message or line))
    return problems


def _validate(config: MappingConfig) -> list[tuple[str, str]]:
    """Rules the types alone cannot express; returns every ``(path, message)`` found."""
    problems: list[tuple[str, str]] = []

    def need(ok: bool, path: str, message: str) -> None:
        if not ok:
            problems.append((path, message))

    need(config.version == 1, "$.version", f"unsupported version {config.version}; this library reads 1")
    need(bool(config.person_class), "$.person_class", "must not be empty")
    _check_actions(config.actions, "$.actions", AUDIT_ACTIONS, need, complete=True)
    _check_actions(config.link_actions, "$.link_actions", ("create", "destroy"), need, complete=True)
    need(bool(config.comment.person_id_keys), "$.comment.person_id_keys", "name at least one key")
    need(bool(config.actor.user_class), "$.actor.user_class", "must not be empty")
    need(bool(config.types), "$.types", "map at least one auditable_type")
    used_id_sets: set[str] = set()
    for name, mapping in config.types.items():
        at = f"$.types[{name!r}]"
        need(bool(name), at, "an auditable_type must not be empty")
        need(bool(mapping.category), f"{at}.category", "must not be empty")
        if mapping.actions is not None:
            _check_actions(mapping.actions, f"{at}.actions", AUDIT_ACTIONS, need, complete=False)
        if mapping.link is not None:
            need(bool(mapping.link.entity_type), f"{at}.link.entity_type", "must not be empty")
            need(bool(mapping.link.id_column), f"{at}.link.id_column", "must not be empty")
        for index, rule in enumerate(mapping.status_rules):
            rule_at = f"{at}.status_rules[{index}]"
            need(bool(rule.column), f"{rule_at}.column", "must not be empty")
            need(bool(rule.id_set), f"{rule_at}.id_set", "must not be empty")
            need(bool(rule.action), f"{rule_at}.action", "must not be empty")
            used_id_sets.add(rule.id_set)
    for tenant, tenant_config in config.tenants.items():
        for id_set in tenant_config.id_sets:
            need(
                id_set in used_id_sets,
                f"$.tenants[{tenant!r}].id_sets[{id_set!r}]",
                f"no status rule uses this id-set (known: {', '.join(sorted(used_id_sets)) or 'none'})",
            )
    return problems


def _check_actions(
    actions: Mapping[str, str],
    at: str,
    allowed: tuple[str, ...],
    need: Callable[[bool, str, str], None],
    *,
    complete: bool,
) -> None:
    for key, value in actions.items():
        need(key in allowed, f"{at}[{key!r}]", f"not an audit action (one of {', '.join(allowed)})")
        need(bool(value), f"{at}[{key!r}]", "must not be empty")
    if complete:
        for key in allowed:
            need(key in actions, f"{at}[{key!r}]", "missing")
