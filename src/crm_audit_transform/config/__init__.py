"""The mapping configuration (docs/mapping.md): attrs classes read from YAML with cattrs.

``MappingConfig``, ``load_config`` and ``load_default_config`` are public through
``crm_audit_transform``; the nested section classes live in ``config.model``.
"""

from __future__ import annotations

from .model import MappingConfig
from .reading import load_config, load_default_config

__all__ = [
    "MappingConfig",
    "load_config",
    "load_default_config",
]
