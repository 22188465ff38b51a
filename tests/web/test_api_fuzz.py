"""Fuzz the HTTP surface from its own OpenAPI document: whatever arrives, no route answers 500, and
every answer conforms to the document (status code, content type, body schema)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from test_routes import people_count, runtime_over, seed_contacts

from crm_audit_adapters.http import BasicAuthCredentials, SignedSessionResolver, create_app
from crm_audit_adapters.mongo.indexes import apply_migration
from support.live_server import LiveServer

pytestmark = pytest.mark.postgres

AUTH = "Basic " + base64.b64encode(b"ops:s3cret").decode()
SESSIONS = SignedSessionResolver(secret=b"fuzz")


@pytest.fixture
def live(crm_dsn: str, mongo_db: Any) -> Iterator[LiveServer]:
    """The app over the runner's composition root: the corpus in PostgreSQL, the CDP in MongoDB."""
    apply_migration(mongo_db, "up")
    # The session's tenant has a job, so the tenant route answers its full document, timestamps too.
    seed_contacts(mongo_db, "fuzz-co", people_count(crm_dsn))
    with runtime_over(crm_dsn, mongo_db, "*,fuzz-co") as runtime:
        runtime.service.trigger("fuzz-co", "acme")
        app = create_app(runtime.service, basic_auth=BasicAuthCredentials("ops", "s3cret"), sessions=SESSIONS)
        with LiveServer(app) as server:
            yield server


def operations(url: str) -> list[object]:
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


def test_the_document_names_every_route(live: LiveServer) -> None:
    """The fuzzer reaches all seven routes the OpenAPI document declares."""
    assert len(operations(live.url)) == 7


CONFORMANCE = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.mark.wire_duplicate  # a whole-account run: see support/wire_sample.py
def test_no_input_makes_a_route_fail_with_a_server_error(live: LiveServer) -> None:
    """Generated bodies, parameters and credentials never produce a 5xx, errors keep the envelope, and
    every answer is one the document declares, in the shape it declares."""
    headers = {"Authorization": AUTH, "Cookie": f"crm_session={SESSIONS.sign('fuzz-co')}"}
    for operation in operations(live.url):

        @given(case=operation.as_strategy())  # type: ignore[attr-defined]
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case: schemathesis.Case) -> None:
            response = case.call(base_url=live.url, headers=headers)
            assert response.status_code < 500, f"{case.method} {case.path}: {response.text}"
            case.validate_response(response, checks=CONFORMANCE)
            if response.status_code >= 400:
                assert set(response.json()) == {"error"}

        check()
