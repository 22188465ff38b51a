"""The CDP side in MongoDB (pymongo): activity logs, contacts, migration jobs, index migrations.

Every store takes a pymongo ``Collection`` (mongomock's works too) or is built from a ``Database``
with ``in_database(db, names)``; nothing connects at import. Documents go through the one converter
in ``documents``. See docs/mongodb.md.
"""

from __future__ import annotations

from .activity_logs import MongoActivityLogStore
from .contacts import MongoContactDirectory
from .documents import decode_activity_log, decode_job, encode_activity_log, encode_job, make_converter
from .indexes import (
    MIGRATION,
    MIGRATION_VERSION,
    IndexReport,
    MongoIndexState,
    applied_version,
    apply_migration,
    index_names,
    index_status,
    load_migration,
    missing_indexes,
)
from .jobs import MongoJobStore
from .names import CollectionNames
from .retry import RetryPolicy

__all__ = [
    "MIGRATION",
    "MIGRATION_VERSION",
    "CollectionNames",
    "IndexReport",
    "MongoActivityLogStore",
    "MongoContactDirectory",
    "MongoIndexState",
    "MongoJobStore",
    "RetryPolicy",
    "applied_version",
    "apply_migration",
    "decode_activity_log",
    "decode_job",
    "encode_activity_log",
    "encode_job",
    "index_names",
    "index_status",
    "load_migration",
    "make_converter",
    "missing_indexes",
]
