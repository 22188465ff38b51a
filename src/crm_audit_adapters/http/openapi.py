"""The OpenAPI 3.0 document of the HTTP surface (served at ``/openapi.json``).

The tests fuzz every route from this document and validate every answer against it (status code,
content type, body schema), and call each route's success path with a known-good request, whose
answer is validated the same way. Every object an answer holds declares all of its fields and
forbids others (``additionalProperties: false``), so a route that answers a field its document
does not declare fails. The job statuses come from ``crm_audit_transform.jobs``, so a new status
cannot be forgotten here.
"""

from __future__ import annotations

from crm_audit_transform.jobs import JOB_STATUSES, NOT_STARTED

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            "additionalProperties": False,
        }
    },
    "additionalProperties": False,
}
_COMPANY = {"type": "string", "minLength": 1, "maxLength": 128}
_STATUS_NAME = {"type": "string", "enum": sorted({NOT_STARTED, *JOB_STATUSES})}
_TIME = {"type": "string", "format": "date-time", "nullable": True}
_COUNTS = {"type": "object", "additionalProperties": {"type": "integer"}}
_ENRICHMENT = {
    "type": "object",
    "description": "What enrichment did to the job's association logs (not record outcomes).",
    "required": ["logs", "patched", "complete", "keys_set", "skipped"],
    "properties": {
        "logs": {"type": "integer"},
        "patched": {"type": "integer"},
        "complete": {"type": "integer"},
        "keys_set": {"type": "integer"},
        "skipped": _COUNTS,
    },
    "additionalProperties": False,
}
_STATUS = {
    "type": "object",
    "description": "Only company_sso_id and status while not_started; every other field once a job exists.",
    "required": ["company_sso_id", "status"],
    "properties": {
        "company_sso_id": {"type": "string"},
        "status": _STATUS_NAME,
        "job_id": {"type": "string"},
        "tenant": {"type": "string"},
        "progress_pct": {"type": "number"},
        "records_processed": {"type": "integer"},
        "records_migrated": {"type": "integer"},
        "records_skipped": {"type": "integer"},
        "records_failed": {"type": "integer"},
        "skipped": _COUNTS,
        "failed": _COUNTS,
        "status_fallthrough": {"type": "integer"},
        "failure_rate": {"type": "number"},
        "accuracy_pct": {"type": "number"},
        "actors_degraded": {"type": "integer"},
        "last_audit_id": {"type": "integer"},
        "halted_reason": {"type": "string", "nullable": True},
        "lease_owner": {"type": "string", "nullable": True},
        "lease_expires_at": _TIME,
        "logs_deleted": {"type": "integer", "nullable": True},
        "enrichment": _ENRICHMENT,
        "shards": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["shard", "status", "last_audit_id", "lease_owner", "lease_expires_at"],
                "additionalProperties": False,
                "properties": {
                    "shard": {"type": "integer"},
                    "status": {"type": "string"},
                    "after_id": {"type": "integer"},
                    "until_id": {"type": "integer", "nullable": True},
                    "last_audit_id": {"type": "integer"},
                    "records_processed": {"type": "integer"},
                    "records_migrated": {"type": "integer"},
                    "halted_reason": {"type": "string", "nullable": True},
                    "lease_owner": {"type": "string", "nullable": True},
                    "lease_expires_at": _TIME,
                },
            },
        },
        "created_at": _TIME,
        "updated_at": _TIME,
        "finished_at": _TIME,
    },
    "additionalProperties": False,
}
# The web indicator's view: no accuracy, no counts, nothing internal (docs/http.md).
_PUBLIC_STATUS = {
    "type": "object",
    "required": ["status"],
    "properties": {
        "status": _STATUS_NAME,
        "progress_pct": {"type": "number"},
        "updated_at": _TIME,
        "finished_at": _TIME,
    },
    "additionalProperties": False,
}
_RECORD = {
    "type": "object",
    "description": "An activity-log document as the JSONL sink writes it (relaxed Extended JSON).",
    "required": ["company_sso_id", "customer_id", "category", "action", "actor", "timestamp", "external_id"],
    "properties": {
        "company_sso_id": _COMPANY,
        "customer_id": {"type": "string", "minLength": 1},
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
        },
        "attributes": {"type": "array", "items": {"type": "object"}},
        "timestamp": {"type": "string", "format": "date-time"},
        "external_id": {"type": "string", "minLength": 1},
        "source_tag": {"type": "string", "enum": ["crm_migration"]},
        "metadata": {"type": "object"},
    },
}


_FINDING = {
    "type": "object",
    "required": ["audit_id", "external_id", "detail"],
    "properties": {
        "audit_id": {"type": "integer", "nullable": True},
        "external_id": {"type": "string", "nullable": True},
        "detail": {"type": "string"},
    },
    "additionalProperties": False,
}
_FINDINGS: dict[str, object] = {
    "type": "object",
    "required": ["count", "truncated", "items"],
    "properties": {
        "count": {"type": "integer"},
        "truncated": {"type": "boolean"},
        "items": {"type": "array", "items": _FINDING},
    },
    "additionalProperties": False,
}
_JOB_CHECK = {
    "type": "object",
    "nullable": True,
    "required": ["job_id", "status", "last_audit_id", "consistent", "mismatches"],
    "properties": {
        "job_id": {"type": "string"},
        "status": _STATUS_NAME,
        "last_audit_id": {"type": "integer"},
        "consistent": {"type": "boolean"},
        "mismatches": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["figure", "job", "found"],
                "properties": {
                    "figure": {"type": "string"},
                    "job": {"type": "integer"},
                    "found": {"type": "integer"},
                },
                "additionalProperties": False,
            },
        },
    },
    "additionalProperties": False,
}
_VERIFY_REPORT: dict[str, object] = {
    "type": "object",
    "required": ["company_sso_id", "tenant", "clean", "audits", "migrated", "findings", "outstanding", "job"],
    "properties": {
        "company_sso_id": {"type": "string"},
        "tenant": {"type": "string"},
        "clean": {"type": "boolean"},
        "audits": {"type": "integer"},
        "migrated": {"type": "integer"},
        "skipped": _COUNTS,
        "failed": _COUNTS,
        "content_checked": {"type": "integer"},
        "sample": {"type": "integer", "nullable": True},
        "findings": {"type": "object", "additionalProperties": _FINDINGS},
        "outstanding": _COUNTS,
        "job": _JOB_CHECK,
        "repaired": {"type": "integer"},
        "repaired_in_job": {"type": "integer"},
    },
    "additionalProperties": False,
}
_WRITE_RESULT = {
    "type": "object",
    "required": ["external_id", "status", "reason"],
    "properties": {
        "external_id": {"type": "string"},
        "status": {"type": "string", "enum": ["inserted", "skipped", "failed"]},
        "reason": {"type": "string", "nullable": True},
    },
    "additionalProperties": False,
}


def _responses(ok: dict[str, object], *codes: int) -> dict[str, object]:
    responses: dict[str, object] = {
        "200": {"description": "OK", "content": {"application/json": {"schema": ok}}}
    }
    for code in codes:
        responses[str(code)] = {"description": "Error", "content": {"application/json": {"schema": _ERROR}}}
    return responses


def _body(schema: dict[str, object]) -> dict[str, object]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def openapi_document() -> dict[str, object]:
    basic: list[dict[str, list[str]]] = [{"basicAuth": []}]
    trigger_ok = _responses(_STATUS, 400, 401, 403, 409, 422, 503)
    trigger_ok["202"] = trigger_ok.pop("200")
    return {
        "openapi": "3.0.3",
        "info": {"title": "crm-audit-transform", "version": "0.1.0"},
        "components": {
            "securitySchemes": {
                "basicAuth": {"type": "http", "scheme": "basic"},
                "session": {"type": "apiKey", "in": "cookie", "name": "crm_session"},
            }
        },
        "paths": {
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
                        {
                            "type": "object",
                            "required": ["inserted", "skipped", "failed", "results"],
                            "properties": {
                                "inserted": {"type": "integer"},
                                "skipped": {"type": "integer"},
                                "failed": {"type": "integer"},
                                "results": {"type": "array", "items": _WRITE_RESULT},
                            },
                            "additionalProperties": False,
                        },
                        400,
                        401,
                        413,
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
                        {
                            "type": "object",
                            "required": ["deleted"],
                            "properties": {"deleted": {"type": "integer"}},
                            "additionalProperties": False,
                        },
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
                                "sample": {"type": "integer", "minimum": 0, "maximum": 1_000_000},
                                "seed": {"type": "integer"},
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
                    "responses": _responses(_PUBLIC_STATUS, 401, 403, 503),
                }
            },
        },
    }
