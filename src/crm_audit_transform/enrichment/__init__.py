"""Association enrichment: fill the referent keys association logs lack, in place, never guessing.

See docs/enrichment.md for the match key, its collision guard, the window and the apply rules.
"""

from __future__ import annotations

from ..ports import EnrichmentStore
from ..reasons import ENRICH_CONFLICT
from .enrich import DEFAULT_SCAN_BATCH, EnrichPorts, enrich_existing, enrich_migrated, plan_enrichment
from .model import (
    ASSOCIATION_ACTIONS,
    DEFAULT_MATCH_WINDOW,
    DELETED_REFERENCE,
    ENRICHMENT_KEYS,
    ApplyResult,
    EnrichmentPlan,
    EnrichmentReport,
    EnrichmentSkip,
    MatchKey,
    Patch,
    StoredLog,
    Target,
    as_referent_id,
)
from .planner import (
    Claim,
    Referent,
    Resolution,
    Source,
    customers_wanted,
    external_ids_wanted,
    is_association,
    linked_entity_name,
    match_key_of,
    match_keys_wanted,
    plan_patches,
    referents_wanted,
    resolve_targets,
    source_ref,
)

__all__ = [
    "ASSOCIATION_ACTIONS",
    "DEFAULT_MATCH_WINDOW",
    "DEFAULT_SCAN_BATCH",
    "DELETED_REFERENCE",
    "ENRICHMENT_KEYS",
    "ENRICH_CONFLICT",
    "ApplyResult",
    "Claim",
    "EnrichPorts",
    "EnrichmentPlan",
    "EnrichmentReport",
    "EnrichmentSkip",
    "EnrichmentStore",
    "MatchKey",
    "Patch",
    "Referent",
    "Resolution",
    "Source",
    "StoredLog",
    "Target",
    "as_referent_id",
    "customers_wanted",
    "enrich_existing",
    "enrich_migrated",
    "external_ids_wanted",
    "is_association",
    "linked_entity_name",
    "match_key_of",
    "match_keys_wanted",
    "plan_enrichment",
    "plan_patches",
    "referents_wanted",
    "resolve_targets",
    "source_ref",
]
