"""What pymongo hands over and takes: BSON documents, and collections and databases of them.

pymongo's own default document type is ``dict[str, Any]``: a field may hold any BSON type (str, int,
Int64, float, Decimal128, datetime, ObjectId, Binary, list, dict, None, …), so the adapters narrow
each field where they read it (``bson_values.decode_value``, ``_person_id``, …). This module is the
one place of the MongoDB adapter that names ``Any`` for a document: the driver's boundary.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:  # named for the type checker only: the document codecs run without pymongo loaded
    from pymongo.collection import Collection
    from pymongo.database import Database

Document: TypeAlias = dict[str, Any]
"""A BSON document as pymongo builds and returns it (also a filter, an update, a projection)."""

ReadDocument: TypeAlias = Mapping[str, Any]
"""A document only read from: what a decoder takes."""

MongoCollection: TypeAlias = "Collection[Document]"
MongoDatabase: TypeAlias = "Database[Document]"
