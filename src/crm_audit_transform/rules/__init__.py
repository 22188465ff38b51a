"""The rules the Transformer runs, one small module each (see docs/mapping.md)."""

from __future__ import annotations

from .actor import ActorResolver
from .category import CategoryMapper, MappedCategory
from .changes import ChangesExtractor
from .contact import ContactResolver
from .verdict import Rejection
from .watermark import SyncWatermark

__all__ = [
    "ActorResolver",
    "CategoryMapper",
    "ChangesExtractor",
    "ContactResolver",
    "MappedCategory",
    "Rejection",
    "SyncWatermark",
]
