"""The rules the Transformer runs, one small module each (see docs/mapping.md).

A stage of your own returns a ``Rejection`` or sets a ``MappedCategory``; both are exported from
``crm_audit_transform`` itself. The rule classes are internal: build a chain with ``RuleChain``.
"""

from __future__ import annotations

from .category import MappedCategory
from .verdict import Rejection

__all__ = [
    "MappedCategory",
    "Rejection",
]
