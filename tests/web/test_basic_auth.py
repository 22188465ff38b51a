"""BasicAuth credentials read as RFC 7235 writes the header: a case-free scheme, then one or more spaces."""

from __future__ import annotations

import base64

import pytest
from starlette.requests import Request

from crm_audit_adapters.http import BasicAuthCredentials

CREDENTIALS = BasicAuthCredentials("ops", "a-password-of-16ch")
TOKEN = base64.b64encode(b"ops:a-password-of-16ch").decode()


def request_with(authorization: str) -> Request:
    headers = [(b"authorization", authorization.encode())]
    return Request({"type": "http", "method": "GET", "path": "/", "headers": headers, "query_string": b""})


class TestBasicAuthCredentials:
    @pytest.mark.parametrize(
        "header", [f"Basic {TOKEN}", f"basic {TOKEN}", f"BASIC {TOKEN}", f"Basic   {TOKEN}"]
    )
    def test_the_scheme_in_any_case_then_any_run_of_spaces_is_accepted(self, header: str) -> None:
        """``credentials = auth-scheme 1*SP token68`` (RFC 7235 §2.1): two spaces are as good as one."""
        assert CREDENTIALS.accepts(request_with(header))

    @pytest.mark.parametrize(
        "header",
        [
            f"Basic\t{TOKEN}",
            f"Basic{TOKEN}",
            "Basic ",
            "Basic    ",
            f"Bearer {TOKEN}",
            "Basic " + base64.b64encode(b"ops:another-password").decode(),
            "Basic " + base64.b64encode(b"ops").decode(),
        ],
    )
    def test_another_separator_scheme_or_login_is_refused(self, header: str) -> None:
        """A tab is no SP, a missing token or colon is no login, and a wrong password is refused."""
        assert not CREDENTIALS.accepts(request_with(header))
