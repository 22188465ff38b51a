"""Every setting's key: its type and check, the environment variables that name them, near misses."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Final

from ..url_checks import broker_url_problem, result_backend_problem
from .checks import (
    HTTP_PASSWORD_MIN_CHARS,
    LEASE_SECONDS_MIN,
    SESSION_SECRET_MIN_CHARS,
    Check,
    at_least,
    mapping_file_problem,
    mongo_database_problem,
    mongo_uri_problem,
    plain_text,
    postgres_dsn_problem,
    within,
)
from .model import LOADER_LIMITS, PAGE_BYTES_RANGE

CONFIG_ENV: Final = "CRM_AUDIT_SETTINGS"
ENV_PREFIX: Final = "CRM_AUDIT_"
USMAN_ENV_PREFIX: Final = "CRM_AUDIT_USMAN_"
LOADER_ENV_PREFIX: Final = "CRM_AUDIT_LOADER_"

# key: (type, check). Ranges come from what the run can honour: a page of 1 to 10,000 rows, a
# lease of at least a second (LEASE_SECONDS_MIN) and at most a day, so a dead runner's job is taken
# over within a day. URLs, DSNs, names and secrets refuse surrounding white space and control
# characters (plain_text; postgres_dsn_problem its own way).
SCALAR_KEYS: Final[dict[str, tuple[type, Check | None]]] = {
    "database_url": (str, postgres_dsn_problem),  # text_problem inside: key=value pairs span lines
    "mongo_uri": (str, plain_text(mongo_uri_problem)),
    "mongo_database": (str, plain_text(mongo_database_problem)),
    "enabled_companies": (str, None),
    "coverage_threshold": (float, within(0.0, 1.0)),
    "mapping_config": (str, mapping_file_problem),
    "page_size": (int, within(1, 10_000)),
    "page_bytes": (int, within(*PAGE_BYTES_RANGE)),
    "halt_threshold": (float, within(0.0, 1.0, low_open=True)),
    "degraded_threshold": (float, within(0.0, 1.0, low_open=True)),
    "halt_sample": (int, within(1, 1_000_000)),
    "lease_seconds": (float, within(LEASE_SECONDS_MIN, 86_400.0)),
    "broker_url": (str, plain_text(broker_url_problem)),
    "result_backend": (str, plain_text(result_backend_problem)),
    # Positive, at most a week (it must outlast a task: one account or shard).
    "broker_visibility_timeout": (float, within(0.0, 604_800.0, low_open=True)),
    "http_user": (str, plain_text(None)),
    "http_password": (
        str,
        plain_text(at_least(HTTP_PASSWORD_MIN_CHARS, "a guessable one opens every /private route")),
    ),
    "session_secret": (
        str,
        plain_text(
            at_least(SESSION_SECRET_MIN_CHARS, "a short one is found offline from any tenant's token")
        ),
    ),
    # Whole seconds: a session token records when it was signed in whole seconds (itsdangerous), and
    # a fraction would be dropped without a word (0.5 lasting under a second, as 0 would).
    "session_max_age": (float, within(1.0, 31 * 86_400.0, whole="seconds")),
}
USMAN_KEYS: Final = {
    "base_url": "BASE_URL",
    "token": "TOKEN",
    "path": "PATH",
    "auth_header": "AUTH_HEADER",
    "auth_scheme": "AUTH_SCHEME",
    "connect_timeout": "CONNECT_TIMEOUT",
    "read_timeout": "READ_TIMEOUT",
    "max_emails_per_request": "MAX_EMAILS",
    "max_emails": "MAX_EMAILS",
    "max_attempts": "MAX_ATTEMPTS",
    "backoff_base": "BACKOFF_BASE",
    "backoff_max": "BACKOFF_MAX",
    "max_connections": "MAX_CONNECTIONS",
    "call_timeout": "CALL_TIMEOUT",
}
USMAN_TEXT_KEYS: Final = frozenset({"base_url", "token", "path", "auth_header", "auth_scheme"})
"""The ``[usman]`` keys that are text: a TOML number or boolean there is refused, not turned into text
(``token = 5`` would otherwise send the header ``Bearer 5``)."""
# Read elsewhere (the HTTP surface, the test harness): known, so never "did you mean"-ed.
_OTHER_ENV: Final = (
    CONFIG_ENV,
    f"{ENV_PREFIX}TENANTS",
    "CRM_AUDIT_TEST_DATABASE_URL",
    "CRM_AUDIT_TEST_MONGO_URI",
)
KNOWN_ENVIRONMENT: Final = frozenset(
    [ENV_PREFIX + key.upper() for key in SCALAR_KEYS]
    + [USMAN_ENV_PREFIX + name for name in USMAN_KEYS.values()]
    + [LOADER_ENV_PREFIX + name.upper() for name in LOADER_LIMITS]
    + list(_OTHER_ENV)
)


def not_utf8(environ: Mapping[str, str]) -> list[tuple[str, str]]:
    """Our variables whose value holds bytes that are not UTF-8 (Python's lone surrogates): no
    driver can take them. The value is never shown: it may be a secret."""
    return [
        (f"environment variable {name}", "holds bytes that are not UTF-8")
        for name, value in sorted(environ.items())
        if name.startswith(ENV_PREFIX) and not value.isascii() and not _encodes(value)
    ]


def _encodes(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


KIND_NAMES: Final = {str: "a string", int: "an integer", float: "a number"}


def did_you_mean(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
    return f"; did you mean {close[0]}?" if close else ""


def misspelled_variables(environ: Mapping[str, str]) -> list[tuple[str, str]]:
    """(``environment variable NAME``, ``is not a setting; did you mean …?``) per near miss."""
    known = sorted(KNOWN_ENVIRONMENT)
    notes = []
    for name in sorted(environ):
        if name.startswith(ENV_PREFIX) and name not in KNOWN_ENVIRONMENT:
            hint = did_you_mean(name, known)
            if hint:
                notes.append((f"environment variable {name}", f"is not a setting{hint}"))
    return notes
