"""The CDP side in MongoDB (pymongo): activity logs, contacts, migration jobs, index migrations.

Every store takes a pymongo ``Collection`` (mongomock's works too) or is built from a ``Database``
with ``in_database(db, names)``; nothing connects at import, and the names below are imported when
first used. Documents go through the one converter in ``documents``. See docs/mongodb.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
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

_HOMES: Final = {
    "MongoActivityLogStore": "activity_logs",
    "MongoContactDirectory": "contacts",
    **dict.fromkeys(
        ("decode_activity_log", "decode_job", "encode_activity_log", "encode_job", "make_converter"),
        "documents",
    ),
    **dict.fromkeys(
        (
            "MIGRATION",
            "MIGRATION_VERSION",
            "IndexReport",
            "MongoIndexState",
            "applied_version",
            "apply_migration",
            "index_names",
            "index_status",
            "load_migration",
            "missing_indexes",
        ),
        "indexes",
    ),
    "MongoJobStore": "jobs",
    "CollectionNames": "names",
    "RetryPolicy": "retry",
}
"""Each exported name's module. The package imports them when first asked for (PEP 562): the dry
run's codecs (``bson_values``, ``documents``, ``extended_json``) then load without pymongo."""


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})


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
