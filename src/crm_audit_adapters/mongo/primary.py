"""The runner's stores read their own writes, so they read from the primary.

A URI may ask for reads from secondaries (``readPreference=secondaryPreferred``). The stores read
what they wrote moments before: a retried insert tells its own logs from older ones right after it,
a rollback counts what its deletes left, a job is read back to decide the next step. A secondary
lagging behind may not have those writes yet: a retry's own logs would count as skipped duplicates,
a finished job would read as running or absent. So their collections read from the primary; the
URI's choice stands for the client's other collections.
"""

from __future__ import annotations

from pymongo import ReadPreference
from pymongo.collection import Collection

from .documents_types import MongoCollection

__all__ = ["on_primary"]


def on_primary(collection: MongoCollection) -> MongoCollection:
    """``collection`` reading from the primary; as it is when it does already, or is not pymongo's
    (mongomock, test wrappers: one server)."""
    if isinstance(collection, Collection) and collection.read_preference != ReadPreference.PRIMARY:
        return collection.with_options(read_preference=ReadPreference.PRIMARY)
    return collection
