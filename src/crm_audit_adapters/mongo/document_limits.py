"""MongoDB's document size limit as the writers and verifiers check it, without the driver.

The JSONL sink (dry runs, ``--out``) checks the same size as ``MongoActivityLogStore`` and imports
this module, not ``activity_logs``: a dry run loads no MongoDB driver (docs/runner.md).
"""

from __future__ import annotations

from typing import Final

__all__ = ["ID_BYTES", "ID_ELEMENT", "MAX_DOCUMENT_BYTES", "too_large"]

MAX_DOCUMENT_BYTES: Final = 16 * 1024 * 1024
"""MongoDB's document size limit (``_id`` included); a larger log fails alone instead of failing its
batch."""

ID_ELEMENT: Final = b"\x07_id\x00"
"""An ObjectId element named ``_id``: type 0x07, the key, then the 12 bytes of the id."""
ID_BYTES: Final = len(ID_ELEMENT) + 12
"""What the ``_id`` element adds to a log's BSON (17 bytes): the size MongoDB checks is
``len(bson) + ID_BYTES``, whether the store sets the ``_id`` or ``mongoimport`` adds it."""


def too_large(size: int) -> str:
    """The reason a document of ``size`` bytes is not written (one wording for writer and verifier)."""
    return f"document of {size} bytes exceeds MongoDB's {MAX_DOCUMENT_BYTES}-byte limit"
