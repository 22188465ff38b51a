"""An in-memory ``MigratedLogReader`` over an ``InMemoryActivityLogStore``, for tests of verify.

Its wire form is canonical JSON text per owned field (``Decimal`` and dates tagged, bytes as hex,
NaN as JSON's ``NaN``), so like the real readers it compares forms, not decoded values.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from ..domain import SOURCE_TAG, ActivityLog
from ..enrichment.model import MatchKey, StoredLog, as_referent_id
from ..verification import MigratedDoc, run_metadata
from .enrichment import InMemoryEnrichmentStore
from .stores import InMemoryActivityLogStore

__all__ = ["InMemoryMigratedLogReader"]


def _tagged(value: object) -> Any:
    if isinstance(value, Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, dt.datetime):
        return {"$date": value.astimezone(dt.UTC).isoformat(timespec="milliseconds")}
    if isinstance(value, dt.date):
        return {"$day": value.isoformat()}
    if isinstance(value, bytes):
        return {"$bytes": value.hex()}
    raise TypeError(f"no JSON form for {type(value).__name__}")


def _form(value: object) -> str:
    return json.dumps(value, default=_tagged, ensure_ascii=False)


def _content_form(log: ActivityLog) -> dict[str, object]:
    """The owned fields of ``log`` as canonical JSON text, one string per field."""
    actor: dict[str, object] = {"type": log.actor.kind, "name": log.actor.name}
    if log.actor.sso_id:
        actor["id"] = log.actor.sso_id
    attributes = [{"field": c.field, "label": c.label, "from": c.from_, "to": c.to} for c in log.changes]
    return {
        "customer_id": _form(log.customer_id),
        "category": _form(log.category),
        "action": _form(log.action),
        "actor": _form(actor),
        "attributes": _form(attributes),
        "timestamp": _form(log.timestamp),
        "metadata": _form(run_metadata(log.metadata)),
    }


class InMemoryMigratedLogReader:
    """``ports.MigratedLogReader`` over the logs of an in-memory store (read at each call).

    A log's ``doc_id`` is its position in the store; live-feed logs keep the linked entity id at
    ``metadata.linked_entity_id``, as in ``InMemoryEnrichmentStore``.
    """

    __slots__ = ("_store",)

    def __init__(self, store: InMemoryActivityLogStore | InMemoryEnrichmentStore) -> None:
        self._store = store

    def migrated_logs(self, company_sso_id: str, external_ids: Collection[str]) -> Sequence[MigratedDoc]:
        wanted = set(external_ids)
        return [
            _doc(position, log)
            for position, log in enumerate(self._store.logs)
            if log.company_sso_id == company_sso_id and log.external_id in wanted
        ]

    def migrated_external_ids(self, company_sso_id: str) -> Iterable[str]:
        return sorted(
            log.external_id
            for log in self._store.logs
            if log.company_sso_id == company_sso_id and log.external_id and log.source_tag == SOURCE_TAG
        )

    def content_of(self, log: ActivityLog) -> Mapping[str, object]:
        return _content_form(log)

    @property
    def holds_live_feed(self) -> bool:
        """The store may hold live-feed logs (no ``external_id``)."""
        return True

    def live_feed_candidates(
        self, keys: Collection[MatchKey], window: dt.timedelta
    ) -> Mapping[MatchKey, Sequence[StoredLog]]:
        live = [
            StoredLog(
                doc_id=f"{position:012d}",
                company_sso_id=log.company_sso_id,
                customer_id=log.customer_id,
                category=log.category,
                action=log.action,
                timestamp=log.timestamp,
                metadata=log.metadata,
                entity_id=log.metadata.get("linked_entity_id"),
            )
            for position, log in enumerate(self._store.logs)
            if not log.external_id
        ]
        return {key: tuple(log for log in live if key.matches(log, window)) for key in keys}


def _doc(position: int, log: ActivityLog) -> MigratedDoc:
    person = as_referent_id(log.metadata.get("crm_person_id"))
    return MigratedDoc(
        doc_id=f"{position:012d}",
        external_id=log.external_id,
        company_sso_id=log.company_sso_id,
        customer_id=log.customer_id,
        category=log.category,
        action=log.action,
        timestamp=log.timestamp,
        source_tag=log.source_tag,
        content=_content_form(log),
        crm_person_id=person,
        linked_entity_id=as_referent_id(log.metadata.get("linked_entity_id")),
    )
