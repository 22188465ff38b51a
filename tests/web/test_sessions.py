"""The default session resolver: itsdangerous-signed tokens that expire."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from crm_audit_adapters.http import SignedSessionResolver
from crm_audit_adapters.http.auth import bearer_challenge


def request_with(token: str) -> Request:
    return request_of(f"Bearer {token}")


def request_of(authorization: str | None, cookie: str | None = None) -> Request:
    """A request with that ``Authorization`` header and ``crm_session`` cookie (each when given)."""
    headers = [] if authorization is None else [(b"authorization", authorization.encode())]
    if cookie is not None:
        headers.append((b"cookie", f"crm_session={cookie}".encode()))
    return Request({"type": "http", "method": "GET", "path": "/", "headers": headers, "query_string": b""})


class Clock:
    def __init__(self) -> None:
        self.seconds = 1_700_000_000.0

    def __call__(self) -> float:
        return self.seconds


class TestSignedSessionResolver:
    def test_a_fresh_token_names_its_company(self) -> None:
        """A token signed now resolves to the company it names."""
        sessions = SignedSessionResolver(secret=b"k")
        assert sessions(request_with(sessions.sign("company-acme"))) == "company-acme"

    def test_a_token_older_than_max_age_is_refused(self) -> None:
        """Past max_age seconds the same token is no session at all."""
        clock = Clock()
        sessions = SignedSessionResolver(secret=b"k", max_age=60, now=clock)
        token = sessions.sign("company-acme")
        clock.seconds += 60
        assert sessions(request_with(token)) == "company-acme"
        clock.seconds += 1
        assert sessions(request_with(token)) is None

    def test_another_secret_or_a_changed_company_is_refused(self) -> None:
        """A token signed with another key, or whose payload was edited, does not verify."""
        token = SignedSessionResolver(secret=b"other").sign("company-acme")
        sessions = SignedSessionResolver(secret=b"k")
        assert sessions(request_with(token)) is None
        mine = sessions.sign("company-acme")
        assert sessions(request_with("X" + mine[1:])) is None

    def test_the_secret_never_shows_in_repr(self) -> None:
        """repr of the resolver leaves the secret out."""
        assert "s3cret" not in repr(SignedSessionResolver(secret=b"s3cret"))

    def test_a_bearer_header_decides_even_when_empty_or_refused_beside_a_valid_cookie(self) -> None:
        """RFC 6750: the Authorization header is the credential the caller chose; an empty or bad
        token there is no session (a 401), never replaced by the cookie. ``Bearer`` with no space
        was read as no header at all, so the cookie answered, while ``Bearer `` was refused."""
        sessions = SignedSessionResolver(secret=b"k")
        cookie = sessions.sign("company-acme")
        for header in ("Bearer", "Bearer ", "bearer   ", "Bearer not-a-token"):
            assert sessions(request_of(header, cookie)) is None, header
        assert sessions(request_of(f"BEARER  {sessions.sign('company-b')}", cookie)) == "company-b"

    def test_another_scheme_leaves_the_cookie_to_decide(self) -> None:
        """A browser's cached BasicAuth login for /private goes with every request to the origin:
        the session cookie still names the tenant beside it; alone, it is no session."""
        sessions = SignedSessionResolver(secret=b"k")
        cookie = sessions.sign("company-acme")
        assert sessions(request_of("Basic b3BzOnNlY3JldA==", cookie)) == "company-acme"
        assert sessions(request_of(None, cookie)) == "company-acme"
        assert sessions(request_of("Basic b3BzOnNlY3JldA==")) is None

    @pytest.mark.parametrize("max_age", [0.5, 60.25, 0, -1, float("inf"), float("nan")])
    def test_a_max_age_that_is_no_whole_number_of_seconds_is_refused(self, max_age: float) -> None:
        """A token's times are whole seconds: a fraction was dropped without a word (0.5 acted as 0)."""
        with pytest.raises(ValueError, match="whole number of seconds"):
            SignedSessionResolver(secret=b"k", max_age=max_age)
        assert SignedSessionResolver(secret=b"k", max_age=60.0).max_age == 60


class TestBearerChallenge:
    def test_a_bearer_header_with_no_token_is_a_malformed_request_even_beside_a_cookie(self) -> None:
        """``Bearer``, ``Bearer `` (which an HTTP client refuses to send) or credentials outside the
        ``b64token`` grammar carry no token (RFC 6750 §2.1): ``invalid_request`` (§3.1), as the header
        decides and the cookie beside it is not read. A token of that grammar is ``invalid_token``."""
        for header in ("Bearer", "Bearer ", "bearer   ", "Bearer a b", "Bearer a=b", "Bearer é"):
            challenge = bearer_challenge(request_of(header, "forged"), "crm_session")
            assert challenge == 'Bearer realm="crm-audit", error="invalid_request"', header
        for header in ("Bearer a-Z.0_9~+/==", "bearer   not-a-token"):
            challenge = bearer_challenge(request_of(header, "forged"), "crm_session")
            assert challenge == 'Bearer realm="crm-audit", error="invalid_token"', header

    def test_a_cookie_counts_only_when_the_resolver_reads_it(self) -> None:
        """The session cookie presents a token to the default resolver, none to one that reads no cookie."""
        request = request_of(None, "forged")
        assert bearer_challenge(request, "crm_session").endswith(', error="invalid_token"')
        assert bearer_challenge(request, None) == 'Bearer realm="crm-audit"'
