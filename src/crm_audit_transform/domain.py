"""Domain values: frozen, slotted attrs classes with no behaviour beyond what they mean.

Timestamps are timezone-aware UTC ``datetime`` values everywhere; converters at the edges (Mongo,
JSONL, HTTP) decide their wire form.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Final, Literal, TypeAlias

from attrs import field, frozen

from ._fast_init import fast_init
from .loading._jsonb import JsonbText
from .loading._omitted import OmittedChanges
from .loading._untranslatable import UntranslatableText
from .rules.verdict import shown_value
from .timestamps import as_utc
from .values import Value

SOURCE_TAG: Final = "crm_migration"
"""``source_tag`` of every log this library writes; rollback deletes exactly these."""

HELD_BY_ANOTHER_TOOL: Final = (
    f"the company's external_id is already held by a log whose source_tag is not {SOURCE_TAG!r} "
    "(another tool's): that log is left as it is and this record is not written"
)
"""A ``failed: write_error`` detail: the unique index refused the log for a key another tool's log
holds. Unlike a duplicate of our own log (a replay, counted as migrated), nothing of ours is stored."""

NO_EXTERNAL_ID: Final = "an activity log without external_id cannot be written idempotently"
"""A ``failed: write_error`` detail: every log store refuses a log whose ``external_id`` is empty.
Idempotency is the unique ``(company_sso_id, external_id)`` (mission rule 8), and a log without one is
a native log's shape, which rollback must never take for ours (rule 7)."""


UserId: TypeAlias = int | str
"""A CRM user id as audited stores it: an integer, or an opaque string such as a UUID
(``--audited-user-id-column-type uuid``). Compared as is, never converted."""


def _utc(value: dt.datetime, name: str) -> dt.datetime:
    """A timestamp field's value in UTC; a ``TypeError`` for anything but a ``datetime``, a
    ``ValueError`` for a naive one, each naming the field ``name`` (``Contact.created_at``), which
    ``as_utc``'s own errors do not."""
    if type(value) is dt.datetime and value.tzinfo is dt.UTC:  # as_utc's common case, one call less
        return value
    if not isinstance(value, dt.datetime):
        raise TypeError(f"{name} must be a timezone-aware datetime, got {shown_value(value)}")
    try:
        return as_utc(value)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


# One named converter per field: attrs' mypy plugin takes only named functions as converters.
def _contact_created_at(value: dt.datetime) -> dt.datetime:
    return _utc(value, "Contact.created_at")


def _log_timestamp(value: dt.datetime) -> dt.datetime:
    return _utc(value, "ActivityLog.timestamp")


def _oldest_created_at(value: dt.datetime) -> dt.datetime:
    return _utc(value, "ScopeBounds.oldest_created_at")


@frozen
class UnreadableTime:
    """A ``created_at`` the source holds but a ``datetime`` cannot: PostgreSQL's ``infinity`` and
    ``-infinity``, a year before 1 or after 9999. ``text`` is the source's own spelling of it.

    An ``AuditRow`` carrying one fails as ``invalid_audit_row`` (naming ``text``) before any rule
    sees it, instead of the source's read failing for the whole page.
    """

    text: str

    def __str__(self) -> str:
        return self.text


@frozen
class NotRead:
    """A text column's value its source did not read: ``size`` bytes, more than the ``limit`` in bytes
    it reads of ``column`` (the PostgreSQL source's, ``crm_postgres.text_columns``: a value of up
    to 1 GB fetched whole was a halt of its page).

    In an ``AuditRow`` where a ``str`` is due, so the transformer fails the row as
    ``invalid_audit_row``, saying so with the size; its ``repr`` says why too, without any of the
    value.
    """

    column: str
    size: int
    limit: int

    def __repr__(self) -> str:
        return f"<not read: {self.size} bytes, over the {self.column} limit of {self.limit} bytes>"


def _optional_utc(value: dt.datetime | UnreadableTime | None) -> dt.datetime | UnreadableTime | None:
    """An aware ``created_at`` in UTC; any other value as it is — ``None``, an ``UnreadableTime``, a
    naive ``datetime``, a value of another type (ISO text, bytes) — for the transformer to fail the
    row on (``invalid_audit_row``, ``missing_created_at``), as it does a wrong-typed value of any
    other column: an ``AuditRow`` is built from whatever a source read, and one row's bad value
    must not raise where the source builds its page."""
    if value is None or (type(value) is dt.datetime and value.tzinfo is dt.UTC):  # the common case
        return value
    if isinstance(value, dt.datetime) and value.utcoffset() is not None:
        try:
            return as_utc(value)
        except OverflowError:  # before year 1 once in UTC: fails as a created_at that is not UTC
            return value
    return value


@frozen
class AuditRow:
    """One row of a tenant's ``audits`` table, as written by audited 5.8.0.

    ``audited_changes`` is the raw column: YAML text (``str``/``bytes``) from a text column, the
    decoded object from a jsonb column or its text as ``JsonbText``, the size of a value too large
    to fetch (``OmittedChanges``), a value that is no text in its source's encoding
    (``UntranslatableText``), or ``None``. It is loaded by
    the transformer, so a bad value becomes that row's failure instead of an exception in the
    extractor.
    """

    tenant: str
    id: int
    auditable_type: str
    auditable_id: int | None
    action: str
    audited_changes: str | bytes | Mapping[str, Any] | JsonbText | OmittedChanges | UntranslatableText | None
    created_at: dt.datetime | UnreadableTime | None = field(converter=_optional_utc)
    """None for a NULL ``created_at``: such a row fails as ``missing_created_at``; an
    ``UnreadableTime`` (``infinity``, a year past 9999) fails it as ``invalid_audit_row``, as does a
    naive ``datetime`` or a value of another type (ISO text is never parsed), kept as given. An aware
    ``datetime`` is converted to UTC."""
    associated_id: int | None = None
    associated_type: str | None = None
    user_id: UserId | None = None
    user_type: str | None = None
    username: str | None = None
    version: int | None = None
    comment: str | None = None
    remote_address: str | None = None
    request_uuid: str | None = None


@frozen
class CrmUser:
    """A CRM ``users`` row (soft-deleted ones included); ``id`` an int or an opaque string."""

    id: UserId
    email: str | None
    full_name: str | None = None
    deleted_at: dt.datetime | None = None


@frozen
class Contact:
    """A CDP contact as far as the migration needs it: its id, owner, CRM person id, sync time."""

    id: str
    company_sso_id: str
    crm_person_id: int
    created_at: dt.datetime = field(converter=_contact_created_at)


ActorKind: TypeAlias = Literal["user", "deleted_user", "system"]


@frozen
class Actor:
    """Who made the change, as the CDP shows it: an SSO user, a deleted CRM user, or the system."""

    kind: ActorKind
    name: str
    sso_id: str | None = None


@frozen
class FieldChange:
    """One column's change: ``from_`` is ``None`` on create, ``to`` is ``None`` on destroy."""

    field: str
    label: str
    from_: Value
    to: Value


@frozen
class ActivityLog:
    """A CDP ``activity_logs`` document before encoding; ``external_id`` makes the write idempotent."""

    company_sso_id: str
    customer_id: str
    category: str
    action: str
    actor: Actor
    changes: tuple[FieldChange, ...]
    timestamp: dt.datetime = field(converter=_log_timestamp)
    external_id: str = ""
    source_tag: str = SOURCE_TAG
    metadata: Mapping[str, Value] = field(factory=dict)


LOG_DOCUMENT_KEYS: Final = (
    "company_sso_id",
    "customer_id",
    "category",
    "action",
    "actor",
    "attributes",
    "timestamp",
    "external_id",
    "source_tag",
    "metadata",
)
"""The keys of an ``ActivityLog``'s document (the plan's ``activity_logs`` shape), in the order every
writer puts them: MongoDB's (``crm_audit_adapters.mongo.documents``), the JSONL sink's line (the
same document as relaxed Extended JSON) and the in-memory stores' (``testing``). ``external_id`` is
left out when empty. ``/migrate`` takes a record of these keys and no other, and reads each of them
(``crm_audit_adapters.http.records``): one list, so a new key is not written by one and refused, or
taken and dropped, by the other (tests/unit/test_log_document_keys.py)."""
ACTOR_DOCUMENT_KEYS: Final = ("type", "name", "id")
"""The keys of a log's ``actor`` (``Actor``: ``kind``, ``name``, ``sso_id``); ``id`` only when set."""
ATTRIBUTE_DOCUMENT_KEYS: Final = ("field", "label", "from", "to")
"""The keys of each of a log's ``attributes``, one ``FieldChange`` (``field``, ``label``, ``from_``,
``to``)."""


@frozen
class EncodedLog:
    """An ``ActivityLog`` already encoded in its writer's own format, ahead of the write.

    Made by a writer's ``log_encoder`` (``ports.EncodingLogWriter``) where the log was transformed —
    a ``--workers`` process — so that the process that writes receives bytes, not the log's objects.
    The core reads only the fields a write and its counts need; ``data`` is opaque to it and only
    the writer whose ``encoding`` it is writes it, as it is. ``problem`` (``data`` then empty) says
    why that writer would refuse the log (it cannot be encoded, or is too large): the write reports
    it ``failed: write_error`` as it reports the log itself. ``named``: the log's metadata holds
    ``linked_entity_name``.
    """

    company_sso_id: str
    external_id: str
    action: str
    encoding: str
    data: bytes
    problem: str = ""
    source_tag: str = SOURCE_TAG
    named: bool = False


@frozen
class Migrated:
    """The row became ``log``: an ``ActivityLog``, or — from a pipeline that encodes in its workers
    (``ports.PagePipeline``) — the same log as its writer's ``EncodedLog``."""

    audit_id: int
    log: ActivityLog | EncodedLog


@frozen
class Skipped:
    """The row is understood and deliberately not written; ``reason`` is a ``reasons`` constant."""

    audit_id: int
    reason: str
    detail: str = ""


@frozen
class Failed:
    """The row could not be processed; it counts against the job's failure rate."""

    audit_id: int
    reason: str
    detail: str = ""


Outcome: TypeAlias = Migrated | Skipped | Failed
"""Exactly one per audit row: every record's fate is a value."""


WriteStatus: TypeAlias = Literal["inserted", "skipped", "failed"]


@frozen
class WriteResult:
    """What happened to one record of a written batch."""

    external_id: str
    status: WriteStatus
    reason: str = ""
    detail: str = ""


@frozen
class BatchResult:
    """What MigrateBatch did: counts and one ``WriteResult`` per record, in order."""

    inserted: int
    skipped: int
    failed: int
    results: tuple[WriteResult, ...]


@frozen
class EntityRef:
    """A CRM entity referenced by an association log; ``exists`` is false once it was deleted."""

    entity_type: str
    id: int
    name: str | None
    exists: bool = True


NO_TIME_KNOWN: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
"""``ScopeBounds.oldest_created_at`` when every in-scope row's ``created_at`` is NULL."""

ANY_TIME: Final = dt.datetime.min.replace(tzinfo=dt.UTC)
"""A cutoff no row is older than: a dry run's job, which reads every in-scope row (``new_job``)."""


@frozen
class ScopeBounds:
    """The in-scope audits of a tenant from a cutoff on: for the cursor's start and for progress."""

    min_id: int
    max_id: int
    oldest_created_at: dt.datetime = field(converter=_oldest_created_at)
    count: int = 0


# The values built for every row get an __init__ that sets their slots directly (_fast_init):
# the same frozen objects, built in less than half the time.
for _built_per_row in (
    AuditRow,
    CrmUser,
    Contact,
    Actor,
    FieldChange,
    ActivityLog,
    Migrated,
    Skipped,
    Failed,
    WriteResult,
):
    fast_init(_built_per_row)
