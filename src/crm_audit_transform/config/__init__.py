"""The mapping configuration (docs/mapping.md): attrs classes read from YAML with cattrs."""

from __future__ import annotations

from .model import (
    ActorConfig,
    ColumnsConfig,
    CommentConfig,
    LinkConfig,
    MappingConfig,
    StatusRule,
    TenantConfig,
    TypeMapping,
)
from .reading import load_config, load_default_config

__all__ = [
    "ActorConfig",
    "ColumnsConfig",
    "CommentConfig",
    "LinkConfig",
    "MappingConfig",
    "StatusRule",
    "TenantConfig",
    "TypeMapping",
    "load_config",
    "load_default_config",
]
