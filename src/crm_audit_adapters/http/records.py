"""Decoding the ``/migrate`` request body: the documents the JSONL sink writes, as relaxed Extended JSON.

A record is an activity-log document exactly as ``crm-audit-migrate dry-run --out`` writes it, so a
dry run's output can be posted as it is. Every field is checked; the first problem is reported with
the record's index and the field's path.

Values are checked by their exact type: Extended JSON decodes ``$code`` (with or without ``$scope``)
to ``bson.Code``, a ``str`` subclass that pymongo stores as BSON JavaScript, and ``$binary`` of a
subtype other than 0 to ``bson.Binary``, a ``bytes`` subclass. Neither is a value of the activity
log's model (docs/value-model.md), so both are refused like ``$minKey`` or ``$regex``;
``$numberLong`` (``Int64``) is the integer it holds.

Nesting: a value may nest as deep as the writers take it, up to MongoDB's limit for the document
(``bson_values.MONGODB_MAX_NESTING``: 97 levels in an attribute, 98 in metadata, as a dry run writes
them); the store fails a record past that alone (``write_error``), as it does for a run. A value
past ``MONGODB_MAX_NESTING`` levels could fit no document: it is refused here (``INVALID_RECORD``).
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
from collections.abc import Mapping
from typing import Final, cast

from bson import Decimal128, Int64, json_util

from crm_audit_transform.domain import (
    ACTOR_DOCUMENT_KEYS,
    ATTRIBUTE_DOCUMENT_KEYS,
    LOG_DOCUMENT_KEYS,
    SOURCE_TAG,
    ActivityLog,
    Actor,
    ActorKind,
    FieldChange,
)
from crm_audit_transform.timestamps import as_utc
from crm_audit_transform.transformer import parse_external_id
from crm_audit_transform.values import Value

from ..mongo.bson_values import MONGODB_MAX_NESTING
from ..mongo.extended_json_input import loads_extended_json
from ..strict_json import has_surrogate
from .errors import ApiError

_ACTOR_KINDS = ("user", "deleted_user", "system")
RECORD_KEYS: Final = frozenset(LOG_DOCUMENT_KEYS)
"""The keys of a record: the core's ``domain.LOG_DOCUMENT_KEYS``, those of the document the JSONL
sink writes (``mongo.documents``); ``decode_record`` reads each."""
ACTOR_KEYS: Final = frozenset(ACTOR_DOCUMENT_KEYS)
ATTRIBUTE_KEYS: Final = frozenset(ATTRIBUTE_DOCUMENT_KEYS)
BODY_KEYS: Final = frozenset({"records"})
"""The keys of the ``/migrate`` body."""
_SHOWN_KEYS = 5
"""Unknown keys an error names (the first, in sorted order), each cut to ``_SHOWN_KEY_CHARS``."""
_SHOWN_KEY_CHARS = 64
MAX_COMPANY_CHARS = 128
"""The longest ``company_sso_id`` a route takes (``/openapi.json``'s ``maxLength``)."""
# Exact types: their subclasses bson.Code (str) and bson.Binary (bytes) are not values of the model.
_PLAIN = frozenset({bool, int, float, str, bytes})
_JSON_OPTIONS = json_util.RELAXED_JSON_OPTIONS.with_options(tz_aware=True, tzinfo=dt.UTC)


def _bad(path: str, message: str) -> ApiError:
    return ApiError(400, "INVALID_RECORD", f"{path}: {message}")


def _known_keys(doc: Mapping[str, object], known: frozenset[str], path: str, what: str) -> None:
    """``INVALID_RECORD`` naming the keys of ``doc`` outside ``known``. Dropped without a word, a
    misspelt ``"atributes"`` would store the log with no change at all, ``"meta_data"`` with no
    metadata, and the caller be answered ``inserted``."""
    unknown = sorted(key for key in doc if key not in known)
    if unknown:
        keys = ", ".join(sorted(known))
        raise _bad(path, f"unknown key(s) {_named(unknown)}; {what} holds only {keys}")


def _str(doc: Mapping[str, object], key: str, path: str, *, required: bool = True) -> str:
    value = doc.get(key)
    if value is None and not required:
        return ""
    if type(value) is not str or (required and not value):  # bson.Code is a str too: refused
        raise _bad(f"{path}.{key}", "must be a non-empty string")
    return value


def _value(value: object, path: str, depth: int = 0) -> Value:
    if depth > MONGODB_MAX_NESTING:  # no document could hold it; the writers check the exact room
        raise _bad(path, f"nested more than {MONGODB_MAX_NESTING} levels deep")
    if value is None or type(value) in _PLAIN:
        return cast("Value", value)
    if type(value) is Int64:
        return int(value)
    if isinstance(value, Decimal128):
        return value.to_decimal()
    if isinstance(value, decimal.Decimal):
        return value
    if isinstance(value, dt.datetime):
        try:
            return as_utc(value, naive="utc")
        except OverflowError:  # 0001-01-01T00:00+14:00 is before year 1 in UTC
            raise _bad(path, "is out of range once converted to UTC") from None
    if isinstance(value, list):
        return [_value(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value)]
    if isinstance(value, dict):
        return {str(k): _value(v, f"{path}.{k}", depth + 1) for k, v in value.items()}
    raise _bad(path, f"unsupported value of type {type(value).__name__}")


def _timestamp(value: object, path: str) -> dt.datetime:
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            raise _bad(path, "must be an ISO 8601 timestamp or {'$date': ...}") from None
    if not isinstance(value, dt.datetime):
        raise _bad(path, "must be an ISO 8601 timestamp or {'$date': ...}")
    if value.tzinfo is None:
        raise _bad(path, "must carry a UTC offset")
    try:
        return value.astimezone(dt.UTC)
    except OverflowError:  # 0001-01-01T00:00+14:00 is a valid text but before year 1 in UTC
        raise _bad(path, "is out of range once converted to UTC") from None


def decode_record(doc: object, path: str) -> ActivityLog:
    if not isinstance(doc, dict):
        raise _bad(path, "must be an object")
    _known_keys(doc, RECORD_KEYS, path, "a record")
    actor_doc = doc.get("actor")
    kind = actor_doc.get("type") if isinstance(actor_doc, dict) else None
    if not isinstance(actor_doc, dict) or type(kind) is not str or kind not in _ACTOR_KINDS:
        raise _bad(f"{path}.actor", f"must be an object with type one of {', '.join(_ACTOR_KINDS)}")
    _known_keys(actor_doc, ACTOR_KEYS, f"{path}.actor", "an actor")
    actor = Actor(
        kind=cast("ActorKind", kind),
        name=_str(actor_doc, "name", f"{path}.actor"),
        sso_id=_str(actor_doc, "id", f"{path}.actor", required=False) or None,
    )
    attributes = doc.get("attributes", [])
    if not isinstance(attributes, list):
        raise _bad(f"{path}.attributes", "must be a list")
    changes = []
    for i, item in enumerate(attributes):
        where = f"{path}.attributes[{i}]"
        if not isinstance(item, dict):
            raise _bad(where, "must be an object")
        _known_keys(item, ATTRIBUTE_KEYS, where, "an attribute")
        changes.append(
            FieldChange(
                field=_str(item, "field", where),
                label=_str(item, "label", where, required=False),
                from_=_value(item.get("from"), f"{where}.from"),
                to=_value(item.get("to"), f"{where}.to"),
            )
        )
    metadata = doc.get("metadata", {})
    if not isinstance(metadata, dict):
        raise _bad(f"{path}.metadata", "must be an object")
    source_tag = doc.get("source_tag", SOURCE_TAG)
    if source_tag != SOURCE_TAG:
        raise _bad(f"{path}.source_tag", f"must be {SOURCE_TAG!r}: this route writes migrated logs only")
    meta = _value(metadata, f"{path}.metadata")
    assert isinstance(meta, dict)
    external_id = _external_id(doc, path)
    _agrees_with_external_id(meta, external_id, f"{path}.metadata")
    return ActivityLog(
        company_sso_id=_company(doc, path),
        customer_id=_str(doc, "customer_id", path),
        category=_str(doc, "category", path),
        action=_str(doc, "action", path),
        actor=actor,
        changes=tuple(changes),
        timestamp=_timestamp(doc.get("timestamp"), f"{path}.timestamp"),
        external_id=external_id,
        metadata=meta,
    )


def _agrees_with_external_id(metadata: Mapping[str, object], external_id: str, path: str) -> None:
    """``metadata.crm_audit_id`` and ``metadata.crm_tenant``, when given, are the audit id and tenant that
    ``external_id`` names, as a run writes them (``transformer``'s metadata: the row's ``id``, an integer,
    and its ``tenant``): else ``INVALID_RECORD`` naming the field. A record whose two disagreed would
    be stored, and verify then report it ``drifted`` against the audit its ``external_id`` names."""
    named = parse_external_id(external_id)
    assert named is not None  # _external_id refused any other spelling
    tenant, audit_id = named
    if "crm_audit_id" in metadata:
        given = metadata["crm_audit_id"]
        if type(given) is not int or given != audit_id:
            raise _bad(f"{path}.crm_audit_id", f"must be {audit_id}, the audit id external_id names")
    if "crm_tenant" in metadata:
        given = metadata["crm_tenant"]
        if type(given) is not str or given != tenant:
            raise _bad(f"{path}.crm_tenant", f"must be {tenant!r}, the tenant external_id names")


def _company(doc: Mapping[str, object], path: str) -> str:
    """The record's ``company_sso_id`` under the rule of every route's (``INVALID_COMPANY``): at most
    128 characters, not blank, Unicode text. A lone surrogate (JSON's ``"caf\\udce9"``) names no
    account: the refusal quoting it (``TENANT_UNBOUND``) could not be encoded, and the route
    answered 500 (``INTERNAL``)."""
    value = _str(doc, "company_sso_id", path)
    if not value.strip() or len(value) > MAX_COMPANY_CHARS or has_surrogate(value):
        raise _bad(
            f"{path}.company_sso_id",
            f"must be a non-blank string of at most {MAX_COMPANY_CHARS} characters, Unicode text "
            "(no lone surrogate escape)",
        )
    return value


def _external_id(doc: Mapping[str, object], path: str) -> str:
    """The record's ``external_id``, spelled exactly as the run writes one (``crm:{tenant}:audit:{id}``,
    the id in plain decimal): another spelling (``crm:acme:audit:026``) names no audit, so verify
    would report the log as a stray, and the run's own log of that audit would not meet it at the
    unique index (the same record twice)."""
    value = _str(doc, "external_id", path)
    if parse_external_id(value) is None:
        raise _bad(
            f"{path}.external_id",
            "must be spelled as the run writes it: crm:{tenant}:audit:{id}, the id in plain decimal",
        )
    return value


def refuse_unknown_keys(body: Mapping[str, object], keys: frozenset[str]) -> None:
    """400 ``MALFORMED_BODY`` naming the keys of a request body outside ``keys`` (the first five).
    Ignored, a misspelt ``"date_range_strat"`` would trigger a job over the whole history and a
    ``"repiar"`` verify without repairing, each answered as if it had been read."""
    unknown = sorted(key for key in body if key not in keys)
    if unknown:
        raise ApiError(
            400,
            "MALFORMED_BODY",
            f"body: unknown key(s) {_named(unknown)}; this route takes {', '.join(sorted(keys))}",
        )


def _named(keys: list[str]) -> str:
    """``keys`` as an error names them: the first ``_SHOWN_KEYS``, each cut to ``_SHOWN_KEY_CHARS``."""
    shown = [repr(key[:_SHOWN_KEY_CHARS] + ("…" if len(key) > _SHOWN_KEY_CHARS else "")) for key in keys]
    more = f" and {len(keys) - _SHOWN_KEYS} more" if len(keys) > _SHOWN_KEYS else ""
    return ", ".join(shown[:_SHOWN_KEYS]) + more


def unique_members(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """A body's object, as ``json.loads``' ``object_pairs_hook``: 400 ``MALFORMED_BODY`` naming a
    member the object names twice. RFC 8259 §4 leaves which one counts to each reader: Python's keeps
    the last, so ``{"company_sso_id": "a", "company_sso_id": "b"}`` would act on ``b`` where a proxy
    or a log that read the first saw ``a`` (the status routes refuse a repeated query parameter alike)."""
    body = dict(pairs)
    if len(body) != len(pairs):
        twice = sorted(key for key in body if sum(name == key for name, _ in pairs) > 1)
        raise ApiError(400, "MALFORMED_BODY", f"body: an object names {_named(twice)} more than once")
    return body


def parse_body(raw: bytes) -> list[object]:
    """The ``records`` array of a request body, parsed with Extended JSON types; an object of it
    that names a member twice is refused (``unique_members``)."""
    try:
        text = raw.decode("utf-8")
        json.loads(text, object_pairs_hook=unique_members)  # bodies are small: one more parse
        body = loads_extended_json(text, _JSON_OPTIONS)
    except RecursionError:
        raise ApiError(400, "MALFORMED_BODY", "body is nested too deeply") from None
    except ValueError as exc:  # not UTF-8, not JSON, or a malformed $-operator (extended_json_input)
        raise ApiError(400, "MALFORMED_BODY", f"body is not valid Extended JSON: {exc}") from None
    if not isinstance(body, dict) or not isinstance(body.get("records"), list):
        raise ApiError(400, "MALFORMED_BODY", "body must be an object with a 'records' array")
    refuse_unknown_keys(body, BODY_KEYS)
    return list(body["records"])
