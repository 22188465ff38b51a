"""Loading ``audited_changes`` (placeholder until the safe Psych-compatible loader lands)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml
from attrs import frozen

from ..errors import MalformedYaml, NotAMapping
from ..values import Changes


@frozen
class LoaderLimits:
    max_bytes: int = 1 << 20
    max_nodes: int = 100_000
    max_depth: int = 64


def load_audited_changes(
    value: str | bytes | Mapping[str, Any] | None, limits: LoaderLimits | None = None
) -> Changes:
    if isinstance(value, Mapping):
        return dict(value)
    try:
        loaded = yaml.safe_load(value or "{}")
    except yaml.YAMLError as exc:
        raise MalformedYaml(str(exc)) from exc
    if not isinstance(loaded, dict):
        raise NotAMapping(type(loaded).__name__)
    return loaded
