"""The OpenAPI 3.0 document of the HTTP surface (served at ``/openapi.json``).

Every answer's schema is generated from the type its route returns (``http/answers.py``, walked by
``http/schemas.py``): each object declares all of its fields and forbids others
(``additionalProperties: false``), and the job statuses' enum is ``JobStatusName``'s. The request
bodies, parsed field by field in ``http/app.py`` and ``http/records.py``, are described here.

Every route lists 500 (a bug, the service misconfigured, a stored job unreadable) and 503 (a
dependency down, the indexes missing), in the error envelope as every other error.

The tests fuzz every route from this document and validate every answer against it (status code,
content type, body schema), and call each route's success path with a known-good request, and each
route behind a failing service (each dependency down, each kind of 500), whose answers are validated
the same way; tests/web/test_answer_schemas.py checks every object of a full
answer against its schema, an unlisted field in each refused.
"""

from __future__ import annotations

from typing import Any

from crm_audit_transform.usecases.status import StatusDocument
from crm_audit_transform.verification import SAMPLE_MAX, SEED_MAX, SEED_MIN, VerifyReportDocument

from .answers import BatchAnswer, ErrorAnswer, PublicStatusAnswer, RollbackAnswer
from .schemas import Schema, schema_of

_ERROR = schema_of(ErrorAnswer)
_STATUS = schema_of(StatusDocument)
_PUBLIC_STATUS = schema_of(PublicStatusAnswer)
_BATCH = schema_of(BatchAnswer)
_ROLLBACK = schema_of(RollbackAnswer)
_VERIFY_REPORT = schema_of(VerifyReportDocument)

_COMPANY = {"type": "string", "minLength": 1, "maxLength": 128}
_RECORD = {
    "type": "object",
    "description": "An activity-log document as the JSONL sink writes it (relaxed Extended JSON); "
    "a key it does not write is refused (400 INVALID_RECORD naming it).",
    "required": ["company_sso_id", "customer_id", "category", "action", "actor", "timestamp", "external_id"],
    "properties": {
        "company_sso_id": _COMPANY,
        "customer_id": {
            "type": "string",
            "minLength": 1,
            "description": "The account's CDP contact of the person metadata.crm_person_id names; "
            "a record whose customer_id is not that contact is skipped (contact_not_found), not written.",
        },
        "category": {"type": "string", "minLength": 1},
        "action": {"type": "string", "minLength": 1},
        "actor": {
            "type": "object",
            "required": ["type", "name"],
            "properties": {
                "type": {"type": "string", "enum": ["user", "deleted_user", "system"]},
                "name": {"type": "string", "minLength": 1},
                "id": {"type": "string"},
            },
            "additionalProperties": False,
        },
        "attributes": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field"],
                "properties": {
                    "field": {"type": "string", "minLength": 1},
                    "label": {"type": "string"},
                    "from": {},
                    "to": {},
                },
                "additionalProperties": False,
            },
        },
        "timestamp": {"type": "string", "format": "date-time"},
        "external_id": {"type": "string", "minLength": 1},
        "source_tag": {"type": "string", "enum": ["crm_migration"]},
        "metadata": {
            "type": "object",
            "properties": {
                "crm_person_id": {
                    "type": "integer",
                    "description": "The CRM person the record is about. Without it (or with a person "
                    "whose account contact is not customer_id) the record is skipped: "
                    "contact_not_found, nothing written.",
                },
                "crm_audit_id": {
                    "type": "integer",
                    "description": "When given, the audit id external_id names (else 400 INVALID_RECORD).",
                },
                "crm_tenant": {
                    "type": "string",
                    "description": "When given, the tenant external_id names (else 400 INVALID_RECORD).",
                },
            },
        },
    },
    "additionalProperties": False,
}


_SERVER_ERRORS: dict[int, str] = {
    500: "The service's own fault, which no retry mends until the deployment or its data changes "
    "(http/errors.py): INTERNAL (a bug), CONFIG_INVALID, CONNECTION_REJECTED or DEPENDENCY_MISSING "
    "(misconfigured), DIRECTORY_REFUSED (USMAN refused the service's credentials), JOB_UNREADABLE (a "
    "stored job no reader can use), or another library error's code; the server log says why",
    503: "A dependency is down (DEPENDENCY_UNAVAILABLE: MongoDB, PostgreSQL or USMAN) or, on a route that "
    "writes, MongoDB lacks "
    "migration 035's indexes (INDEXES_MISSING): retry later",
}


def _responses(ok: Schema, *codes: int) -> dict[str, object]:
    """The 200 answer of ``ok``, an error answer for each of ``codes``, and the 500 every route can
    give (``http/errors.py``: a bug, the service misconfigured), each error in the one envelope."""
    responses: dict[str, object] = {
        "200": {"description": "OK", "content": {"application/json": {"schema": ok}}}
    }
    for code in sorted({*codes, 500}):
        responses[str(code)] = _error_response(_SERVER_ERRORS.get(code, "Error"))
    return responses


def _body(schema: Schema) -> dict[str, object]:
    """A required JSON body of ``schema``, an object closed to its listed keys: the routes refuse
    another (400 ``MALFORMED_BODY``, ``records.refuse_unknown_keys``)."""
    closed = {**schema, "additionalProperties": False}
    return {"required": True, "content": {"application/json": {"schema": closed}}}


def _error_response(description: str = "Error") -> dict[str, object]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR}}}


def _with_body_answers(paths: dict[str, dict[str, dict[str, Any]]]) -> dict[str, object]:
    """``paths`` with 400, 403, 413 and 415 on every operation that reads a body: each such route reads
    it through one reader (``app._read_body``), which refuses a body past ``max_body_bytes`` with 413
    and one that is not JSON with 400, whatever the route; and each refuses a browser request from
    another site (403 ``CROSS_SITE_REQUEST``) and a body not sent as ``application/json`` (415
    ``UNSUPPORTED_MEDIA_TYPE``) before reading it (``app.private``)."""
    for item in paths.values():
        for operation in item.values():
            if "requestBody" in operation:
                codes = ("400", "403", "413", "415")
                responses = {code: _error_response() for code in codes} | operation["responses"]
                operation["responses"] = dict(sorted(responses.items()))
    return dict(paths)


def openapi_document() -> dict[str, object]:
    basic: list[dict[str, list[str]]] = [{"basicAuth": []}]
    trigger_ok = _responses(_STATUS, 400, 401, 403, 409, 422, 503)
    trigger_ok["202"] = trigger_ok.pop("200")
    paths: dict[str, dict[str, dict[str, Any]]] = {
        "/private/activity_logs/migrate": {
            "post": {
                "summary": "Write up to 20 migrated activity logs idempotently",
                "security": basic,
                "requestBody": _body(
                    {
                        "type": "object",
                        "required": ["records"],
                        "properties": {"records": {"type": "array", "items": _RECORD}},
                    }
                ),
                "responses": _responses(
                    _BATCH,
                    400,
                    401,
                    403,
                    409,
                    413,
                    422,
                    503,
                ),
            }
        },
        "/private/activity_logs/crm_migration/trigger": {
            "post": {
                "summary": "Start an account's migration after its guards",
                "security": basic,
                "requestBody": _body(
                    {
                        "type": "object",
                        "required": ["company_sso_id"],
                        "properties": {
                            "company_sso_id": _COMPANY,
                            "tenant": {"type": "string", "minLength": 1},
                            "date_range_start": {"type": "string", "format": "date-time"},
                            "restart": {"type": "string", "enum": ["resume", "fresh"]},
                        },
                    }
                ),
                "responses": trigger_ok,
            }
        },
        "/private/activity_logs/crm_migration/cancel": {
            "post": {
                "summary": "Cancel an account's in-progress job (a live runner stops at its next batch)",
                "security": basic,
                "requestBody": _body(
                    {
                        "type": "object",
                        "required": ["company_sso_id"],
                        "properties": {"company_sso_id": _COMPANY},
                    }
                ),
                "responses": _responses(_STATUS, 400, 401, 404, 503),
            }
        },
        "/private/activity_logs/crm_migration/status": {
            "get": {
                "summary": "An account's migration status, with accuracy",
                "security": basic,
                "parameters": [
                    {"name": "company_sso_id", "in": "query", "required": True, "schema": _COMPANY}
                ],
                "responses": _responses(_STATUS, 400, 401, 503),
            }
        },
        "/private/activity_logs/crm_migration/rollback": {
            "post": {
                "summary": "Delete an account's migrated logs (native logs are never touched)",
                "security": basic,
                "requestBody": _body(
                    {
                        "type": "object",
                        "required": ["company_sso_id"],
                        "properties": {"company_sso_id": _COMPANY},
                    }
                ),
                "responses": _responses(
                    _ROLLBACK,
                    400,
                    401,
                    409,
                    503,
                ),
            }
        },
        "/private/activity_logs/crm_migration/verify": {
            "post": {
                "summary": "Verify an account's migration (docs/verify.md); repair what is missing",
                "security": basic,
                "requestBody": _body(
                    {
                        "type": "object",
                        "required": ["company_sso_id"],
                        "properties": {
                            "company_sso_id": _COMPANY,
                            "sample": {"type": "integer", "minimum": 0, "maximum": SAMPLE_MAX},
                            "seed": {
                                "type": "integer",
                                "format": "int64",
                                "minimum": SEED_MIN,
                                "maximum": SEED_MAX,
                            },
                            "repair": {"type": "boolean"},
                        },
                    }
                ),
                "responses": _responses(_VERIFY_REPORT, 400, 401, 404, 409, 422, 503),
            }
        },
        "/iag/v1/crm_migration/status": {
            "get": {
                "summary": "The session tenant's migration status (for the web indicator)",
                "security": [{"session": []}],
                "parameters": [
                    {"name": "company_sso_id", "in": "query", "required": False, "schema": _COMPANY}
                ],
                "responses": _responses(_PUBLIC_STATUS, 400, 401, 403, 503),
            }
        },
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": "crm-audit-transform", "version": "0.1.0"},
        "components": {
            "securitySchemes": {
                "basicAuth": {"type": "http", "scheme": "basic"},
                "session": {"type": "apiKey", "in": "cookie", "name": "crm_session"},
            }
        },
        "paths": _with_body_answers(paths),
    }
