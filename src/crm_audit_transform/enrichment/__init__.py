"""Association enrichment: fill the referent keys association logs lack, in place, never guessing.

See docs/enrichment.md for the match key, its collision guard, the window and the apply rules.
The names exported here are the values the ``EnrichmentStore`` port takes and returns and what
``MigrationService.enrich`` reports; the planner's functions (``planner``, ``enrich``) are internal.
"""

from __future__ import annotations

from .model import (
    ASSOCIATION_ACTIONS,
    DEFAULT_MATCH_WINDOW,
    DELETED_REFERENCE,
    ENRICHMENT_KEYS,
    EnrichmentPlan,
    EnrichmentSkip,
    MatchKey,
    Patch,
    StoredLog,
    Target,
)

__all__ = [
    "ASSOCIATION_ACTIONS",
    "DEFAULT_MATCH_WINDOW",
    "DELETED_REFERENCE",
    "ENRICHMENT_KEYS",
    "EnrichmentPlan",
    "EnrichmentSkip",
    "MatchKey",
    "Patch",
    "StoredLog",
    "Target",
]
