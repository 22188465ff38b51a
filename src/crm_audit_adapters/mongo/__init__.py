"""The CDP side in MongoDB (pymongo): activity logs, contacts, migration jobs, index migrations.

Every store takes a pymongo ``Collection`` (mongomock's works too) or is built from a ``Database``
with ``in_database(db, names)``; nothing connects at import. Documents go through the one converter
in ``documents``. See docs/mongodb.md.
"""

from __future__ import annotations

from .activity_logs import MongoActivityLogStore
from .contacts import MongoContactDirectory
from .documents import decode_activity_log, decode_job, encode_activity_log, encode_job, make_converter
from .indexes import MIGRATION, apply_migration, index_names, load_migration, missing_indexes
from .jobs import MongoJobStore
from .names import CollectionNames
from .retry import RetryPolicy

__all__ = [
    "MIGRATION",
    "CollectionNames",
    "MongoActivityLogStore",
    "MongoContactDirectory",
    "MongoJobStore",
    "RetryPolicy",
    "apply_migration",
    "decode_activity_log",
    "decode_job",
    "encode_activity_log",
    "encode_job",
    "index_names",
    "load_migration",
    "make_converter",
    "missing_indexes",
]
