"""An in-memory ``MigratedLogReader`` over an ``InMemoryActivityLogStore``, for tests of verify.

Its wire form is canonical JSON text per field of the log's document (``Decimal`` and dates tagged,
bytes as hex, NaN as JSON's ``NaN``; a ``metadata`` key one entry each, ``metadata.<key>``), so like the
real readers it compares forms, not decoded values. A plain dict of the data that looks like a tag
(one key starting with ``$``) is wrapped in ``$literal``, and one with keys that are not strings is
``$hash`` pairs, so ``{"$decimal": "12.50"}`` never reads as ``Decimal("12.50")`` nor ``{1: x}`` as
``{"1": x}``. The fields are the ``ActivityLog``'s own, as the sink names them: one the log comes to
have is compared without a change here.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Final

import attrs

from ..domain import SOURCE_TAG, ActivityLog
from ..enrichment.model import MatchKey, StoredLog, as_referent_id
from ..verification import METADATA_PREFIX, MigratedDoc
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


_SCALARS: Final = frozenset({str, int, float, bool, type(None)})
"""The types ``_plain`` gives back as they are, looked up first: most values of a log are one (a
Mapping check is an ABC's, the slowest of ``_plain``'s, and verify's tests make ~50k a run)."""


def _plain(value: object) -> Any:
    """``value`` with its dicts made unambiguous for ``json.dumps`` (tags come from ``_tagged``)."""
    if type(value) in _SCALARS:
        return value
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, Mapping):
        if not all(isinstance(key, str) for key in value):
            return {"$hash": [[_plain(key), _plain(item)] for key, item in value.items()]}
        plain = {key: _plain(item) for key, item in value.items()}
        if len(plain) == 1 and next(iter(plain)).startswith("$"):
            return {"$literal": plain}
        return plain
    return value


_ENCODER: Final = json.JSONEncoder(default=_tagged, ensure_ascii=False)
"""``json.dumps(..., default=_tagged, ensure_ascii=False)``'s encoder, made once: ``dumps`` makes one a
call when given any argument."""


def _form(value: object) -> str:
    return _ENCODER.encode(_plain(value))


_FIELDS: Final = tuple(attrs.fields_dict(ActivityLog))
"""``ActivityLog``'s fields, in their order."""
_DOCUMENT_NAMES: Final = {"changes": "attributes"}
"""An ``ActivityLog`` field whose document field has another name."""


def _content_form(log: ActivityLog) -> dict[str, object]:
    """Every field of ``log``'s document as canonical JSON text, one string per field, in the sink's
    shape (``actor`` and ``attributes`` as documents, no empty ``external_id``, a ``metadata`` key
    an entry of its own)."""
    content: dict[str, object] = {}
    for name in _FIELDS:
        value: object = getattr(log, name)
        if name == "actor":
            actor: dict[str, object] = {"type": log.actor.kind, "name": log.actor.name}
            if log.actor.sso_id:
                actor["id"] = log.actor.sso_id
            value = actor
        elif name == "changes":
            value = [{"field": c.field, "label": c.label, "from": c.from_, "to": c.to} for c in log.changes]
        elif name == "external_id" and not value:
            continue  # the sink leaves an empty one out
        elif name == "metadata":
            for key, item in log.metadata.items():
                content[METADATA_PREFIX + key] = _form(item)
            continue
        content[_DOCUMENT_NAMES.get(name, name)] = _form(value)
    return content


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

    def tagged_external_ids(self, company_sso_id: str, prefix: str) -> Iterable[tuple[str, str]]:
        """``ports.TaggedExternalIds``: the ``crm_migration`` logs' ids, and the ids under ``prefix``
        of the others, with their tag, in id order."""
        return sorted(
            (log.external_id, log.source_tag)
            for log in self._store.logs
            if log.company_sso_id == company_sso_id
            and log.external_id
            and (log.source_tag == SOURCE_TAG or log.external_id.startswith(prefix))
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
