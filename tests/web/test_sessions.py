"""The default session resolver: itsdangerous-signed tokens that expire."""

from __future__ import annotations

from starlette.requests import Request

from crm_audit_adapters.http import SignedSessionResolver


def request_with(token: str) -> Request:
    headers = [(b"authorization", f"Bearer {token}".encode())]
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
