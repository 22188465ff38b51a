"""The core's live-lease rule (``jobs.lease_is_live``) spelt as MongoDB filters: one builder for the
job store's lease writes and fences and for ``indexes down``.

A lease lives at a *prefix* of the job document: ``""`` for the job's, ``"shards.1."`` for shard 1's
(a job's shards are a sub-document keyed by shard number, ``documents.encode_job``). It is live
when it has an owner and an expiry after now. "Now" is the server's ``$$NOW``, evaluated in an
``$expr``, unless a time is given: a store built with a ``Clock`` (mongomock, which does not
evaluate ``$$NOW``), where the same rule is a plain query.

In both spellings a missing owner or expiry counts as none: a missing field is below null, and null
below any string or date, in BSON order (``$expr``); ``$ne: null`` and ``$gt: date`` do not match a
missing field (query).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Final

from .bson_values import to_bson_datetime
from .documents_types import Document

__all__ = [
    "ANY_LIVE_ON_THE_SERVER",
    "any_live",
    "job_prefixes",
    "live_expr",
    "none_live",
    "not_live",
]

_NOW: Final = "$$NOW"


def job_prefixes(shards: int) -> list[str]:
    """The job's lease and those of its ``shards`` (their number: fixed when the job is triggered)."""
    return ["", *(f"shards.{n}." for n in range(shards))]


def live_expr(path: str) -> Document:
    """An aggregation expression: the lease at field path ``path`` (``"$"``, ``"$shards.1."``,
    ``"$$s.v."``) is live on the server's ``$$NOW``."""
    owner = {"$ifNull": [f"{path}lease_owner", None]}
    return {"$and": [{"$gt": [owner, None]}, {"$gt": [f"{path}lease_expires_at", _NOW]}]}


def _live_query(prefix: str, now: dt.datetime) -> Document:
    expiry = to_bson_datetime(now)
    return {f"{prefix}lease_owner": {"$ne": None}, f"{prefix}lease_expires_at": {"$gt": expiry}}


def any_live(prefixes: Sequence[str], now: dt.datetime | None) -> Document:
    """A filter: one of the leases at ``prefixes`` is live — at ``now``, or on ``$$NOW`` when None."""
    if now is None:
        return {"$expr": {"$or": [live_expr(f"${at}") for at in prefixes]}}
    return {"$or": [_live_query(at, now) for at in prefixes]}


def none_live(prefixes: Sequence[str], now: dt.datetime | None) -> Document:
    """A filter: no lease at ``prefixes`` is live (``any_live``'s complement)."""
    if now is None:
        either = {"$or": [live_expr(f"${at}") for at in prefixes]}
        return {"$expr": {"$eq": [either, False]}}
    return {"$nor": [_live_query(at, now) for at in prefixes]}


def not_live(prefix: str, now: dt.datetime | None) -> Document:
    """A filter: the lease at ``prefix`` is not live (free, or expired): a lease write may take it."""
    return none_live([prefix], now)


ANY_LIVE_ON_THE_SERVER: Final[Document] = {
    "$or": [
        live_expr("$"),
        {
            "$anyElementTrue": [
                {
                    "$map": {
                        "input": {"$objectToArray": {"$ifNull": ["$shards", {}]}},
                        "as": "s",
                        "in": live_expr("$$s.v."),
                    }
                }
            ]
        },
    ]
}
"""``$expr``: the job's lease or one of its shards' (however many it has) is live on ``$$NOW``."""
