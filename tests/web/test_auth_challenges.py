"""Every 401 names the scheme its route takes (RFC 7235 §3.1): Basic on ``/private``, Bearer on the
tenant status route (RFC 6750 §3), with ``error="invalid_token"`` only when a token was refused; a
``Bearer`` header with no token is a 400 ``error="invalid_request"``."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from crm_audit_adapters.http import BasicAuthCredentials, SignedSessionResolver, create_app
from crm_audit_adapters.http.openapi import openapi_document
from support.live_server import LiveServer

SESSIONS = SignedSessionResolver(secret=b"challenge-secret", max_age=60)
BARE = 'Bearer realm="crm-audit"'
REFUSED = 'Bearer realm="crm-audit", error="invalid_token"'
INVALID_REQUEST = 'Bearer realm="crm-audit", error="invalid_request"'
FORGED = SignedSessionResolver(secret=b"another-secret").sign("company-acme")


class NoService:
    """A service no request reaches: every call below is refused before it."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the service was called ({name}) for a request that is not authenticated")


def app_of(sessions: Any) -> Any:
    return create_app(
        NoService(),  # type: ignore[arg-type]
        basic_auth=BasicAuthCredentials("ops", "pw"),
        sessions=sessions,
    )


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with LiveServer(app_of(SESSIONS)) as live, httpx.Client(base_url=live.url, timeout=30) as client:
        yield client


def tenant_status(http: httpx.Client, headers: dict[str, str], cookie: str | None = None) -> httpx.Response:
    http.cookies.clear()
    if cookie is not None:
        http.cookies.set("crm_session", cookie)
    return http.get("/iag/v1/crm_migration/status", headers=headers)


class TestTenantStatusChallenge:
    @pytest.mark.parametrize(
        ("headers", "cookie"),
        [
            ({}, None),
            ({"Authorization": "Basic " + base64.b64encode(b"ops:pw").decode()}, None),
        ],
        ids=["nothing", "basic-login-only"],
    )
    def test_no_token_is_a_bare_bearer_challenge(
        self, http: httpx.Client, headers: dict[str, str], cookie: str | None
    ) -> None:
        """No token presented: 401 with ``Bearer realm=…`` and no error code (RFC 6750 §3.1), where it
        was a Basic challenge, which had a browser open a login dialog for the indicator's page."""
        answer = tenant_status(http, headers, cookie)
        assert answer.status_code == 401
        assert answer.json()["error"]["code"] == "UNAUTHENTICATED"
        assert answer.headers.get_list("www-authenticate") == [BARE]

    @pytest.mark.parametrize(
        ("headers", "cookie"),
        [
            ({"Authorization": f"Bearer {FORGED}"}, None),
            ({"Authorization": "bearer   not-a-token"}, None),
            ({}, FORGED),
            ({"Authorization": "Basic " + base64.b64encode(b"ops:pw").decode()}, FORGED),
            ({"Authorization": f"Bearer {FORGED}"}, SESSIONS.sign("company-acme")),
        ],
        ids=[
            "forged-bearer",
            "malformed-bearer",
            "forged-cookie",
            "basic-and-forged-cookie",
            "bearer-decides",
        ],
    )
    def test_a_refused_token_is_invalid_token_and_never_echoed(
        self, http: httpx.Client, headers: dict[str, str], cookie: str | None
    ) -> None:
        """A token presented and refused: ``error="invalid_token"`` (RFC 6750 §3.1), the token itself
        nowhere in the answer, its headers included."""
        answer = tenant_status(http, headers, cookie)
        assert answer.status_code == 401
        assert answer.headers.get_list("www-authenticate") == [REFUSED]
        for token in (FORGED, "not-a-token"):
            assert token not in answer.text
            assert all(token not in value for value in answer.headers.values())

    @pytest.mark.parametrize(
        "header",
        [
            "Bearer",
            "bearer   s3cr3t-part other-part",
            "Bearer s3cr3t,x",
            "Bearer ==s3cr3t",
        ],
    )
    def test_bearer_credentials_that_are_no_token_are_400_invalid_request(
        self, http: httpx.Client, header: str
    ) -> None:
        """``Bearer`` with no ``b64token`` after it (RFC 6750 §2.1: an empty one, or a character outside
        its grammar) is a malformed request: 400 with ``error="invalid_request"`` (§3.1), even beside a
        valid cookie, where it was 401 with the bare challenge. Nothing of the header is echoed.
        (``Bearer `` with trailing spaces, which httpx refuses to send: tests/web/test_sessions.py.)"""
        answer = tenant_status(http, {"Authorization": header}, SESSIONS.sign("company-acme"))
        assert answer.status_code == 400
        assert answer.json()["error"]["code"] == "MALFORMED_AUTHORIZATION"
        assert answer.headers.get_list("www-authenticate") == [INVALID_REQUEST]
        assert "s3cr3t" not in answer.text
        assert all("s3cr3t" not in value for value in answer.headers.values())

    def test_an_expired_session_is_invalid_token(self) -> None:
        """A session past ``max_age`` is a refused token too."""
        now = [1_700_000_000.0]
        sessions = SignedSessionResolver(secret=b"k", max_age=60, now=lambda: now[0])
        token = sessions.sign("company-acme")
        now[0] += 61
        with LiveServer(app_of(sessions)) as live, httpx.Client(base_url=live.url, timeout=30) as client:
            answer = client.get("/iag/v1/crm_migration/status", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"] == REFUSED

    def test_a_resolver_of_the_services_own_gets_the_header_rule(self) -> None:
        """A custom resolver's cookies are not known to the app: its Bearer header alone counts."""
        with (
            LiveServer(app_of(lambda _request: None)) as live,
            httpx.Client(base_url=live.url, timeout=30) as client,
        ):
            client.cookies.set("sid", "x")
            bare = client.get("/iag/v1/crm_migration/status")
            refused = client.get("/iag/v1/crm_migration/status", headers={"Authorization": "Bearer x"})
        assert bare.headers["www-authenticate"] == BARE
        assert refused.headers["www-authenticate"] == REFUSED


def _operations() -> list[tuple[str, str]]:
    paths: dict[str, dict[str, Any]] = openapi_document()["paths"]  # type: ignore[assignment]
    return [
        (method.upper(), path)
        for path, item in paths.items()
        for method, operation in item.items()
        if "401" in operation["responses"]
    ]


@pytest.mark.parametrize(("method", "path"), _operations())
def test_every_401_the_app_gives_carries_its_routes_challenge(
    http: httpx.Client, method: str, path: str
) -> None:
    """Each route the document lists with a 401, called with no credentials: 401 and one challenge,
    Basic on the ``/private`` routes (RFC 7617), Bearer on the session route (RFC 6750)."""
    http.cookies.clear()
    answer = http.request(
        method, path, params={"company_sso_id": "company-acme"}, json={"company_sso_id": "company-acme"}
    )
    assert answer.status_code == 401
    expected = 'Basic realm="crm-audit"' if path.startswith("/private/") else BARE
    assert answer.headers.get_list("www-authenticate") == [expected]
