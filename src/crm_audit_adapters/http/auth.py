"""Who is calling: BasicAuth for the S2S routes, a signed session for the tenant-scoped route."""

from __future__ import annotations

import base64
import hmac
import re
import time
from collections.abc import Callable
from typing import Final

from attrs import field, frozen
from itsdangerous import BadData, TimestampSigner, URLSafeTimedSerializer
from starlette.requests import Request

SessionResolver = Callable[[Request], "str | None"]
"""Returns the authenticated tenant's company_sso_id, or None when the request carries no valid session."""

REALM: Final = "crm-audit"
"""The protection space each ``WWW-Authenticate`` challenge names (RFC 7235 §2.2)."""
BASIC_CHALLENGE: Final = f'Basic realm="{REALM}"'
"""The challenge of a 401 from a ``/private`` route (RFC 7617 §2)."""
MALFORMED_BEARER_CHALLENGE: Final = f'Bearer realm="{REALM}", error="invalid_request"'
"""The challenge of the tenant status route's 400 for a ``Bearer`` header that carries no token
(RFC 6750 §3.1: a malformed request is ``invalid_request``, 400)."""

_B64TOKEN: Final = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
"""RFC 6750 §2.1: ``b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="``."""


@frozen
class BasicAuthCredentials:
    username: str
    password: str = field(repr=False)

    def accepts(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, encoded = header.partition(" ")
        encoded = encoded.lstrip(" ")  # RFC 7235 §2.1: a case-free scheme, then 1*SP before the token
        if scheme.lower() != "basic" or not encoded:
            return False
        try:
            username, sep, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except ValueError:  # binascii.Error, UnicodeDecodeError, or non-ASCII text b64decode refuses
            return False
        # Compare both parts in constant time, and always both, so timing reveals neither.
        user_ok = hmac.compare_digest(username.encode(), self.username.encode())
        password_ok = hmac.compare_digest(password.encode(), self.password.encode())
        return bool(sep) and user_ok and password_ok


def bearer_challenge(request: Request, cookie_name: str | None) -> str:
    """The ``WWW-Authenticate`` challenge of the tenant status route's refusal (RFC 6750 §3).

    ``MALFORMED_BEARER_CHALLENGE`` (``error="invalid_request"``, a 400) for a ``Bearer`` header whose
    credentials are not one ``b64token`` (§2.1: ``"Bearer" 1*SP b64token``): an empty one
    (``Bearer``, ``Bearer ``), or one with a character outside that grammar (a space, a comma...).
    ``Bearer realm="crm-audit", error="invalid_token"`` when the request presented a token and it was
    refused (forged, expired, or not one of ours): a ``Bearer`` token, or, with no ``Bearer`` header,
    a non-empty ``cookie_name`` cookie (the session cookie of the resolver, None when it reads none
    this function knows). The bare ``Bearer realm="crm-audit"`` when it presented none (§3.1: a
    request that lacks any authentication information gets no error code). The header's content is
    never quoted.
    """
    bare = f'Bearer realm="{REALM}"'
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() == "bearer":  # the header alone decides, as for ``SignedSessionResolver``
            if _B64TOKEN.fullmatch(credentials.strip(" ")) is None:
                return MALFORMED_BEARER_CHALLENGE
            return f'{bare}, error="invalid_token"'
    if cookie_name is not None and request.cookies.get(cookie_name):
        return f'{bare}, error="invalid_token"'
    return bare


DEFAULT_SESSION_MAX_AGE: Final = 8 * 3600.0
"""Seconds a signed session stays valid after it was signed (``session_max_age`` in settings)."""


def _whole_seconds(_instance: object, _attribute: object, value: float) -> None:
    """``max_age``: a positive whole number of seconds, else ``ValueError``. A token records when it
    was signed in whole seconds, so a fraction of ``max_age`` would be dropped without a word."""
    if not (value >= 1 and float(value).is_integer()):
        raise ValueError(f"max_age must be a whole number of seconds, at least 1, not {value!r}")


_SALT: Final = "crm-audit-transform.session"


@frozen
class SignedSessionResolver:
    """Default session adapter: an itsdangerous timed token in a cookie or a bearer token.

    The token (``URLSafeTimedSerializer``: the company_sso_id, when it was signed, an HMAC over
    both) is refused once older than ``max_age`` seconds (a whole number: ``ValueError`` for
    another, as the settings refuse it), or when its signature does not verify.
    itsdangerous is the signing library Flask and Starlette's own sessions use, so signing,
    timestamps and constant-time comparison are not ours to get wrong. Services with their own
    session store plug in any ``SessionResolver`` instead; the route only ever trusts what the
    resolver returns, never a query parameter. ``now`` (seconds since the epoch) is for tests.
    """

    secret: bytes = field(repr=False)
    cookie_name: str = "crm_session"
    max_age: float = field(default=DEFAULT_SESSION_MAX_AGE, validator=_whole_seconds)
    now: Callable[[], float] = field(default=time.time, repr=False)
    _serializer: URLSafeTimedSerializer = field(init=False, repr=False)

    @_serializer.default
    def _make_serializer(self) -> URLSafeTimedSerializer:
        now = self.now

        class _Signer(TimestampSigner):
            def get_timestamp(self) -> int:
                return int(now())

        return URLSafeTimedSerializer(self.secret, salt=_SALT, signer=_Signer)

    def sign(self, company_sso_id: str) -> str:
        """A token naming ``company_sso_id``, valid for ``max_age`` seconds from now."""
        return str(self._serializer.dumps(company_sso_id))

    def __call__(self, request: Request) -> str | None:
        """The company of the request's session: its ``Authorization: Bearer`` token when it sends
        one, else its cookie's; None when that token is missing, malformed or refused (the route's
        400 ``invalid_request`` for ``Bearer`` credentials that are no token, else 401:
        ``bearer_challenge``).

        A ``Bearer`` header is the credential the caller chose (RFC 6750 §2.1): its token alone
        decides, and one that is empty (``Bearer``, ``Bearer ``) or does not verify is no session
        even beside a valid cookie, never silently replaced by the cookie the browser adds. Another
        scheme is not this resolver's: a browser sends its cached BasicAuth login for the
        ``/private`` routes with every request to the app's origin, so a ``Basic`` header leaves the
        cookie to decide.
        """
        token = request.cookies.get(self.cookie_name)
        header = request.headers.get("authorization")
        if header is not None:
            scheme, _, credentials = header.partition(" ")  # RFC 7235 §2.1: a case-free scheme, 1*SP
            if scheme.lower() == "bearer":
                token = credentials.strip(" ")
        if not token:
            return None
        try:
            company = self._serializer.loads(token, max_age=int(self.max_age))
        except BadData:  # a bad signature, an expired or malformed token: no session
            return None
        return company if isinstance(company, str) and company else None
