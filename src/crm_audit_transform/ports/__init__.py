"""Ports: what the core asks of the outside world. Adapters implement them; the core never imports one.

Every lookup is batched: a step gathers the ids a page of rows needs and asks each port once.
In-memory implementations of every port ship in ``crm_audit_transform.testing``.
"""

from __future__ import annotations

from .audit_source import AuditEnds, AuditSource, AuditSplitter, RowsSetAside
from .audit_source import AuditPageIds as AuditPageIds
from .audit_source import GrowingSourceMarks as GrowingSourceMarks
from .audit_source import SourceMarks as SourceMarks
from .audit_source import SpanReader as SpanReader
from .enrichment_store import EnrichmentStore
from .guards import Clock, FeatureFlags, IndexState
from .job_store import JobStore, RunJobStore
from .log_stores import (
    ActivityLogStore,
    ActivityLogWriter,
    EncodingLogWriter,
    MigratedLogReader,
    MigratedLogs,
)
from .log_stores import LogEncoder as LogEncoder
from .log_stores import PackedLogWriter as PackedLogWriter
from .lookups import ContactDirectory, EntityDirectory, PeopleCounter, SsoDirectory, UserDirectory
from .lookups import WorkerCopy as WorkerCopy
from .pipelines import PagePipeline
from .pipelines import SpanPipeline as SpanPipeline
from .shard_runs import ShardEvent as ShardEvent
from .shard_runs import ShardLauncher as ShardLauncher

# The ``X as X`` names are importable from here but not in __all__: the public surface has a budget.
__all__ = [
    "ActivityLogStore",
    "ActivityLogWriter",
    "AuditEnds",
    "AuditSource",
    "AuditSplitter",
    "Clock",
    "ContactDirectory",
    "EncodingLogWriter",
    "EnrichmentStore",
    "EntityDirectory",
    "FeatureFlags",
    "IndexState",
    "JobStore",
    "MigratedLogReader",
    "MigratedLogs",
    "PagePipeline",
    "PeopleCounter",
    "RowsSetAside",
    "RunJobStore",
    "SsoDirectory",
    "UserDirectory",
]
