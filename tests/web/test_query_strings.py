"""The status routes read ``company_sso_id`` from the query once, as UTF-8 text, or refuse it (400).

Starlette's ``query_params`` took the last of repeated values and turned a byte that is no UTF-8
into U+FFFD: the private route answered for one of two accounts named, or for one nobody named.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from crm_audit_adapters.http import BasicAuthCredentials, SignedSessionResolver, create_app
from crm_audit_transform.errors import JobNotFound
from support.live_server import LiveServer

AUTH = {"Authorization": "Basic " + base64.b64encode(b"ops:pw").decode()}
SESSIONS = SignedSessionResolver(secret=b"query-strings")
PRIVATE = "/private/activity_logs/crm_migration/status"
TENANT = "/iag/v1/crm_migration/status"


class Recording:
    """An ``HttpService`` whose ``status`` records the account it was asked for, then finds no job."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def status(self, company: str) -> Any:
        self.asked.append(company)
        raise JobNotFound("no job")


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Recording, httpx.Client]]:
    service = Recording()
    app = create_app(
        service,  # type: ignore[arg-type]
        basic_auth=BasicAuthCredentials("ops", "pw"),
        sessions=SESSIONS,
    )
    with LiveServer(app) as live, httpx.Client(base_url=live.url, timeout=30) as http:
        yield service, http


@pytest.fixture
def service(served: tuple[Recording, httpx.Client]) -> Recording:
    served[0].asked.clear()
    return served[0]


@pytest.fixture
def http(served: tuple[Recording, httpx.Client]) -> httpx.Client:
    return served[1]


def refused(answer: httpx.Response) -> tuple[int, str]:
    body = answer.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    return answer.status_code, body["error"]["code"]


class TestPrivateStatus:
    def test_one_value_is_the_account_asked_for(self, service: Recording, http: httpx.Client) -> None:
        """Percent-encoded UTF-8 (and ``+`` for a space) reads as the text it encodes."""
        http.get(f"{PRIVATE}?company_sso_id=caf%C3%A9+9b2f", headers=AUTH)
        assert service.asked == ["café 9b2f"]

    @pytest.mark.parametrize(
        "query",
        [
            "company_sso_id=company-a&company_sso_id=company-b",
            "company_sso_id=company-a&company_sso_id=company-a",
            "company_sso_id=company-a&company_sso_id=",
        ],
    )
    def test_a_repeated_company_is_refused(self, service: Recording, http: httpx.Client, query: str) -> None:
        answer = http.get(f"{PRIVATE}?{query}", headers=AUTH)
        assert refused(answer) == (400, "MALFORMED_QUERY")
        assert "given 2 times" in answer.json()["error"]["message"]
        assert service.asked == []

    @pytest.mark.parametrize(
        "query",
        [
            "company_sso_id=company-%FF",  # no UTF-8 at all
            "company_sso_id=caf%C3",  # a sequence cut short
            "company_sso_id=caf%ED%B3%A9",  # a lone surrogate, encoded
            "other=%FF&company_sso_id=company-a",  # any part of the query
        ],
    )
    def test_a_query_that_is_not_utf8_is_refused(
        self, service: Recording, http: httpx.Client, query: str
    ) -> None:
        answer = http.get(f"{PRIVATE}?{query}", headers=AUTH)
        assert refused(answer) == (400, "MALFORMED_QUERY")
        assert "%" not in answer.json()["error"]["message"]  # the query is not quoted
        assert service.asked == []


class TestTenantStatus:
    def test_a_repeated_company_is_refused_even_when_one_is_the_sessions(
        self, service: Recording, http: httpx.Client
    ) -> None:
        """The last value decided: ``?company_sso_id=other&company_sso_id=mine`` passed the 403."""
        http.cookies.set("crm_session", SESSIONS.sign("company-a"))
        try:
            answer = http.get(f"{TENANT}?company_sso_id=company-b&company_sso_id=company-a")
            assert refused(answer) == (400, "MALFORMED_QUERY")
            assert refused(http.get(f"{TENANT}?company_sso_id=company-%FF")) == (400, "MALFORMED_QUERY")
            assert service.asked == []
            http.get(f"{TENANT}?company_sso_id=company-a")
            assert service.asked == ["company-a"]
        finally:
            http.cookies.clear()

    def test_the_document_lists_the_400(self, http: httpx.Client) -> None:
        responses = http.get("/openapi.json").json()["paths"][TENANT]["get"]["responses"]
        assert "400" in responses
