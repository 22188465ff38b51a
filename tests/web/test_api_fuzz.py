"""Fuzz the HTTP surface from its own OpenAPI document: whatever arrives, no route answers 500, and
every answer conforms to the document (status code, content type, body schema).

schemathesis is imported by the functions that use it: every test process collects this file and
only the one that runs it needs schemathesis (scripts/check turns its pytest plugin off).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NoReturn

import pytest
from hypothesis import HealthCheck, given, settings
from test_routes import people_count, runtime_over, seed_contacts

from crm_audit_adapters.http import BasicAuthCredentials, SignedSessionResolver, create_app
from crm_audit_adapters.mongo.indexes import apply_migration
from crm_audit_transform.errors import (
    ConnectionRejected,
    DirectoryUnavailable,
    IndexesMissing,
    JobUnreadable,
    SourceUnavailable,
    StoreUnavailable,
)
from crm_audit_transform.testing import FixedClock, InMemorySsoDirectory
from support.live_server import LiveServer, MountedApp

if TYPE_CHECKING:
    import schemathesis

pytestmark = pytest.mark.postgres

AUTH = "Basic " + base64.b64encode(b"ops:s3cret").decode()
SESSIONS = SignedSessionResolver(secret=b"fuzz")


@pytest.fixture
def live(crm_dsn: str, mongo_db: Any) -> Iterator[LiveServer]:
    """The app over the runner's composition root: the corpus in PostgreSQL, the CDP in MongoDB."""
    apply_migration(mongo_db, "up")
    # The session's tenant has a job, so the tenant route answers its full document, timestamps too.
    seed_contacts(mongo_db, "fuzz-co", people_count(crm_dsn))
    # An SSO directory, so that verify (which resolves actors as a run does) can answer its report.
    with runtime_over(crm_dsn, mongo_db, "*,fuzz-co", sso=InMemorySsoDirectory({})) as runtime:
        runtime.service.trigger("fuzz-co", "acme")
        app = create_app(runtime.service, basic_auth=BasicAuthCredentials("ops", "s3cret"), sessions=SESSIONS)
        with LiveServer(app) as server:
            yield server


def schema_at(url: str) -> Any:
    """The app's OpenAPI document as schemathesis loads it from the live server at ``url``."""
    import schemathesis

    return schemathesis.openapi.from_url(f"{url}/openapi.json")


def operations(url: str) -> list[object]:
    return [result.ok() for result in schema_at(url).get_all_operations()]


def test_the_document_names_every_route(live: LiveServer) -> None:
    """The fuzzer reaches all seven routes the OpenAPI document declares."""
    assert len(operations(live.url)) == 7


def conformance() -> list[Any]:
    """The checks every answer passes: no 5xx first, then the document's status code, content type
    and body schema."""
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    return [
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
    checks = conformance()
    for operation in operations(live.url):

        @given(case=operation.as_strategy())  # type: ignore[attr-defined]
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case: schemathesis.Case) -> None:
            response = case.call(base_url=live.url, headers=headers)
            assert response.status_code < 500, f"{case.method} {case.path}: {response.text}"
            case.validate_response(response, checks=checks)
            if response.status_code >= 400:
                assert set(response.json()) == {"error"}

        check()


RECORD = {
    "company_sso_id": "fuzz-co",
    "customer_id": "contact-1",
    "category": "deal",
    "action": "created",
    "actor": {"type": "system", "name": "Qontak System"},
    "attributes": [],
    "timestamp": "2024-01-02T03:04:05Z",
    "external_id": "crm:acme:audit:999999",
    "source_tag": "crm_migration",
    "metadata": {"crm_audit_id": 999999},
}

# Known-good requests, in an order that reaches each route's success answer: the fixture's job is
# in progress, so it is read, cancelled and rolled back; the account "company-other" (bound to the
# same tenant, its contacts seeded by the test) is triggered, then refused a second job.
SUCCESS_PATHS: list[tuple[str, str, dict[str, Any], int]] = [
    ("GET", "/private/activity_logs/crm_migration/status", {"query": {"company_sso_id": "fuzz-co"}}, 200),
    ("GET", "/private/activity_logs/crm_migration/status", {"query": {"company_sso_id": "nobody"}}, 200),
    ("GET", "/iag/v1/crm_migration/status", {}, 200),
    ("POST", "/private/activity_logs/migrate", {"body": {"records": [RECORD]}}, 200),
    ("POST", "/private/activity_logs/migrate", {"body": {"records": [RECORD]}}, 200),
    ("POST", "/private/activity_logs/crm_migration/cancel", {"body": {"company_sso_id": "fuzz-co"}}, 200),
    ("POST", "/private/activity_logs/crm_migration/rollback", {"body": {"company_sso_id": "fuzz-co"}}, 200),
    (
        "POST",
        "/private/activity_logs/crm_migration/trigger",
        {"body": {"company_sso_id": "company-other"}},
        202,
    ),
    (
        "POST",
        "/private/activity_logs/crm_migration/trigger",
        {"body": {"company_sso_id": "company-other"}},
        409,
    ),
    (
        "POST",
        "/private/activity_logs/crm_migration/verify",
        {"body": {"company_sso_id": "fuzz-co", "sample": 1, "seed": 7}},
        200,
    ),
]


def test_every_route_answers_its_success_path_as_documented(
    live: LiveServer, crm_dsn: str, mongo_db: Any
) -> None:
    """Each route's success answer (and a repeated write, a second trigger) conforms to the document,
    every object in it declared field by field."""
    seed_contacts(mongo_db, "company-other", people_count(crm_dsn))
    schema = schema_at(live.url)
    headers = {"Authorization": AUTH, "Cookie": f"crm_session={SESSIONS.sign('fuzz-co')}"}
    seen = set()
    for method, path, parts, expected in SUCCESS_PATHS:
        case = schema[path][method].Case(**parts)
        response = case.call(base_url=live.url, headers=headers)
        assert response.status_code == expected, f"{method} {path}: {response.text}"
        case.validate_response(response, checks=conformance())
        seen.add((method, path))
    assert len(seen) == len(operations(live.url))


SECRET = "hunter2-0f9c"
"""A password the failures below carry in their messages: no answer may show it."""

DOWN: list[tuple[Exception, int, str]] = [
    (StoreUnavailable(f"MongoDB unreachable: mongodb://ops:{SECRET}@cdp"), 503, "DEPENDENCY_UNAVAILABLE"),
    (
        SourceUnavailable(f"PostgreSQL unreachable: postgresql://crm:{SECRET}@crm"),
        503,
        "DEPENDENCY_UNAVAILABLE",
    ),
    (DirectoryUnavailable(f"USMAN timed out (token {SECRET})"), 503, "DEPENDENCY_UNAVAILABLE"),
    (IndexesMissing(["activity_logs.uniq_company_external_id"]), 503, "INDEXES_MISSING"),
    (ConnectionRejected([("mongo_uri", f"MongoDB refused ops:{SECRET}")]), 500, "CONNECTION_REJECTED"),
    (JobUnreadable("job-1", "fuzz-co", "status 'Halted' is none of the statuses"), 500, "JOB_UNREADABLE"),
    (RuntimeError(f"a bug quoting a row's value {SECRET}"), 500, "INTERNAL"),
]


class FailingService:
    """An ``HttpService`` every call of which meets ``error``: a dependency down behind it, its own
    configuration or data wrong, or a bug."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.clock = FixedClock(dt.datetime(2024, 6, 1, tzinfo=dt.UTC))

    def _fail(self, *_args: object, **_kwargs: object) -> NoReturn:
        raise self.error

    migrate = trigger = cancel = status = rollback = verify = _fail


class LoggedText(logging.Handler):
    """Every record of the loggers it is added to, as formatted with its traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture(scope="module")
def mounted() -> Iterator[tuple[MountedApp, str]]:
    """One uvicorn server for the failures below; each mounts its own app in it."""
    app = MountedApp()
    with LiveServer(app) as server:
        yield app, server.url


@pytest.mark.parametrize(("error", "status", "code"), DOWN, ids=[type(e).__name__ for e, _, _ in DOWN])
def test_every_route_answers_a_failure_behind_it_as_documented(
    mounted: tuple[MountedApp, str], error: Exception, status: int, code: str
) -> None:
    """A dependency down (503), the service's own configuration or data wrong, or a bug (500): each
    route answers a status its document lists, in the error envelope, and shows no secret, nor
    does the server's log show the bug's message."""
    server, url = mounted
    service: Any = FailingService(error)
    app = create_app(service, basic_auth=BasicAuthCredentials("ops", "s3cret"), sessions=SESSIONS)
    headers = {"Authorization": AUTH, "Cookie": f"crm_session={SESSIONS.sign('fuzz-co')}"}
    routes = {(method, path): parts for method, path, parts, _ in SUCCESS_PATHS}
    logged = LoggedText()
    server_log = logging.getLogger("uvicorn.error")
    server_log.addHandler(logged)
    with server.mount(app), contextlib.ExitStack() as stack:
        stack.callback(server_log.removeHandler, logged)
        schema = schema_at(url)
        for (method, path), parts in routes.items():
            case = schema[path][method].Case(**parts)
            response = case.call(base_url=url, headers=headers)
            assert (response.status_code, response.json()["error"]["code"]) == (status, code), path
            case.validate_response(response, checks=conformance()[1:])  # all but "no 5xx"
            assert SECRET not in response.text
        assert len(routes) == len(operations(url))
    # The app logs each failure itself (a bug by its frames and types alone): the server logs none.
    assert not [line for line in logged.lines if SECRET in line]
