"""Lookup data from JSONL files: CRM users, CDP contacts, the SSO directory and CRM entities.

Each reader streams its file and builds the mapping a dry run hands to the in-memory ports
(``crm_audit_transform.testing``). A line that cannot be read raises ``FileFormatError`` with its
line number. Contacts may be plain JSON or ``mongoexport``'s Extended JSON (``$oid``, ``$date``,
``$numberLong``).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from typing import Final, TypeVar

import orjson
from bson import ObjectId
from bson.codec_options import DatetimeConversion
from bson.datetime_ms import DatetimeMS
from bson.json_util import JSONOptions

from crm_audit_transform.domain import Contact, CrmUser, EntityRef, UserId
from crm_audit_transform.numerals import parse_int

from ..mongo.contact_ids import contact_id_text
from ..mongo.extended_json_input import loads_extended_json
from .errors import FileFormatError, cut, shown
from .lines import (
    EARLIEST,
    LATEST,
    MAX_LINE_BYTES,
    MAX_MEMBER_VALUES,
    PathLike,
    TimeOutOfRange,
    decode,
    json_objects,
    kept_members,
    numbered_lines,
    parse_timestamp,
    time_past_range,
    too_many_values,
)
from .long_lines import MEMBER_BYTES, LongMember, MembersTooLong

__all__ = ["parse_contact_line", "read_contacts", "read_entities", "read_sso_directory", "read_users"]

USER_MEMBERS: Final = frozenset({"tenant", "id", "email", "full_name", "deleted_at"})
CONTACT_MEMBERS: Final = frozenset({"_id", "company_sso_id", "crm_data", "created_at"})
SSO_MEMBERS: Final = frozenset({"email", "sso_id", "company_sso_id"})
ENTITY_MEMBERS: Final = frozenset({"tenant", "type", "id", "name", "exists"})
"""The members each reader reads. A line past ``lines.MAX_LINE_BYTES`` is read for these only, never
held (``long_lines``): a long member the reader does not read (an export's extra column, a contact's
other fields) does not stop the read; a long one it reads does, naming the line, unless the line
is another tenant's (another company's, for the SSO directory), which is passed over as when held
whole."""

# A $date past datetime's years 1-9999 decodes as DatetimeMS (not an error), read as the range's end.
_EXTENDED_JSON = JSONOptions(
    tz_aware=True, tzinfo=dt.UTC, datetime_conversion=DatetimeConversion.DATETIME_AUTO
)

K = TypeVar("K")
V = TypeVar("V")


def read_users(
    path: PathLike, tenant: str | None = None, *, max_line_bytes: int = MAX_LINE_BYTES
) -> dict[UserId, CrmUser]:
    """``{id: CrmUser}`` from lines ``{tenant, id, email, full_name, deleted_at}``; ``id`` an int or a
    non-empty string (a UUID user id column).

    Given a tenant, other tenants' lines are passed over. Ids restart per tenant, so without one
    an id seen twice is an error rather than a silent overwrite. A ``deleted_at`` that ``datetime``
    cannot hold (``infinity``, a year past 9999, BC: ``lines.time_past_range``) is set, so the user
    reads as soft-deleted, as the PostgreSQL source reads it.

    A line past ``max_line_bytes`` (64 MiB) is read on in blocks for ``USER_MEMBERS`` alone; one
    whose ``email``, ``full_name``, ``id`` or ``deleted_at`` is past ``long_lines.MEMBER_BYTES``
    (1 MiB) raises ``MembersTooLong`` naming the line, unless it is another tenant's: passed over.
    """

    def user(record: Mapping[str, object]) -> CrmUser:
        deleted_at = _optional_str(record, "deleted_at")
        return CrmUser(
            id=_user_id(record),
            email=_optional_str(record, "email"),
            full_name=_optional_str(record, "full_name"),
            deleted_at=_timestamp(deleted_at) if deleted_at is not None else None,
        )

    return _collect(path, tenant, user, lambda value: value.id, USER_MEMBERS, max_line_bytes)


def read_entities(
    path: PathLike, tenant: str | None = None, *, max_line_bytes: int = MAX_LINE_BYTES
) -> dict[tuple[str, int], EntityRef]:
    """``{(type, id): EntityRef}`` from lines ``{tenant, type, id, name, exists}`` (entities.jsonl).

    ``type`` is the CRM class name (``Crm::Deal``), as the mapping configuration's ``entity_type``.
    A line past ``max_line_bytes`` fares as in ``read_users``, for ``ENTITY_MEMBERS``.
    """

    def entity(record: Mapping[str, object]) -> EntityRef:
        exists = record.get("exists", True)
        if not isinstance(exists, bool):
            raise _Bad(f"exists is not a boolean: {shown(exists)}")
        return EntityRef(
            entity_type=_str(record, "type"),
            id=_int(record, "id"),
            name=_optional_str(record, "name"),
            exists=exists,
        )

    return _collect(
        path, tenant, entity, lambda value: (value.entity_type, value.id), ENTITY_MEMBERS, max_line_bytes
    )


def read_sso_directory(
    path: PathLike, company_sso_id: str | None = None, *, max_line_bytes: int = MAX_LINE_BYTES
) -> dict[str, str]:
    """``{email: sso_id}`` from lines ``{email, sso_id}`` (optionally ``company_sso_id``).

    Lines naming another company are passed over when ``company_sso_id`` is given; emails are kept
    as written (matching them case-insensitively is the directory's business). A line past
    ``max_line_bytes`` fares as in ``read_users``, another company's passed over.
    """

    def entry(record: Mapping[str, object]) -> tuple[str, str]:
        return _str(record, "email"), _str(record, "sso_id")

    found: dict[str, str] = {}
    lines = json_objects(path, max_line_bytes=max_line_bytes, keep=SSO_MEMBERS, long_members=True)
    for number, record in lines:
        if _others(record, "company_sso_id", company_sso_id):
            continue
        _refuse_long(path, number, record, max_line_bytes)
        with _at(path, number):
            owner = _optional_str(record, "company_sso_id")
            if company_sso_id is not None and owner is not None and owner != company_sso_id:
                continue
            email, sso_id = entry(record)
            if found.setdefault(email, sso_id) != sso_id:
                raise _Bad("its email has two sso ids: an earlier line gave it another one")
    return found


def read_contacts(path: PathLike) -> list[Contact]:
    """Contacts from lines ``{_id, company_sso_id, crm_data: {id}, created_at}``.

    A ``created_at`` past ``datetime``'s years 1-9999 (text or ``$date``) is read as the end of the
    range it falls past: the sync watermark compares alike with every audit's time.

    Contacts without ``crm_data.id`` are native CDP contacts: the migration never looks them up,
    so they are not returned (Phase-A coverage counts only contacts with a CRM id as well).
    """
    contacts: list[Contact] = []
    for number, raw in numbered_lines(path, keep=CONTACT_MEMBERS):
        contact = parse_contact_line(path, number, raw)
        if contact is not None:
            contacts.append(contact)
    return contacts


def parse_contact_line(path: PathLike, number: int, raw: bytes) -> Contact | None:
    """The contact on one raw line of a contacts file; None for a blank line or a native contact.

    Shared by ``read_contacts`` and the file-backed directory, so both accept and refuse alike.
    """
    if not raw.strip():
        return None
    raw = _members_read(path, number, raw)
    plain = _plain_contact(raw)
    if plain is not None:
        return plain
    with _at(path, number):
        try:
            record = loads_extended_json(decode(path, number, raw), _EXTENDED_JSON)
        except ValueError as exc:  # not JSON, or a malformed $-operator ($oid, $binary, $date, …)
            raise _Bad(f"not (Extended) JSON: {cut(str(exc))}") from None
        except RecursionError:  # json_util recurses per level: a value nested past Python's limit
            raise _Bad("not (Extended) JSON that can be read: nested too deep") from None
        if not isinstance(record, dict):
            raise _Bad("expected a JSON object")
        crm_data = record.get("crm_data")
        crm_id = crm_data.get("id") if isinstance(crm_data, dict) else None
        if crm_id is None:
            return None
        if isinstance(crm_id, str):
            try:
                crm_id = parse_int(crm_id)  # strict: Arabic-Indic digits or "1_0" name no person
            except ValueError:
                raise _Bad(f"crm_data.id is not an integer: {shown(crm_id)}") from None
        if not isinstance(crm_id, int) or isinstance(crm_id, bool):
            raise _Bad(f"crm_data.id is not an integer: {shown(crm_id)}")
        if record.get("_id") is None:
            raise _Bad("_id is missing")
        created_at = _sync_time(record)
        if created_at is None:
            return None  # MongoContactDirectory finds no such contact: it has no time to compare
        contact_id = contact_id_text(record["_id"])
        if contact_id is None:
            return None  # nor one whose _id has no text a CDP reader matches (a non-UUID $binary, …)
        return Contact(
            id=contact_id,
            company_sso_id=_str(record, "company_sso_id"),
            crm_person_id=int(crm_id),
            created_at=created_at,
        )


def contact_id_of_line(path: PathLike, number: int, raw: bytes) -> object:
    """The ``_id`` of a contact line ``parse_contact_line`` accepted, as MongoDB holds it (an
    ``ObjectId`` for ``{"$oid": …}``, a ``str``, an ``int``, a UUID's ``Binary``): what two
    contacts of one person are ordered by (``mongo.contact_ids.contact_id_order``)."""
    raw = _members_read(path, number, raw)
    with _at(path, number):
        try:
            record = loads_extended_json(decode(path, number, raw), _EXTENDED_JSON)
        except (ValueError, RecursionError):
            raise _Bad("not (Extended) JSON that can be read") from None
    return record.get("_id") if isinstance(record, dict) else None


def _members_read(path: PathLike, number: int, raw: bytes) -> bytes:
    """The line, or when it holds more values than ``lines.MAX_MEMBER_VALUES`` (``too_many_values``)
    the short line of its ``CONTACT_MEMBERS`` (``lines.kept_members``): its other members are passed
    over undecoded, as a line past ``MAX_LINE_BYTES`` is (``long_lines``). Decoded whole, a 24 MB
    line of ``[],`` held 828 MiB. ``FileFormatError`` naming the line when the members read hold
    more values still: they cannot be read without decoding them (a ``crm_data`` of 100,001 values)."""
    if not too_many_values(raw):
        return raw
    with _at(path, number):
        try:
            short = kept_members(decode(path, number, raw), CONTACT_MEMBERS)
        except ValueError as exc:
            raise _Bad(f"not (Extended) JSON: {cut(str(exc))}") from None
        if too_many_values(short):
            raise _Bad(
                f"its {', '.join(sorted(CONTACT_MEMBERS))} hold more than {MAX_MEMBER_VALUES:,} values:"
                " too many to read"
            )
    return short.encode()


def _sync_time(record: Mapping[str, object]) -> dt.datetime | None:
    """A contact's sync watermark, as ``MongoContactDirectory`` reads it (``mongo.contacts``).

    ``created_at`` when it is a date (a ``$date`` past years 1-9999 is the end of the range it falls
    past) or a text ``datetime.fromisoformat`` reads (naive is UTC; one that leaves years 1-9999 once
    in UTC is that range's end); else the insertion time of an ObjectId ``_id`` (``{"$oid": …}``, or
    24 lowercase hex digits, as ``JsonlContactDirectory`` orders ids); else None.
    """
    value = record.get("created_at")
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, DatetimeMS):  # a $date past years 1-9999
        return EARLIEST if int(value) < 0 else LATEST
    if isinstance(value, str):
        try:
            return parse_timestamp(value)
        except TimeOutOfRange:  # it reads, so fromisoformat gives its year: 1 or 9999
            return EARLIEST if dt.datetime.fromisoformat(value).year == 1 else LATEST
        except ValueError:
            pass  # no time: MongoDB's directory falls back to the ObjectId, and so does this
    object_id = record.get("_id")
    if isinstance(object_id, str) and _OBJECT_ID.fullmatch(object_id):
        object_id = ObjectId(object_id)
    return object_id.generation_time if isinstance(object_id, ObjectId) else None


_OBJECT_ID: Final = re.compile(r"[0-9a-f]{24}")
_HEX = frozenset("0123456789abcdef")


def _plain_contact(raw: bytes) -> Contact | None:
    """The contact of a line in the usual shape, read by orjson; None: let ``json_util`` read it.

    The usual shape is ``_id`` a plain string or ``{"$oid": 24 lowercase hex digits}`` (what
    ``str(ObjectId)`` gives back), an integer ``crm_data.id`` within 64 bits, a ``created_at``
    string and a ``company_sso_id``, with no other Extended JSON operator on the line (``json_util``
    would interpret, or refuse, any ``"$…"`` key). Anything else, including every line that is not
    a contact at all, goes the general way with its own errors.
    """
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if type(record) is not dict:
        return None
    crm_data, created_at, company = (
        record.get("crm_data"),
        record.get("created_at"),
        record.get("company_sso_id"),
    )
    doc_id = record.get("_id")
    if type(doc_id) is dict and len(doc_id) == 1 and raw.count(b'"$') == 1:
        oid = doc_id.get("$oid")
        if type(oid) is not str or len(oid) != 24 or not _HEX.issuperset(oid):
            return None
        doc_id = oid
    elif type(doc_id) is not str or b'"$' in raw:
        return None
    if type(crm_data) is not dict or type(created_at) is not str or type(company) is not str or not company:
        return None
    crm_id = crm_data.get("id")
    if type(crm_id) is not int:
        return None
    try:
        timestamp = parse_timestamp(created_at)
    except ValueError:
        return None
    return Contact(id=doc_id, company_sso_id=company, crm_person_id=crm_id, created_at=timestamp)


class _Bad(Exception):
    pass


@contextmanager
def _at(path: PathLike, number: int) -> Iterator[None]:
    """Turn a ``_Bad`` raised while reading one line into a ``FileFormatError`` naming that line."""
    try:
        yield
    except _Bad as bad:
        raise FileFormatError(path, number, str(bad)) from None


def _others(record: Mapping[str, object], name: str, wanted: str | None) -> bool:
    """Whether a line is another tenant's (another company's) by its ``name`` member: a string
    other than ``wanted``, or one too long to keep from a long line (``long_lines.LongMember``: past
    1 MiB as written, no tenant or company id given here is one). Such a line is passed over before
    anything else of it is read, as when held whole, so it never stops this tenant's lookup."""
    if wanted is None:
        return False
    value = record.get(name)
    if value is LongMember.STRING:
        # The given text, escaped as it may be, is shorter than any member too long to keep.
        return 6 * len(wanted.encode("utf-8", "surrogatepass")) + 2 < MEMBER_BYTES // 2
    return isinstance(value, str) and value != wanted


def _refuse_long(path: PathLike, number: int, record: Mapping[str, object], max_line_bytes: int) -> None:
    """``MembersTooLong`` naming the line when a member its reader reads was too long to keep from a
    line past ``max_line_bytes`` (``long_lines.LongMember``): that record cannot be read, and is not
    skipped. Its value is never shown."""
    names = sorted(name for name, value in record.items() if isinstance(value, LongMember))
    if names:
        raise MembersTooLong(
            path,
            number,
            f"line longer than {max_line_bytes} bytes, and its {', '.join(names)} longer than "
            f"{MEMBER_BYTES} bytes: it cannot be read",
        )


def _collect(
    path: PathLike,
    tenant: str | None,
    build: Callable[[Mapping[str, object]], V],
    key: Callable[[V], K],
    keep: Collection[str],
    max_line_bytes: int,
) -> dict[K, V]:
    found: dict[K, V] = {}
    for number, record in json_objects(path, max_line_bytes=max_line_bytes, keep=keep, long_members=True):
        if _others(record, "tenant", tenant):
            continue
        _refuse_long(path, number, record, max_line_bytes)
        with _at(path, number):
            line_tenant = _optional_str(record, "tenant")
            if tenant is not None and line_tenant is not None and line_tenant != tenant:
                continue
            value = build(record)
            if key(value) in found:
                # An id names the line's record, as an audit id names a row: shown, unlike a value.
                raise _Bad(f"id {cut(repr(key(value)))} appears twice (several tenants? pass tenant=)")
            found[key(value)] = value
    return found


def _int(record: Mapping[str, object], name: str) -> int:
    value = record.get(name)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise _Bad(f"{name} is not an integer: {shown(value)}")


def _user_id(record: Mapping[str, object]) -> UserId:
    value = record.get("id")
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value:
        return value
    raise _Bad(f"id is not an integer or a non-empty string: {shown(value)}")


def _str(record: Mapping[str, object], name: str) -> str:
    value = record.get(name)
    if isinstance(value, str) and value:
        return value
    raise _Bad(f"{name} is not a non-empty string: {shown(value)}")


def _optional_str(record: Mapping[str, object], name: str) -> str | None:
    value = record.get(name)
    if value is None or isinstance(value, str):
        return value
    raise _Bad(f"{name} is not a string: {shown(value)}")


def _timestamp(text: str) -> dt.datetime:
    """The time of a text; one ``datetime`` cannot hold is the end of the range it falls past."""
    try:
        return parse_timestamp(text)
    except ValueError:
        past = time_past_range(text)
        if past is None:
            raise _Bad(f"not a timestamp: {shown(text)}") from None
        return past
