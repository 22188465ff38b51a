"""``UsmanConfig``: where USMAN lives and how patiently to ask it, each value checked when built.

A value that could never work (a token no header can carry, a timeout that is no finite number of
seconds, a number past ``USMAN_MAXIMA``) is ``UnusableUsmanSetting`` at load time, not a failure in
the middle of a run; the message names the field, never the token.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlsplit

from attrs import Attribute, evolve, field, frozen, validators

from .redaction import MASK, redact

_ENV_PREFIX = "CRM_AUDIT_USMAN_"
_HEADER_VALUE = re.compile(r"[\x20-\x7e]*")
"""What an HTTP client sends as a header value as it is: printable ASCII (RFC 9110 field-vchar, SP)."""
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
"""An HTTP header name: RFC 9110's ``token``."""


class UnusableUsmanSetting(ValueError):
    """A ``UsmanConfig`` value that could never work; the message names the field, never its value."""


def _finite(_: object, attribute: Attribute[float], value: float) -> None:
    if not math.isfinite(value):
        raise UnusableUsmanSetting(f"{attribute.name} must be a finite number")


USMAN_MAXIMA: Final = {
    "connect_timeout": 600.0,
    "read_timeout": 600.0,
    "max_emails_per_request": 10_000,
    "max_attempts": 100,
    "backoff_base": 600.0,
    "backoff_max": 600.0,
    "max_connections": 1_000,
    "call_timeout": 600.0,
}
"""The largest value each numeric setting takes. A call may wait ten minutes at most (past that the
job's lease would have to outlive a silent directory; the default lease is two minutes), a request
asks for at most a page's emails (a page holds at most 10,000 rows), and a hundred attempts or a
thousand connections are past anything one runner needs: a larger number is a typo (``5e21``)."""


LEASE_SHARE: Final = 0.5
"""One lookup (``UsmanClient.sso_ids_by_emails``: every chunk, attempt and
backoff wait) ends within ``call_timeout`` seconds (45 by default), and the runner gives it at most
``LEASE_SHARE`` (half) of ``lease_seconds``: the run loop renews a job's lease once half of it has
passed since the last renewal, before the page's next write, so a page's lookups — the CRM users,
USMAN, the CDP contacts — must end within the other half, or the lease expires under a live runner
(another runner takes the job over, and this one's next write is refused). Per attempt the answer is
bounded as before (``usman.ANSWER_READS``); without this, a page of five chunks could wait
5 × 3 attempts × 17 s plus backoff, about 5 minutes, against a 2-minute lease. When it runs out, no
attempt or chunk is started: the chunks not answered by then are unanswered (their actors degrade,
counted) and the answered ones kept. A lease shorter than twice ``connect_timeout + read_timeout``
(7 s by default; only a test's) still gives a lookup that much: one request's connect and read."""


def _at_most(_: object, attribute: Attribute[Any], value: float) -> None:
    maximum = USMAN_MAXIMA[attribute.name]
    if value > maximum:
        shown = int(maximum) if float(maximum).is_integer() else maximum
        raise UnusableUsmanSetting(f"{attribute.name} must be at most {shown}")


def _header_value(_: object, attribute: Attribute[str], value: str) -> None:
    # Never quote the value: it is (or is sent beside) the token.
    if not _HEADER_VALUE.fullmatch(value):
        raise UnusableUsmanSetting(
            f"{attribute.name} must be printable ASCII, without CR, LF or other controls"
        )


def _url_repr(value: str) -> str:
    """A base URL as ``repr`` shows it: without a password, token or key (``redaction.redact``)."""
    return repr(redact(value))


def shown_path(value: str) -> str:
    """A path as ``config`` and ``repr`` show it: its query (``?api_key=…``) hidden whole."""
    path, query, _ = value.partition("?")
    return path + (f"?{MASK}" if query else "")


def _path_repr(value: str) -> str:
    return repr(shown_path(value))


def base_url_problem(base_url: str, *, auth_header: str = "Authorization", token: str = "") -> str | None:
    """What makes ``base_url`` send the lookup elsewhere than it says, or None; never quotes it.

    * A query or fragment (``?…``, ``#…``): httpx appends the path to the base URL's text, query
      included, so ``http://h/api?x=1`` asked ``/api?x=1/api/v1/users/sso-ids`` (``x`` got the path as
      its value). A query belongs in ``path`` (``/api/v1/users/sso-ids?api_key=…``), which is sent as
      written.
    * User info (``user:password@``) while the token goes in ``Authorization``: httpx sends the user
      info as Basic auth in that header, in place of the token, and USMAN answers 401. With the token
      in another header (``X-Api-Key``), or no token, the user info is sent as Basic auth as it is
      (a proxy before USMAN may ask for it).
    """
    if "?" in base_url or "#" in base_url:  # a literal "?" or "#" always starts one (RFC 3986 §3)
        return (
            "must not hold a query or fragment (?…, #…): the path would be appended after it; "
            "give a query in CRM_AUDIT_USMAN_PATH (/api/v1/users/sso-ids?api_key=…)"
        )
    userinfo = urlsplit(base_url).netloc.rpartition("@")[0]
    if userinfo and token and auth_header.lower() == "authorization":
        return (
            "must not hold a user name or password (user:password@host) while the token goes in the "
            "Authorization header: httpx would send them there as Basic auth in place of the token; "
            "remove them, or send the token in another header (CRM_AUDIT_USMAN_AUTH_HEADER)"
        )
    return None


def _request_path(_: object, attribute: Attribute[str], value: str) -> None:
    # httpx sends a request whose path is an absolute URL (https://other/…) there, not to base_url,
    # and reads //other/… as a host it then drops: the lookup, with the token in its header, went
    # to another host (over http:// too) while base_url, the one shown and checked, named USMAN.
    # Never quote the value: its query may hold a key (?api_key=…).
    parts = urlsplit(value)
    if not value.startswith("/") or value.startswith("//") or parts.scheme or parts.netloc:
        raise UnusableUsmanSetting(
            f"{attribute.name} must be a path on base_url starting with one / (/api/v1/users/sso-ids): "
            "an absolute URL (https://…) or //host would send the lookup, and the token, elsewhere; "
            "give the scheme and host in CRM_AUDIT_USMAN_BASE_URL"
        )


def _header_name(_: object, attribute: Attribute[str], value: str) -> None:
    if not _HEADER_NAME.fullmatch(value):
        raise UnusableUsmanSetting(
            f"{attribute.name} must be an HTTP header name: letters, digits and !#$%&'*+-.^_`|~"
        )


@frozen
class UsmanConfig:
    """Where USMAN lives and how patiently to ask it. ``token`` is kept out of ``repr``, and so are
    a password or key in ``base_url`` and the query of ``path``.

    ``UnusableUsmanSetting`` (a ``ValueError``) for a value that could never work: a token or scheme
    that is no header value (CR, LF, other controls, non-ASCII), a header name that is no HTTP token,
    a ``path`` that is no path starting with one ``/`` (an absolute URL, ``//host``: httpx would send
    the lookup and the token there, not to ``base_url``),
    a timeout or backoff that is not a finite number of seconds, a number past ``USMAN_MAXIMA``, a
    ``base_url`` with a query or fragment, or with user info that would replace the token
    (``base_url_problem``). Its message never quotes the token or the URL.
    """

    base_url: str = field(repr=_url_repr)
    token: str = field(default="", repr=False, validator=_header_value)
    path: str = field(default="/api/v1/users/sso-ids", repr=_path_repr, validator=_request_path)
    auth_header: str = field(default="Authorization", validator=_header_name)
    # Prefix of the header value ("Bearer <token>"); empty sends the bare token (e.g. X-Api-Key).
    auth_scheme: str = field(default="Bearer", validator=_header_value)
    connect_timeout: float = field(default=2.0, validator=[validators.gt(0), _finite, _at_most])
    read_timeout: float = field(default=5.0, validator=[validators.gt(0), _finite, _at_most])
    max_emails_per_request: int = field(default=100, validator=[validators.ge(1), _at_most])
    # Attempts per request, the first included: 3 means up to two retries.
    max_attempts: int = field(default=3, validator=[validators.ge(1), _at_most])
    backoff_base: float = field(default=0.2, validator=[validators.ge(0), _finite, _at_most])
    backoff_max: float = field(default=5.0, validator=[validators.ge(0), _finite, _at_most])
    max_connections: int = field(default=10, validator=[validators.ge(1), _at_most])
    # The whole lookup's time: every chunk, attempt and backoff wait (LEASE_SHARE).
    call_timeout: float = field(default=45.0, validator=[validators.gt(0), _finite, _at_most])

    def __attrs_post_init__(self) -> None:
        problem = base_url_problem(self.base_url, auth_header=self.auth_header, token=self.token)
        if problem is not None:
            raise UnusableUsmanSetting(f"base_url {problem}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> UsmanConfig:
        """Read ``CRM_AUDIT_USMAN_*``: ``BASE_URL`` (required), ``TOKEN``, ``PATH``, ``AUTH_HEADER``,
        ``AUTH_SCHEME``, ``CONNECT_TIMEOUT``, ``READ_TIMEOUT``, ``MAX_EMAILS``, ``MAX_ATTEMPTS``,
        ``BACKOFF_BASE``, ``BACKOFF_MAX``, ``MAX_CONNECTIONS``, ``CALL_TIMEOUT``; unset ones keep their
        defaults."""
        get = {
            key[len(_ENV_PREFIX) :]: value for key, value in environ.items() if key.startswith(_ENV_PREFIX)
        }
        if "BASE_URL" not in get:
            raise ValueError(f"{_ENV_PREFIX}BASE_URL is not set")
        options: dict[str, Any] = {"base_url": get["BASE_URL"]}
        for name, key, kind in (
            ("token", "TOKEN", str),
            ("path", "PATH", str),
            ("auth_header", "AUTH_HEADER", str),
            ("auth_scheme", "AUTH_SCHEME", str),
            ("connect_timeout", "CONNECT_TIMEOUT", float),
            ("read_timeout", "READ_TIMEOUT", float),
            ("max_emails_per_request", "MAX_EMAILS", int),
            ("max_attempts", "MAX_ATTEMPTS", int),
            ("backoff_base", "BACKOFF_BASE", float),
            ("backoff_max", "BACKOFF_MAX", float),
            ("max_connections", "MAX_CONNECTIONS", int),
            ("call_timeout", "CALL_TIMEOUT", float),
        ):
            if key in get:
                options[name] = kind(get[key])
        return cls(**options)

    def within_lease(self, lease_seconds: float) -> UsmanConfig:
        """This config with ``call_timeout`` at most half of ``lease_seconds`` (``LEASE_SHARE``), yet
        no less than ``connect_timeout + read_timeout``: one request's connect and read, without which
        every lookup would be an outage (a test's one-second lease)."""
        cap = max(lease_seconds * LEASE_SHARE, self.connect_timeout + self.read_timeout)
        return self if self.call_timeout <= cap else evolve(self, call_timeout=cap)

    def auth_value(self) -> str:
        return f"{self.auth_scheme} {self.token}" if self.auth_scheme else self.token
