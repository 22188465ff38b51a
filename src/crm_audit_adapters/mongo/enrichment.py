"""``EnrichmentStore`` on MongoDB: find association logs, and patch their metadata in place.

This is the one in-place update path of an otherwise append-only ``activity_logs``. Every update:

* names the document by ``_id`` and pins ``company_sso_id``, ``customer_id``, ``category``,
  ``action`` and ``external_id`` (equal to ours, or ``$exists: false`` for a live-feed log) as the
  plan saw them, so it cannot land on any other log;
* is ``$set`` of ``metadata.<key>`` filtered on ``metadata.<key>`` still being absent, so a key a
  concurrent writer (or an earlier run) put there is never changed, and a second run sets nothing;
* never unsets, deletes or replaces anything.

A patch is applied as one update guarded on all its keys (one round trip per document); when that
update matches nothing because some key appeared meanwhile, each key is retried on its own guard,
so the others are still set and the counts stay exact.

A key that would take a log past MongoDB's 16 MiB document limit is counted ``keys_too_large``,
never as "already there": refused before it is sent when the key alone (with the fields the filter
pins) already passes the limit, else when MongoDB refuses the update for the document's size.

Any other write error of an update is either about that one log or not. A log the collection's
validator refuses (121 ``DocumentValidationFailure``), whose new key a unique index refuses (11000
``DuplicateKey``) or would nest past 100 levels (15 ``Overflow``: refused before it is sent or
encoded, whose walk of a deep enough value met ``RecursionError``) is counted ``keys_refused`` by
that name and the pass goes on; a log whose ``metadata`` is not a document (28 ``PathNotViable``)
is ``keys_left_alone``. Every other code
halts the pass: not authorized (13) is ``ConnectionRejected``, the rest ``StoreUnavailable`` naming
the code, because nothing says the next log would fare better (a permission, a server state, a
malformed update) and counting it would report a finished pass that set nothing. The updates are
conditional, so the next pass resumes where this one stopped.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Collection as Ids
from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Any, Final, TypeVar

import bson
from attrs import frozen
from bson import ObjectId, json_util
from pymongo.errors import WriteError

from crm_audit_transform.bson_nesting import nests_past
from crm_audit_transform.enrichment import (
    ASSOCIATION_ACTIONS,
    ENRICHMENT_KEYS,
    EnrichmentPlan,
    MatchKey,
    Patch,
    StoredLog,
)
from crm_audit_transform.enrichment.model import as_referent_id
from crm_audit_transform.enrichment_tally import EnrichmentTally

from .bson_values import decode_value, encode_value, from_bson_datetime
from .contact_ids import contact_id_text, stored_contact_ids
from .document_limits import MAX_DOCUMENT_BYTES
from .documents import METADATA_ROOM
from .documents_types import Document, MongoCollection, MongoDatabase, ReadDocument
from .names import CollectionNames
from .retry import DEFAULT_RETRY, RetryPolicy, call_with_retry

__all__ = ["DEFAULT_ENTITY_ID_PATH", "MongoEnrichmentStore", "decode_doc_id", "encode_doc_id"]

DEFAULT_ENTITY_ID_PATH = "metadata.linked_entity_id"
"""Where a live-feed log keeps the linked entity's id (the OQ-13 assumption; configurable)."""

_CHUNK = 200  # ids or keys per query: bounded $in / $or lists

_TOO_LARGE_CODES: Final = frozenset({10334, 17419})
"""MongoDB's codes for an update whose document would pass the size limit: ``BSONObjectTooLarge``
(10334) and "Resulting document after update is larger than 16777216" (17419, ``Location17419``)."""


_PATH_NOT_VIABLE: Final = 28
"""MongoDB's code for a ``$set`` of ``metadata.<key>`` on a log whose ``metadata`` is not a document."""

_OVERFLOW: Final = 15
"""MongoDB's code (``Overflow``) for an update whose document would nest past 100 levels."""

_REFUSED_FOR_THE_LOG: Final = {
    121: "DocumentValidationFailure",
    11000: "DuplicateKey",
    _OVERFLOW: "Overflow",
}
"""The write errors that concern the one log updated, counted ``keys_refused`` by these names: the
collection's validator refused the patched log, a unique index refused its new key, or the patched
log would nest past 100 levels (refused before it is sent: ``_apply_one``)."""


class _Update(Enum):
    SET = "set"
    NOT_MATCHED = "not matched"  # the key is there already, or the log changed or went
    TOO_LARGE = "too large"


@frozen
class _Refused:
    """An update MongoDB refused for this log alone (``_REFUSED_FOR_THE_LOG``)."""

    code: int
    name: str


def _too_large(exc: WriteError) -> bool:
    details = exc.details or {}
    return exc.code in _TOO_LARGE_CODES or details.get("codeName") == "BSONObjectTooLarge"


def _outcome_of(exc: WriteError) -> _Update | _Refused:
    """What a refused update counts as; the error itself (a halt) when it is not about this log."""
    if _too_large(exc):
        return _Update.TOO_LARGE
    if exc.code == _PATH_NOT_VIABLE:
        return _Update.NOT_MATCHED  # a metadata that is not a document cannot take a key
    name = _REFUSED_FOR_THE_LOG.get(exc.code or 0)
    if name is None:
        raise exc  # call_with_retry: ConnectionRejected (13) or StoreUnavailable
    return _Refused(exc.code or 0, name)


def _cannot_fit(pinned: Mapping[str, object], sets: Mapping[str, object]) -> bool:
    """True when a log holding ``sets`` past any doubt passes the limit: the patched document holds
    at least the pinned fields and a metadata with these keys, so this size is a lower bound."""
    fields = {name: value for name, value in pinned.items() if not isinstance(value, Mapping)}
    fields["metadata"] = {path.removeprefix("metadata."): value for path, value in sets.items()}
    return len(bson.encode(fields)) > MAX_DOCUMENT_BYTES


def encode_doc_id(value: object) -> str:
    """``_id`` as text: an ObjectId as its hex, anything else as ``~`` + Extended JSON."""
    if isinstance(value, ObjectId):
        return str(value)
    return "~" + json_util.dumps(value)


def decode_doc_id(text: str) -> object:
    """The ``_id`` that ``encode_doc_id`` turned into ``text``."""
    if text.startswith("~"):
        return json_util.loads(text[1:])
    return ObjectId(text)


_T = TypeVar("_T")


def _at_path(doc: ReadDocument, path: str) -> object:
    found: object = doc
    for part in path.split("."):
        if not isinstance(found, Mapping) or part not in found:
            return None
        found = found[part]
    return found


def _earlier(at: dt.datetime, window: dt.timedelta) -> dt.datetime:
    """``at - window``, or year 1's first instant when that is before it: a live feed's zero time
    (Go's ``time.Time{}``, 0001-01-01T00:00:00Z) is a date MongoDB stores and a key may hold."""
    try:
        return at - window
    except OverflowError:
        return dt.datetime.min.replace(tzinfo=dt.UTC)


def _later(at: dt.datetime, window: dt.timedelta) -> dt.datetime:
    """``at + window``, or year 9999's last instant when that is after it."""
    try:
        return at + window
    except OverflowError:
        return dt.datetime.max.replace(tzinfo=dt.UTC)


def _chunks(items: Sequence[_T]) -> list[Sequence[_T]]:
    return [items[i : i + _CHUNK] for i in range(0, len(items), _CHUNK)]


class MongoEnrichmentStore:
    """``EnrichmentStore`` over the CDP's ``activity_logs`` and ``contacts`` collections."""

    __slots__ = ("_contacts", "_entity_id_path", "_logs", "_projection", "_retry")

    def __init__(
        self,
        activity_logs: MongoCollection,
        contacts: MongoCollection | None = None,
        *,
        entity_id_path: str = DEFAULT_ENTITY_ID_PATH,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._logs = activity_logs
        self._contacts = contacts
        self._entity_id_path = entity_id_path
        self._retry = retry or DEFAULT_RETRY
        fields = ["company_sso_id", "customer_id", "category", "action", "timestamp", "external_id"]
        fields += [f"metadata.{key}" for key in ENRICHMENT_KEYS]
        self._projection = dict.fromkeys([*fields, entity_id_path], 1)

    @classmethod
    def in_database(
        cls,
        db: MongoDatabase,
        names: CollectionNames | None = None,
        *,
        entity_id_path: str = DEFAULT_ENTITY_ID_PATH,
        retry: RetryPolicy | None = None,
    ) -> MongoEnrichmentStore:
        names = names or CollectionNames()
        return cls(db[names.activity_logs], db[names.contacts], entity_id_path=entity_id_path, retry=retry)

    def _find(self, query: ReadDocument, what: str, **options: Any) -> list[StoredLog]:
        def fetch(_: int) -> list[Document]:
            return list(self._logs.find(query, self._projection, **options))

        docs = call_with_retry(fetch, self._retry, what)
        return [log for log in (self._stored(doc) for doc in docs) if log is not None]

    def _stored(self, doc: ReadDocument) -> StoredLog | None:
        """A document as enrichment sees it; None when it lacks what a log must have."""
        timestamp = doc.get("timestamp")
        names = ("company_sso_id", "customer_id", "category", "action")
        # Exactly str: a subclass (bson.Code, BSON JavaScript) is no text and cannot be hashed.
        if not isinstance(timestamp, dt.datetime) or not all(type(doc.get(n)) is str for n in names):
            return None
        metadata = doc.get("metadata")
        metadata = metadata if isinstance(metadata, Mapping) else {}
        external_id = doc.get("external_id")
        return StoredLog(
            doc_id=encode_doc_id(doc["_id"]),
            company_sso_id=doc["company_sso_id"],
            customer_id=doc["customer_id"],
            category=doc["category"],
            action=doc["action"],
            timestamp=from_bson_datetime(timestamp),
            external_id=external_id if type(external_id) is str else "",
            metadata={k: decode_value(metadata[k]) for k in ENRICHMENT_KEYS if k in metadata},
            entity_id=decode_value(_at_path(doc, self._entity_id_path)),
        )

    def logs_by_external_ids(self, company_sso_id: str, external_ids: Ids[str]) -> Mapping[str, StoredLog]:
        found: dict[str, StoredLog] = {}
        for chunk in _chunks(sorted(set(external_ids))):
            query = {"company_sso_id": company_sso_id, "external_id": {"$in": list(chunk)}}
            for log in self._find(query, "find activity logs by external_id"):
                found[log.external_id] = log
        return found

    def _key_clause(self, key: MatchKey, window: dt.timedelta) -> Document:
        # Live feeds may keep the id as a number or as text: ask for both, the planner re-checks.
        return {
            "company_sso_id": key.company_sso_id,
            "customer_id": key.customer_id,
            "category": key.category,
            "action": key.action,
            "external_id": {"$exists": False},
            self._entity_id_path: {"$in": [key.linked_entity_id, str(key.linked_entity_id)]},
            "timestamp": {"$gte": _earlier(key.timestamp, window), "$lte": _later(key.timestamp, window)},
        }

    def live_feed_candidates(
        self, keys: Ids[MatchKey], window: dt.timedelta
    ) -> Mapping[MatchKey, Sequence[StoredLog]]:
        ordered = sorted(set(keys), key=lambda k: (k.company_sso_id, k.customer_id, k.timestamp))
        found: dict[MatchKey, list[StoredLog]] = {key: [] for key in ordered}
        for chunk in _chunks(ordered):
            query = {"$or": [self._key_clause(key, window) for key in chunk]}
            for log in self._find(query, "find live-feed association logs"):
                for key in chunk:
                    if key.matches(log, window):
                        found[key].append(log)
        return {key: tuple(logs) for key, logs in found.items()}

    def crm_person_ids(self, company_sso_id: str, customer_ids: Ids[str]) -> Mapping[str, int]:
        """``crm_data.id`` of contacts by customer id: each ``_id`` whose text (``contact_id_text``:
        ObjectId hex, string, integer digits, UUID text) is the customer id."""
        if self._contacts is None:
            return {}
        contacts = self._contacts
        found: dict[str, int] = {}
        for chunk in _chunks(sorted(set(customer_ids))):
            ids: list[object] = [stored for c in chunk for stored in stored_contact_ids(c)]
            query = {"company_sso_id": company_sso_id, "_id": {"$in": ids}}

            def fetch(_: int, query: ReadDocument = query) -> list[Document]:
                return list(contacts.find(query, {"crm_data.id": 1}))

            for doc in call_with_retry(fetch, self._retry, "find contacts' crm_data.id"):
                crm_data = doc.get("crm_data")
                person = as_referent_id(crm_data.get("id") if isinstance(crm_data, Mapping) else None)
                contact_id = contact_id_text(doc.get("_id"))
                if person is not None and contact_id is not None:
                    found[contact_id] = person
        return found

    def association_logs_lacking(
        self, company_sso_id: str, *, after: str | None, limit: int
    ) -> Sequence[StoredLog]:
        query: Document = {
            "company_sso_id": company_sso_id,
            "action": {"$in": sorted(ASSOCIATION_ACTIONS)},
            "$or": [{f"metadata.{key}": {"$exists": False}} for key in ENRICHMENT_KEYS],
        }
        if after is not None:
            query["_id"] = {"$gt": decode_doc_id(after)}
        return self._find(query, "scan association logs", sort=[("_id", 1)], limit=limit)

    def _update(self, pinned: ReadDocument, guard: ReadDocument, sets: ReadDocument) -> _Update | _Refused:
        if _cannot_fit(pinned, sets):
            # Refused before it is sent: pymongo would raise ``DocumentTooLarge`` (not a server
            # error) for a value past the limit, and the server would refuse the document anyway.
            return _Update.TOO_LARGE

        def update(_: int) -> _Update | _Refused:
            try:
                modified = self._logs.update_one({**pinned, **guard}, {"$set": sets}).modified_count
            except WriteError as exc:
                return _outcome_of(exc)
            return _Update.SET if modified else _Update.NOT_MATCHED

        return call_with_retry(update, self._retry, "patch activity-log metadata")

    def _apply_one(self, patch: Patch) -> EnrichmentTally:
        target = patch.target
        pinned: Document = {
            "_id": decode_doc_id(target.doc_id),
            "company_sso_id": target.company_sso_id,
            "customer_id": target.customer_id,
            "category": target.category,
            "action": target.action,
            "external_id": target.external_id or {"$exists": False},
        }
        # A value that would nest the log past MongoDB's 100 levels is refused before it is encoded
        # (the encoder's walk of a deep enough one met RecursionError): code 15, for this key alone.
        deep = {key for key, value in patch.sets.items() if nests_past(value, METADATA_ROOM)}
        refused_deep = EnrichmentTally(keys_refused={_REFUSED_FOR_THE_LOG[_OVERFLOW]: len(deep)})
        sets = {
            f"metadata.{key}": encode_value(value) for key, value in patch.sets.items() if key not in deep
        }
        if not sets:
            return refused_deep
        absent = {path: {"$exists": False} for path in sets}
        if self._update(pinned, absent, sets) is _Update.SET:
            return EnrichmentTally(patched=1, keys_set=len(sets)) + refused_deep
        # Key by key: a key that appeared meanwhile, or one too large, leaves the others to be set.
        outcomes = [
            self._update(pinned, {path: {"$exists": False}}, {path: value}) for path, value in sets.items()
        ]
        keys_set = outcomes.count(_Update.SET)
        too_large = outcomes.count(_Update.TOO_LARGE)
        refused = Counter(outcome.name for outcome in outcomes if isinstance(outcome, _Refused))
        return (
            EnrichmentTally(
                patched=int(keys_set > 0),
                keys_set=keys_set,
                keys_left_alone=len(sets) - keys_set - too_large - refused.total(),
                keys_too_large=too_large,
                keys_refused=refused,
            )
            + refused_deep
        )

    def apply(self, plan: EnrichmentPlan) -> EnrichmentTally:
        result = EnrichmentTally()
        for patch in plan.patches:
            result += self._apply_one(patch)
        return result
