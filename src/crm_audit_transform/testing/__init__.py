"""In-memory implementations of every port, for tests — ours and those of users of the library.

They are real adapters (not mocks): each keeps its data in dicts and honours the port's contract.
``testing.golden`` runs a mapping configuration over the shipped audited 5.8.0 corpus for snapshot tests.
"""

from __future__ import annotations

from .enrichment import InMemoryEnrichmentStore
from .golden import (
    CorpusTenant,
    corpus_tenant,
    corpus_tenants,
    log_snapshot,
    outcome_snapshot,
    snapshot_of,
    transform_corpus,
)
from .lookups import (
    InMemoryContactDirectory,
    InMemoryEntityDirectory,
    InMemoryPeopleCounter,
    InMemorySsoDirectory,
    InMemoryUserDirectory,
)
from .stores import (
    FixedClock,
    InMemoryActivityLogStore,
    InMemoryAuditSource,
    InMemoryIndexState,
    InMemoryJobStore,
    StaticFeatureFlags,
)
from .verification import InMemoryMigratedLogReader

__all__ = [
    "CorpusTenant",
    "FixedClock",
    "InMemoryActivityLogStore",
    "InMemoryAuditSource",
    "InMemoryContactDirectory",
    "InMemoryEnrichmentStore",
    "InMemoryEntityDirectory",
    "InMemoryIndexState",
    "InMemoryJobStore",
    "InMemoryMigratedLogReader",
    "InMemoryPeopleCounter",
    "InMemorySsoDirectory",
    "InMemoryUserDirectory",
    "StaticFeatureFlags",
    "corpus_tenant",
    "corpus_tenants",
    "log_snapshot",
    "outcome_snapshot",
    "snapshot_of",
    "transform_corpus",
]
