"""Who is calling: BasicAuth for the S2S routes, a signed session for the tenant-scoped route."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable

from attrs import field, frozen
from starlette.requests import Request

SessionResolver = Callable[[Request], "str | None"]
"""Returns the authenticated tenant's company_sso_id, or None when the request carries no valid session."""


@frozen
class BasicAuthCredentials:
    username: str
    password: str = field(repr=False)

    def accepts(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic" or not encoded:
            return False
        try:
            username, sep, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        # Compare both parts in constant time, and always both, so timing reveals neither.
        user_ok = hmac.compare_digest(username.encode(), self.username.encode())
        password_ok = hmac.compare_digest(password.encode(), self.password.encode())
        return bool(sep) and user_ok and password_ok


@frozen
class SignedSessionResolver:
    """Default session adapter: ``<company_sso_id>.<hex HMAC-SHA256>`` in a cookie or a bearer token.

    Services with their own session store plug in any ``SessionResolver`` instead; the route only
    ever trusts what the resolver returns, never a query parameter.
    """

    secret: bytes = field(repr=False)
    cookie_name: str = "crm_session"

    def sign(self, company_sso_id: str) -> str:
        digest = hmac.new(self.secret, company_sso_id.encode(), hashlib.sha256).hexdigest()
        return f"{company_sso_id}.{digest}"

    def __call__(self, request: Request) -> str | None:
        token = request.cookies.get(self.cookie_name)
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            token = header[7:].strip()
        if not token:
            return None
        company, sep, signature = token.rpartition(".")
        if not sep or not company:
            return None
        expected = hmac.new(self.secret, company.encode(), hashlib.sha256).hexdigest()
        return company if hmac.compare_digest(signature.encode(), expected.encode()) else None
