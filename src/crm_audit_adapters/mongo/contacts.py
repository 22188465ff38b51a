"""``contacts``: CDP contacts by CRM person id, always within one company (never cross-tenant).

Both queries lead with ``company_sso_id`` and ``crm_data.id``, the keys of ``idx_company_crm_data_id``.

A directory built with ``at`` (where its server and collection are: ``ContactsAt``) can be copied
to a page pool's worker process (``worker_copy``), which opens a client of its own at its first
query and closes it with ``close``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection as Ids
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from attrs import field, frozen
from bson import ObjectId
from bson.codec_options import DatetimeConversion
from bson.datetime_ms import DatetimeMS

from crm_audit_transform.domain import Contact
from crm_audit_transform.numerals import as_id

from .bson_values import INT64_MAX, INT64_MIN, from_bson_datetime
from .contact_ids import contact_id_text
from .documents_types import Document, MongoCollection, MongoDatabase, ReadDocument
from .names import CollectionNames
from .retry import DEFAULT_RETRY, RetryPolicy, call_with_retry

if TYPE_CHECKING:
    from pymongo import MongoClient

__all__ = ["ContactsAt", "MongoContactDirectory"]

_PROJECTION = {"_id": 1, "company_sso_id": 1, "crm_data.id": 1, "created_at": 1}


@frozen
class ContactsAt:
    """Where a worker process finds the contacts: the server's ``uri`` (it may hold a password: it
    is kept out of ``repr`` and crosses only the pipe to the run's own worker), the database and
    the collection."""

    uri: str = field(repr=False)
    database: str
    collection: str


class MongoContactDirectory:
    """``ports.ContactDirectory``: one query per page of person ids."""

    __slots__ = ("_at", "_client", "_collection", "_retry")

    def __init__(
        self, collection: MongoCollection, *, retry: RetryPolicy | None = None, at: ContactsAt | None = None
    ) -> None:
        self._collection: MongoCollection | None = collection
        self._retry = retry or DEFAULT_RETRY
        self._at = at
        self._client: MongoClient[Document] | None = None

    @classmethod
    def in_database(
        cls,
        db: MongoDatabase,
        names: CollectionNames | None = None,
        *,
        retry: RetryPolicy | None = None,
        uri: str | None = None,
    ) -> MongoContactDirectory:
        """The directory over ``db``'s contacts; with ``uri`` (the server ``db`` is on) it can be
        copied to a worker process (``worker_copy``)."""
        name = (names or CollectionNames()).contacts
        at = None if uri is None else ContactsAt(uri, db.name, name)
        return cls(_past_range_readable(db[name]), retry=retry, at=at)

    def __repr__(self) -> str:
        return "MongoContactDirectory()"

    def worker_copy(self) -> MongoContactDirectory | None:
        """This directory for a worker process (``ports.WorkerCopy``): it opens a client of its own
        at its first query; None without ``at`` (an injected client, mongomock)."""
        if self._at is None:
            return None
        copied = object.__new__(MongoContactDirectory)
        copied.__setstate__((self._at, self._retry))
        return copied

    def __getstate__(self) -> tuple[ContactsAt, RetryPolicy]:
        if self._at is None:
            raise TypeError("a MongoContactDirectory without ContactsAt cannot be sent to another process")
        return self._at, self._retry

    def __setstate__(self, state: tuple[ContactsAt, RetryPolicy]) -> None:
        self._at, self._retry = state
        self._collection = None
        self._client = None

    def close(self) -> None:
        """Close the client this directory opened itself (a worker's copy); none otherwise."""
        client, self._client = self._client, None
        if client is not None:
            self._collection = None  # opened again at the next query
            client.close()

    def _contacts(self) -> MongoCollection:
        if self._collection is None:
            # The runner's client options (aware datetimes; a 10 s server selection unless the URI
            # sets one), not pymongo's defaults: a worker waits for a down server as the runner does.
            from ..bootstrap.mongo_client import mongo_client_for

            assert self._at is not None  # a directory has its collection, or where to open it
            self._client = mongo_client_for(self._at.uri)
            self._collection = _past_range_readable(self._client[self._at.database][self._at.collection])
        return self._collection

    def contacts_by_crm_ids(self, company_sso_id: str, crm_person_ids: Ids[int]) -> Mapping[int, Contact]:
        """Contacts keyed by CRM person id; ids with no contact are absent.

        ``crm_data.id`` is matched as a number and as its decimal string, since both shapes occur in
        CDP data. When two contacts of a company carry the same person id, the first by ``_id``
        (the earliest inserted) wins, so the answer is stable from page to page. An id outside
        BSON's 64-bit integers (a ``crm_person_id`` in a row's comment or changes, which the CRM's
        ``bigint`` keys never reach) names no contact and is not asked: pymongo cannot encode it,
        and one such row made every read of its page fail (``OverflowError``).
        """
        wanted = sorted({person for person in map(int, crm_person_ids) if person in _INT64})
        if not wanted:
            return {}
        query = {
            "company_sso_id": company_sso_id,
            "crm_data.id": {"$in": [*wanted, *(str(i) for i in wanted)]},
        }

        def fetch(_: int) -> list[Document]:
            return list(self._contacts().find(query, _PROJECTION, sort=[("_id", 1)]))

        found: dict[int, Contact] = {}
        for doc in call_with_retry(fetch, self._retry, "find contacts by crm_data.id"):
            contact = _contact(doc, company_sso_id)
            if contact is not None and contact.crm_person_id not in found:
                found[contact.crm_person_id] = contact
        return found


_INT64: Final = range(INT64_MIN, INT64_MAX + 1)
_EARLIEST: Final = dt.datetime.min.replace(tzinfo=dt.UTC)
_LATEST: Final = dt.datetime.max.replace(tzinfo=dt.UTC)


def _past_range_readable(collection: MongoCollection) -> MongoCollection:
    """The collection, decoding a BSON date past ``datetime``'s years 1-9999 as ``DatetimeMS``.

    pymongo's default raises ``InvalidBSON`` for the whole reply, so one contact's bogus
    ``created_at`` stopped every page naming any person of that query. mongomock has no such date
    (nor the option), so its collection is used as it is.
    """
    try:
        options = collection.codec_options.with_options(datetime_conversion=DatetimeConversion.DATETIME_AUTO)
        return collection.with_options(codec_options=options)
    except NotImplementedError:  # mongomock
        return collection


def _contact(doc: ReadDocument, company_sso_id: str) -> Contact | None:
    """A contact, or None when its person id, its sync time or its ``_id``'s text cannot be read.

    The ``_id``'s text is ``contact_id_text``: an ``_id`` with no text a CDP reader matches (a binary
    other than a UUID, a double, …) finds no contact, where ``str()`` gave ``b'…'`` as customer_id.
    """
    crm_data = doc.get("crm_data")
    person_id = _person_id(crm_data.get("id") if isinstance(crm_data, Mapping) else None)
    created_at = _created_at(doc)
    contact_id = contact_id_text(doc.get("_id"))
    if person_id is None or created_at is None or contact_id is None:
        return None
    return Contact(contact_id, company_sso_id, person_id, created_at)


def _person_id(raw: object) -> int | None:
    # A double that holds an integer is how some writers store ids; everything else is as_id's rule.
    if isinstance(raw, float) and raw.is_integer():
        return as_id(int(raw))
    return as_id(raw)


def _created_at(doc: ReadDocument) -> dt.datetime | None:
    # The sync watermark: created_at, else the insertion time an ObjectId carries.
    value = doc.get("created_at")
    if isinstance(value, dt.datetime):
        return from_bson_datetime(value)
    if isinstance(value, DatetimeMS):  # past years 1-9999: the end of the range, which compares alike
        return _EARLIEST if int(value) < 0 else _LATEST
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            parsed = None
        if parsed is not None:
            try:
                return from_bson_datetime(parsed)
            except OverflowError:  # leaves years 1-9999 once in UTC: that range's end, as for a $date
                return _EARLIEST if parsed.year == 1 else _LATEST
    object_id = doc.get("_id")
    if isinstance(object_id, ObjectId):
        return object_id.generation_time
    return None
