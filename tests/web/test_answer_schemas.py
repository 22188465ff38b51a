"""Every answer of every route against the OpenAPI document generated from its type: a full answer
(every optional object present) conforms, and a field its schema does not list — at the top or in
any nested object — fails the same check the fuzz runs.

schemathesis is imported by the functions that use it, as in test_api_fuzz.py: every test process
collects this file and only the one that runs it needs schemathesis.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterator, Sequence
from typing import Any, Literal, NotRequired, Required, TypedDict, get_args

import httpx
import pytest

from crm_audit_adapters.http import BasicAuthCredentials, SignedSessionResolver, create_app
from crm_audit_adapters.http.openapi import openapi_document
from crm_audit_adapters.http.schemas import schema_of
from crm_audit_transform.domain import ActivityLog, BatchResult, WriteResult
from crm_audit_transform.enrichment_tally import EnrichmentTally
from crm_audit_transform.jobs import HALTED, JOB_STATUSES, NOT_STARTED, JobShard, JobStatusName
from crm_audit_transform.tally import Tally
from crm_audit_transform.usecases import MigrationStatus, RollbackResult
from crm_audit_transform.usecases.status import IsoTime, StatusDocument
from crm_audit_transform.verification import Finding, Findings, JobCheck, Mismatch, VerifyReport
from support.live_server import LiveServer

COMPANY = "company-full"
AUTH = {"Authorization": "Basic " + base64.b64encode(b"ops:pw").decode()}
SESSIONS = SignedSessionResolver(secret=b"answers")
AT = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)

FULL_STATUS = MigrationStatus(
    company_sso_id=COMPANY,
    status=HALTED,
    progress_pct=42.5,
    tally=Tally(processed=10, migrated=6, skipped={"unmapped_type": 2}, failed={"malformed_yaml": 2}),
    last_audit_id=10,
    job_id="job-1",
    tenant="acme",
    created_at=AT,
    updated_at=AT,
    finished_at=AT,
    halted_reason="failure rate 20% over 5%",
    enrichment=EnrichmentTally(logs=3, complete=2, keys_set=2, skipped={"entity_missing": 1}),
    lease_owner="host:1",
    lease_expires_at=AT,
    logs_deleted=4,
    shards=(
        JobShard(0, 0, 5, 5, status="completed", tally=Tally(processed=5, migrated=3)),
        JobShard(1, 5, None, 10, status=HALTED, halted_reason="x", lease_owner="h", lease_expires_at=AT),
    ),
)
FULL_REPORT = VerifyReport(
    company_sso_id=COMPANY,
    tenant="acme",
    audits=10,
    migrated=6,
    skipped={"unmapped_type": 2},
    failed={"malformed_yaml": 2},
    content_checked=6,
    sample=3,
    findings={"missing": Findings(2, (Finding(7, "crm:acme:audit:7", "no log"),)), "stray": Findings(1)},
    job=JobCheck("job-1", HALTED, 10, (Mismatch("records_migrated", 6, 5),)),
    repaired=1,
    repaired_in_job=1,
)


class FullAnswers:
    """An ``HttpService`` whose answers fill every field and every nested object the types allow."""

    def migrate(self, records: Sequence[ActivityLog], *, require_binding: bool = False) -> BatchResult:
        results = (
            WriteResult("crm:acme:audit:1", "inserted"),
            WriteResult("crm:acme:audit:2", "skipped", "duplicate_external_id"),
            WriteResult("crm:acme:audit:3", "failed", "document_too_large"),
        )
        return BatchResult(1, 1, 1, results)

    def trigger(self, company_sso_id: str, tenant: str | None = None, **_: Any) -> MigrationStatus:
        return FULL_STATUS

    def cancel(self, company_sso_id: str) -> MigrationStatus:
        return FULL_STATUS

    def status(self, company_sso_id: str) -> MigrationStatus:
        return FULL_STATUS

    def rollback(self, company_sso_id: str) -> RollbackResult:
        return RollbackResult(company_sso_id, 4, "job-1")

    def verify(self, company_sso_id: str, tenant: str | None = None, **_: Any) -> VerifyReport:
        return FULL_REPORT


RECORD = {
    "company_sso_id": COMPANY,
    "customer_id": "contact-1",
    "category": "deal",
    "action": "created",
    "actor": {"type": "system", "name": "Qontak System"},
    "timestamp": "2024-01-02T03:04:05Z",
    "external_id": "crm:acme:audit:1",
}
COMPANY_BODY = {"company_sso_id": COMPANY}
# (method, path, request parts, status): each route's success answer, and one error envelope.
CALLS: list[tuple[str, str, dict[str, Any], int]] = [
    ("POST", "/private/activity_logs/migrate", {"json": {"records": [RECORD]}}, 200),
    ("POST", "/private/activity_logs/crm_migration/trigger", {"json": COMPANY_BODY}, 202),
    ("POST", "/private/activity_logs/crm_migration/cancel", {"json": COMPANY_BODY}, 200),
    ("GET", "/private/activity_logs/crm_migration/status", {"params": COMPANY_BODY}, 200),
    ("POST", "/private/activity_logs/crm_migration/rollback", {"json": COMPANY_BODY}, 200),
    ("POST", "/private/activity_logs/crm_migration/verify", {"json": COMPANY_BODY}, 200),
    ("GET", "/iag/v1/crm_migration/status", {}, 200),
    ("POST", "/private/activity_logs/crm_migration/cancel", {"json": {}}, 400),
]


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    app = create_app(FullAnswers(), basic_auth=BasicAuthCredentials("ops", "pw"), sessions=SESSIONS)  # type: ignore[arg-type]
    with LiveServer(app) as live, httpx.Client(base_url=live.url, timeout=30) as http:
        http.cookies.set("crm_session", SESSIONS.sign(COMPANY))
        yield http


def answer(client: httpx.Client, method: str, path: str, parts: dict[str, Any]) -> httpx.Response:
    return client.request(method, path, headers=AUTH, **parts)


def conforms(method: str, path: str, response: httpx.Response) -> None:
    """The check the fuzz runs on this answer; raises when the body is not what the document says."""
    import schemathesis
    from schemathesis.specs.openapi.checks import response_schema_conformance

    case = schemathesis.openapi.from_dict(openapi_document())[path][method].Case()
    case.validate_response(response, checks=[response_schema_conformance])


OPEN_MAPS = frozenset({"skipped", "failed", "outstanding", "findings"})
"""Objects keyed by reason or finding kind: their keys are data (any reason), so they list none."""


def object_paths(value: object, path: tuple[object, ...] = ()) -> Iterator[tuple[object, ...]]:
    """The path of every JSON object in ``value`` that has fields of its own (not an open map)."""
    if isinstance(value, dict):
        if not path or path[-1] not in OPEN_MAPS:
            yield path
        for key, item in value.items():
            yield from object_paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from object_paths(item, (*path, index))


def with_unlisted_field(body: Any, path: tuple[object, ...]) -> Any:
    """A copy of ``body`` whose object at ``path`` holds one more field, ``unlisted``."""
    if not path:
        return {**body, "unlisted": 1}
    head, *rest = path
    copy = list(body) if isinstance(body, list) else dict(body)
    copy[head] = with_unlisted_field(body[head], tuple(rest))  # type: ignore[index]
    return copy


class TestAnswerSchemas:
    @pytest.mark.parametrize(("method", "path", "parts", "status"), CALLS, ids=[c[1] for c in CALLS])
    def test_a_full_answer_conforms_to_its_generated_schema(
        self, client: httpx.Client, method: str, path: str, parts: dict[str, Any], status: int
    ) -> None:
        """Every route answers, with every optional object filled, exactly what its document declares."""
        response = answer(client, method, path, parts)
        assert response.status_code == status, response.text
        conforms(method, path, response)

    @pytest.mark.parametrize(("method", "path", "parts", "status"), CALLS, ids=[c[1] for c in CALLS])
    def test_a_field_the_schema_does_not_list_fails_at_every_level(
        self, client: httpx.Client, method: str, path: str, parts: dict[str, Any], status: int
    ) -> None:
        """The same answer with one unlisted field in any of its objects — the body, a shard, the
        enrichment counts, a finding, a write result, the error — is refused by the fuzz's check."""
        from schemathesis.core.failures import FailureGroup

        response = answer(client, method, path, parts)
        paths = list(object_paths(response.json()))
        assert len(paths) >= (1 if status != 200 or path.endswith(("status", "rollback")) else 2)
        for where in paths:
            altered = httpx.Response(
                response.status_code,
                headers={"content-type": "application/json"},
                json=with_unlisted_field(response.json(), where),
                request=response.request,
            )
            altered.elapsed = response.elapsed
            with pytest.raises(FailureGroup) as refused:
                conforms(method, path, altered)
            assert any("unlisted" in str(e) for e in refused.value.exceptions), (
                where,
                refused.value.exceptions,
            )

    def test_the_full_status_reaches_every_nested_object(self, client: httpx.Client) -> None:
        """The status answer used above holds the shards and the enrichment counts, so their schemas
        are checked too (an answer without them would check nothing below the top)."""
        body = answer(
            client, "GET", "/private/activity_logs/crm_migration/status", {"params": COMPANY_BODY}
        ).json()
        assert len(body["shards"]) == 2
        assert body["enrichment"]["skipped"] == {"entity_missing": 1}
        report = answer(
            client, "POST", "/private/activity_logs/crm_migration/verify", {"json": COMPANY_BODY}
        ).json()
        assert report["job"]["mismatches"]
        assert report["findings"]["missing"]["items"]


class Inner(TypedDict):
    """An inner object.

    Only the first paragraph becomes the description."""

    count: int


class Outer(TypedDict, total=False):
    name: Required[str]
    ratio: float
    flag: bool
    at: IsoTime | None
    kind: Literal["a", "b"]
    inner: Inner
    maybe_inner: Inner | None
    items: list[Inner]
    counts: dict[str, int]


class Partial(TypedDict):
    kept: int
    dropped: NotRequired[str]


class TestSchemaOf:
    def test_a_typeddict_declares_every_key_and_forbids_others(self) -> None:
        """Each key becomes a property, Required/NotRequired/total decide ``required`` (annotations
        postponed, as in the answer modules), and every object is closed."""
        outer = schema_of(Outer)
        assert outer["required"] == ["name"]
        assert outer["additionalProperties"] is False
        assert outer["properties"] == {
            "name": {"type": "string"},
            "ratio": {"type": "number"},
            "flag": {"type": "boolean"},
            "at": {"type": "string", "format": "date-time", "nullable": True},
            "kind": {"type": "string", "enum": ["a", "b"]},
            "inner": schema_of(Inner),
            "maybe_inner": {**schema_of(Inner), "nullable": True},
            "items": {"type": "array", "items": schema_of(Inner)},
            "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
        }
        assert schema_of(Partial)["required"] == ["kept"]
        assert schema_of(Inner) == {
            "type": "object",
            "description": "An inner object.",
            "required": ["count"],
            "properties": {"count": {"type": "integer"}},
            "additionalProperties": False,
        }

    @pytest.mark.parametrize("tp", [int | str, set[int], tuple[int, ...], dict[int, int], Literal[1], bytes])
    def test_a_type_the_walk_does_not_know_is_refused(self, tp: object) -> None:
        """A type outside the walk's table is a TypeError naming it, never a silently open schema."""
        with pytest.raises(TypeError, match="no schema for"):
            schema_of(tp)

    def test_the_status_enum_is_every_status_a_job_can_report(self) -> None:
        """``JobStatusName`` (the document's enum) names the job model's statuses and not_started, no more."""
        assert set(get_args(JobStatusName)) == {*JOB_STATUSES, NOT_STARTED}
        status = schema_of(StatusDocument)["properties"]["status"]  # type: ignore[index]
        assert set(status["enum"]) == {*JOB_STATUSES, NOT_STARTED}
