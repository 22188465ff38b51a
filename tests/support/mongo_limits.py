"""A collection that refuses, as MongoDB does, an update whose document would pass 16 MiB or nest
past 100 levels.

mongomock stores documents of any size and nesting, so an adapter's path for MongoDB's refusal is
never reached on it (the emulator's server script refuses as MongoDB does). ``SizeLimitedCollection``
wraps any collection (a real server's or the emulator's refuse by themselves) and answers
``update_one`` of a ``$set`` that would pass ``MAX_DOCUMENT_BYTES`` with the ``WriteError`` MongoDB
gives: code 17419, "Resulting document after update is larger than 16777216"; one that would nest
the document past ``MONGODB_MAX_NESTING`` levels with code 15 ``Overflow``, "Document exceeds
maximum nesting depth of 100". Everything else goes to the wrapped collection.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import bson
from pymongo.errors import WriteError

from crm_audit_adapters.mongo.bson_values import MONGODB_MAX_NESTING
from crm_audit_adapters.mongo.document_limits import MAX_DOCUMENT_BYTES
from crm_audit_transform.bson_nesting import nests_past

__all__ = ["OVERFLOW", "RESULT_TOO_LARGE", "SizeLimitedCollection"]

RESULT_TOO_LARGE = 17419
"""MongoDB's code for an update whose resulting document is larger than the limit."""
OVERFLOW = 15
"""MongoDB's code for an update whose resulting document nests past the limit."""


def _set_path(doc: dict[str, Any], path: str, value: object) -> bool:
    """Set ``path`` in ``doc``; False when a parent is not a document (MongoDB's ``PathNotViable``,
    which the wrapped collection answers)."""
    *parents, last = path.split(".")
    for part in parents:
        doc = doc.setdefault(part, {})
        if not isinstance(doc, dict):
            return False
    doc[last] = value
    return True


class SizeLimitedCollection:
    """``collection`` with MongoDB's refusal of a ``$set`` that makes a document too large."""

    def __init__(self, collection: Any) -> None:
        self._collection = collection
        self.refused = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._collection, name)

    def update_one(self, query: Mapping[str, Any], update: Mapping[str, Any], **kwargs: Any) -> Any:
        found = self._collection.find_one(query)
        if found is not None and set(update) == {"$set"}:
            after = copy.deepcopy(found)
            viable = all(_set_path(after, path, value) for path, value in update["$set"].items())
            if viable and len(bson.encode(after)) > MAX_DOCUMENT_BYTES:
                self.refused += 1
                message = f"Resulting document after update is larger than {MAX_DOCUMENT_BYTES}"
                details = {"index": 0, "code": RESULT_TOO_LARGE, "codeName": "Location17419"}
                raise WriteError(message, RESULT_TOO_LARGE, {**details, "errmsg": message})
            if viable and nests_past(after, MONGODB_MAX_NESTING):
                self.refused += 1
                message = f"Document exceeds maximum nesting depth of {MONGODB_MAX_NESTING}"
                details = {"index": 0, "code": OVERFLOW, "codeName": "Overflow"}
                raise WriteError(message, OVERFLOW, {**details, "errmsg": message})
        return self._collection.update_one(query, update, **kwargs)
