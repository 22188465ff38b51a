"""Runner settings from a TOML file and environment variables (the environment wins).

Secrets — the CRM DSN, the MongoDB URI's password and options, the USMAN token, the broker URLs'
passwords, the HTTP password and the session secret — are redacted by
``redaction.redact`` (a parser, not a pattern) in every ``repr`` and in ``describe()``, so printing a
``Settings`` never leaks them. Every value is type- and range-checked at load time; every problem is
reported at once, each with its source (``settings file PATH: key`` or ``environment variable
NAME``). A ``CRM_AUDIT_*`` variable close to a known name but not one (``CRM_AUDIT_PAGESIZE``) gives a
"did you mean" warning in ``Settings.warnings``::

    # crm-audit-migrate.toml                      environment variable
    database_url = "postgresql://ro@crm/crm"      CRM_AUDIT_DATABASE_URL   read-only CRM DSN
    mongo_uri = "mongodb://cdp:27017"             CRM_AUDIT_MONGO_URI      ("mongomock://" in tests)
    mongo_database = "cdp"                        CRM_AUDIT_MONGO_DATABASE
    enabled_companies = "*"                       CRM_AUDIT_ENABLED_COMPANIES  ("a,b" or "*")
    coverage_threshold = 0.99                     CRM_AUDIT_COVERAGE_THRESHOLD
    mapping_config = "mapping.yaml"               CRM_AUDIT_MAPPING_CONFIG (default: bundled)
    page_size = 500                               CRM_AUDIT_PAGE_SIZE
    page_bytes = 33554432                         CRM_AUDIT_PAGE_BYTES     text a PostgreSQL page holds
    halt_threshold = 0.10                         CRM_AUDIT_HALT_THRESHOLD   (failed share)
    degraded_threshold = 0.10                     CRM_AUDIT_DEGRADED_THRESHOLD (USMAN-degraded share)
    halt_sample = 200                             CRM_AUDIT_HALT_SAMPLE      rows between two checks
    lease_seconds = 120                           CRM_AUDIT_LEASE_SECONDS
    http_user = "crm-audit"                       CRM_AUDIT_HTTP_USER      BasicAuth of /private
    http_password = "…"                           CRM_AUDIT_HTTP_PASSWORD  (HTTP surface only)
    session_secret = "…"                          CRM_AUDIT_SESSION_SECRET signs the tenant session
    session_max_age = 28800                       CRM_AUDIT_SESSION_MAX_AGE seconds a session lasts
    [tenants]                                     CRM_AUDIT_TENANTS="sso-id=schema,…"
    "9b2f…" = "acme"                              each account's one CRM tenant schema
    broker_url = "redis://redis:6379/0"           CRM_AUDIT_BROKER_URL     Celery broker (workers, enqueue)
    result_backend = "redis://redis:6379/1"       CRM_AUDIT_RESULT_BACKEND (optional; results unused if unset)
    broker_visibility_timeout = 3600              CRM_AUDIT_BROKER_VISIBILITY_TIMEOUT  seconds before Redis
                                                  hands an unacknowledged task to another worker
    [usman]                                       CRM_AUDIT_USMAN_BASE_URL, _TOKEN, _PATH, …
    base_url = "https://usman.internal"
    [loader]                                      the audited_changes loader's limits (LoaderLimits)
    max_bytes = 33554432                          CRM_AUDIT_LOADER_MAX_BYTES
    max_nodes = 100000                            CRM_AUDIT_LOADER_MAX_NODES
    max_depth = 100                               CRM_AUDIT_LOADER_MAX_DEPTH
    max_int_digits = 4300                         CRM_AUDIT_LOADER_MAX_INT_DIGITS
"""

from __future__ import annotations

import difflib
import math
import os
import re
import sys
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

from attrs import field, frozen

from crm_audit_transform.errors import ConfigError
from crm_audit_transform.loading import LoaderLimits
from crm_audit_transform.numerals import is_int_text, parse_float, parse_int
from crm_audit_transform.usecases import DEFAULT_COVERAGE_THRESHOLD, RunSettings

from .redaction import UNPARSEABLE, redact
from .url_checks import broker_url_problem, dsn_port_problem, http_url_problem, result_backend_problem
from .usman import UnusableUsmanSetting, UsmanConfig

__all__ = ["CONFIG_ENV", "Settings", "load_settings", "load_tenants", "redact"]

CONFIG_ENV: Final = "CRM_AUDIT_SETTINGS"
_PREFIX: Final = "CRM_AUDIT_"
_USMAN_PREFIX: Final = "CRM_AUDIT_USMAN_"
MONGO_SCHEMES: Final = ("mongodb://", "mongodb+srv://", "mongomock://")
_LOADER_PREFIX: Final = "CRM_AUDIT_LOADER_"
LOADER_LIMITS: Final = ("max_bytes", "max_nodes", "max_depth", "max_int_digits")
"""The fields of ``LoaderLimits``, each a ``[loader]`` key and a ``CRM_AUDIT_LOADER_<FIELD>`` variable."""
DEFAULT_PAGE_BYTES: Final = 32 * 1024 * 1024
"""The PostgreSQL source's default text budget of a page (``crm_postgres.audits.DEFAULT_PAGE_BYTES``,
not imported here: that module imports psycopg, which reading the settings does not need)."""
PAGE_BYTES_RANGE: Final = (1024 * 1024, 1024 * 1024 * 1024)
"""1 MiB to 1 GiB: bytes, not MiB (``page_bytes = 32`` is refused, not taken as one row a page), and at
most what the loader's ``max_bytes`` may be at most, one row's text."""
DEFAULT_VISIBILITY_TIMEOUT: Final = 3600.0
"""Redis's own default: an unacknowledged task goes back to the queue after an hour (docs/scale-out.md)."""


def _redacted(value: str | None) -> str:
    return repr(redact(value))


def _secret(value: str | None) -> str:
    return "None" if value is None else "'***'"


def _usman_repr(value: UsmanConfig | None) -> str:
    return "None" if value is None else f"UsmanConfig(base_url={redact(value.base_url)!r}, token=***)"


@frozen
class Settings:
    database_url: str | None = field(default=None, repr=_redacted)
    mongo_uri: str | None = field(default=None, repr=_redacted)
    mongo_database: str = "cdp"
    usman: UsmanConfig | None = field(default=None, repr=_usman_repr)
    enabled_companies: str = ""
    coverage_threshold: float = DEFAULT_COVERAGE_THRESHOLD
    mapping_config: str | None = None
    run: RunSettings = field(factory=RunSettings)
    page_bytes: int = DEFAULT_PAGE_BYTES
    """The text (``audited_changes`` and ``comment``) a PostgreSQL page holds before it ends early:
    ``PostgresAuditSource(page_bytes=…)``, docs/postgres.md."""
    tenants: Mapping[str, str] = field(factory=dict)
    """company_sso_id → the CRM tenant schema it is bound to (see usecases.safety)."""
    broker_url: str | None = field(default=None, repr=_redacted)
    result_backend: str | None = field(default=None, repr=_redacted)
    broker_visibility_timeout: float = DEFAULT_VISIBILITY_TIMEOUT
    http_user: str = "crm-audit"
    http_password: str | None = field(default=None, repr=_secret)
    session_secret: str | None = field(default=None, repr=_secret)
    session_max_age: float = 8 * 3600.0
    loader: LoaderLimits = field(factory=LoaderLimits)
    # "did you mean" notes about the environment, for the runner to print; not a setting.
    warnings: tuple[str, ...] = field(default=(), eq=False, repr=False)

    def describe(self) -> dict[str, Any]:
        """Every setting with secrets redacted, for ``config`` and error messages."""
        return {
            "database_url": redact(self.database_url),
            "mongo_uri": redact(self.mongo_uri),
            "mongo_database": self.mongo_database,
            "usman_url": redact(self.usman.base_url) if self.usman else None,
            "usman_token": "***" if self.usman and self.usman.token else None,
            "enabled_companies": self.enabled_companies,
            "coverage_threshold": self.coverage_threshold,
            "mapping_config": self.mapping_config,
            "page_size": self.run.page_size,
            "page_bytes": self.page_bytes,
            "halt_threshold": self.run.halt_threshold,
            "degraded_threshold": self.run.degraded_threshold,
            "halt_sample": self.run.halt_sample,
            "lease_seconds": self.run.lease_seconds,
            "tenants": dict(self.tenants),
            "broker_url": redact(self.broker_url),
            "result_backend": redact(self.result_backend),
            "broker_visibility_timeout": self.broker_visibility_timeout,
            "http_user": self.http_user,
            "http_password": "***" if self.http_password else None,
            "session_secret": "***" if self.session_secret else None,
            "session_max_age": self.session_max_age,
            "loader": {name: getattr(self.loader, name) for name in LOADER_LIMITS},
        }

    def secrets(self) -> tuple[str, ...]:
        """The raw values that hold secrets, for ``redaction.scrub`` over errors and log lines."""
        usman = (self.usman.base_url, self.usman.token) if self.usman else ()
        others = (self.broker_url, self.result_backend, self.http_password, self.session_secret)
        return tuple(v for v in (self.database_url, self.mongo_uri, *usman, *others) if v)


# -- checks: each returns the problem, or None ------------------------------------------------
Check = Callable[[Any], "str | None"]


def _between(low: float, high: float, *, low_open: bool = False) -> Check:
    """A range check; the caller adds the value as given (``as_written``)."""

    def check(value: Any) -> str | None:
        if isinstance(value, float) and not math.isfinite(value):
            return "must be a finite number"
        if value < low or (low_open and value == low) or value > high:
            bracket = "(" if low_open else "["
            return f"must be in {bracket}{_plain(low)}, {_plain(high)}]"
        return None

    return check


def _plain(number: float) -> str:
    """A bound as people write it: ``10000``, ``86400``, ``0.5`` (not ``1e+06``)."""
    return str(int(number)) if float(number).is_integer() else repr(number)


_SHOWN_CHARS: Final = 32
"""A given number longer than this is described (its length), not quoted whole."""


def as_written(value: object) -> str | None:
    """A numeric setting's value as its user gave it, for the problem's ``got …``.

    Text (an environment variable) as written, stripped; a TOML integer with all its digits; a
    TOML float in its shortest form (``5e21``, not ``5e+21``; what TOML read is all there is);
    a long one by its length. None for a table or an array: not worth quoting. Only numeric
    settings are quoted: they hold no secret.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = value.strip()
        return text if len(text) <= _SHOWN_CHARS else f"a value of {len(text)} characters"
    if isinstance(value, int):
        try:
            text = str(value)
        except ValueError:  # past Python's integer-to-text limit
            return "an integer of thousands of digits"
        digits = len(text.lstrip("-"))
        return text if digits <= _SHOWN_CHARS else f"an integer of {digits} digits"
    if isinstance(value, float):
        return _FLOAT_EXPONENT.sub(r"e\1\2", repr(value))
    return None


_FLOAT_EXPONENT: Final = re.compile(r"e\+?(-?)0*(\d)")


def _postgres_dsn(value: str) -> str | None:
    if redact(value) == UNPARSEABLE:
        return "not a PostgreSQL connection string (libpq key=value pairs or a postgresql:// URI)"
    if "://" in value and not value.lower().startswith(("postgresql://", "postgres://")):
        return "a URI DSN must start with postgresql:// or postgres://"
    if "://" in value and re.split(r"[/?]", value.split("://", 1)[1], maxsplit=1)[0].count("@") > 1:
        # libpq ends the user info at the first "@": the rest of the password would become the host
        # name, and appear in its "could not translate host name" error.
        return "the user or password holds an unescaped '@': percent-encode it as %40"
    import psycopg.conninfo  # the adapters' driver: its own parser has the final word

    try:
        parsed = psycopg.conninfo.conninfo_to_dict(value)
    except psycopg.Error:
        # The driver's message may quote a piece of the password: never show it.
        return "libpq cannot parse this connection string (check quoting and %-escapes)"
    # libpq reads the port only when it connects, and its error would be retried as an outage.
    return dsn_port_problem({k: str(v) for k, v in parsed.items()})


def _mongo_uri(value: str) -> str | None:
    if not value.startswith(MONGO_SCHEMES):
        return "must start with mongodb://, mongodb+srv:// or mongomock://"
    if value.startswith("mongodb://"):
        from pymongo.errors import PyMongoError
        from pymongo.uri_parser import parse_uri  # no network for mongodb:// (SRV would look up DNS)

        try:
            parse_uri(value)
        except (PyMongoError, ValueError):
            return "pymongo cannot parse this URI (check %-escapes of the user and password, hosts, options)"
    return None


def _mongo_database(value: str) -> str | None:
    # MongoDB's database naming restrictions (manual: "Restrictions on Database Names").
    if not value or len(value.encode()) >= 64 or any(c in value for c in '/\\. "$\x00'):
        return 'must be 1-63 bytes without / \\ . " $ or spaces'
    return None


def _mapping_file(value: str) -> str | None:
    path = Path(value)
    if path.is_file():
        return None
    if path.is_dir():
        return f"is a directory, not a mapping file: {value}"
    if path.exists():
        return f"not a regular file (a mapping file is YAML): {value}"
    return f"no such mapping file: {value}"


SESSION_SECRET_MIN_CHARS: Final = 32
"""The session secret signs every tenant's session token (HMAC): anyone holding one token can try
secrets offline, and with the secret forge a token for any company. 32 characters, as a
``secrets.token_urlsafe(32)`` gives 43."""
HTTP_PASSWORD_MIN_CHARS: Final = 16
"""The BasicAuth password of the S2S routes (``/private``), which write and roll back accounts."""


def _at_least(chars: int, why: str) -> Check:
    """A length check of a secret: the problem never quotes it, only its rule."""

    def check(value: Any) -> str | None:
        return None if len(value) >= chars else f"must be at least {chars} characters ({why})"

    return check


LEASE_SECONDS_MIN: Final = 1.0
"""The shortest lease: it is renewed once per batch (a page read, lookups, up to 20 inserts and a
progress write, each a round trip to a server), so a lease shorter than a batch is taken over from a
live runner between two renewals; its expiry is a BSON date, which keeps milliseconds, so a lease of
``1e-9`` s is stored already expired; and a Celery task that meets a held lease waits
``lease_seconds`` before each of its retries. One second is the least that still lets a test see a
takeover quickly; production keeps the default, 120 s."""

# key: (type, check). Ranges come from what the run can honour: a page of 1 to 10,000 rows, a
# lease of at least a second (LEASE_SECONDS_MIN) and at most a day, so a dead runner's job is taken
# over within a day.
_SCALARS: Final[dict[str, tuple[type, Check | None]]] = {
    "database_url": (str, _postgres_dsn),
    "mongo_uri": (str, _mongo_uri),
    "mongo_database": (str, _mongo_database),
    "enabled_companies": (str, None),
    "coverage_threshold": (float, _between(0.0, 1.0)),
    "mapping_config": (str, _mapping_file),
    "page_size": (int, _between(1, 10_000)),
    "page_bytes": (int, _between(*PAGE_BYTES_RANGE)),
    "halt_threshold": (float, _between(0.0, 1.0, low_open=True)),
    "degraded_threshold": (float, _between(0.0, 1.0, low_open=True)),
    "halt_sample": (int, _between(1, 1_000_000)),
    "lease_seconds": (float, _between(LEASE_SECONDS_MIN, 86_400.0)),
    "broker_url": (str, broker_url_problem),
    "result_backend": (str, result_backend_problem),
    # Positive, at most a week (it must outlast a task: one account or shard).
    "broker_visibility_timeout": (float, _between(0.0, 604_800.0, low_open=True)),
    "http_user": (str, None),
    "http_password": (str, _at_least(HTTP_PASSWORD_MIN_CHARS, "a guessable one opens every /private route")),
    "session_secret": (
        str,
        _at_least(SESSION_SECRET_MIN_CHARS, "a short one is found offline from any tenant's token"),
    ),
    "session_max_age": (float, _between(0.0, 31 * 86_400.0, low_open=True)),
}
_USMAN_KEYS: Final = {
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
}
_USMAN_TEXT: Final = frozenset({"base_url", "token", "path", "auth_header", "auth_scheme"})
"""The ``[usman]`` keys that are text: a TOML number or boolean there is refused, not turned into text
(``token = 5`` would otherwise send the header ``Bearer 5``)."""
# Read elsewhere (the HTTP surface, the test harness): known, so never "did you mean"-ed.
_OTHER_ENV: Final = (
    CONFIG_ENV,
    f"{_PREFIX}TENANTS",
    "CRM_AUDIT_TEST_DATABASE_URL",
    "CRM_AUDIT_TEST_MONGO_URI",
)
KNOWN_ENVIRONMENT: Final = frozenset(
    [_PREFIX + key.upper() for key in _SCALARS]
    + [_USMAN_PREFIX + name for name in _USMAN_KEYS.values()]
    + [_LOADER_PREFIX + name.upper() for name in LOADER_LIMITS]
    + list(_OTHER_ENV)
)


def _convert(value: Any, kind: type, *, from_text: bool) -> Any:
    """``value`` as ``kind``. Only an environment variable (``from_text``) is text to be read as a
    number: TOML has types, so its ``page_size = "7"`` is refused like ``page_size = 500.0``."""
    if isinstance(value, bool) or (kind is str and not isinstance(value, str)):
        raise TypeError
    if kind is not str and isinstance(value, str) and not from_text:
        raise TypeError
    if (
        kind is float
        and isinstance(value, str)
        and value.strip().lower() in ("nan", "inf", "-inf", "infinity")
    ):
        raise ValueError
    if kind is int and isinstance(value, float):
        raise TypeError
    if isinstance(value, str) and kind is not str:
        # The one integer (and number) reader of every source: ASCII digits only (numerals).
        return parse_int(value) if kind is int else parse_float(value)
    return kind(value)


def load_settings(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read the file (``path``, else ``$CRM_AUDIT_SETTINGS``, else none), then the environment on top.

    Every problem is reported at once as a ``ConfigError`` whose paths name the source and key
    (``settings file crm.toml: page_size``, ``environment variable CRM_AUDIT_PAGE_SIZE``); the
    messages never quote a value that may hold a secret.
    """
    environ = os.environ if environ is None else environ
    undecodable = _not_utf8(environ)
    if undecodable:
        raise ConfigError(undecodable, source="the runner's settings")
    path = path or environ.get(CONFIG_ENV) or None
    raw: dict[str, Any] = _read_file(Path(path)) if path else {}
    in_file = f"settings file {path}"
    problems: list[tuple[str, str]] = []
    values: dict[str, Any] = {}
    for key, (kind, check) in _SCALARS.items():
        name = _PREFIX + key.upper()
        # The environment wins, but the file's value is checked too: a wrong one is a problem even
        # while a variable overrides it (it would take effect the day the variable is unset).
        given_in = [(f"environment variable {name}", environ.get(name), True)]
        given_in.append((f"{in_file}: {key}", raw.get(key), False))
        for source, value, from_text in given_in:
            if value is None:
                continue
            if key == "enabled_companies" and isinstance(value, list):
                if not all(isinstance(v, str) for v in value):
                    problems.append((source, "expected a string or a list of strings"))
                    continue
                value = ",".join(value)
            # A number is quoted as given with its problem; text may be a secret and never is.
            given = f", got {shown}" if kind is not str and (shown := as_written(value)) else ""
            try:
                converted = _convert(value, kind, from_text=from_text)
            except (TypeError, ValueError):
                problems.append((source, f"expected {_KIND_NAMES[kind]}{given}"))
                continue
            problem = check(converted) if check else None
            if problem:
                problems.append((source, problem + given))
            else:
                values.setdefault(key, converted)
    for key in sorted(set(raw) - set(_SCALARS) - {"usman", "tenants", "loader"}):
        problems.append(
            (
                f"{in_file}: {key}",
                "unknown setting" + _did_you_mean(key, [*_SCALARS, "usman", "tenants", "loader"]),
            )
        )
    usman = _usman(raw.get("usman"), environ, problems, in_file)
    tenants = _tenants(raw.get("tenants"), environ.get(f"{_PREFIX}TENANTS"), problems, in_file)
    loader = _loader(raw.get("loader"), environ, problems, in_file)
    misspelled = _misspelled(environ)
    if problems:
        # A misspelled variable is often why another setting looks wrong (its default is in force):
        # its hint goes into the error, not into warnings that an error would never print.
        raise ConfigError([*problems, *misspelled], source="the runner's settings")
    run = RunSettings(
        page_size=values.pop("page_size", RunSettings().page_size),
        halt_threshold=values.pop("halt_threshold", RunSettings().halt_threshold),
        degraded_threshold=values.pop("degraded_threshold", RunSettings().degraded_threshold),
        halt_sample=values.pop("halt_sample", RunSettings().halt_sample),
        lease_seconds=values.pop("lease_seconds", RunSettings().lease_seconds),
    )
    warnings = tuple(f"{where} {note}" for where, note in misspelled)
    return Settings(usman=usman, run=run, tenants=tenants, loader=loader, warnings=warnings, **values)


def load_tenants(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Only the tenant bindings of ``load_settings`` (same file, same variable, same checks).

    For a command that reaches no server (``dry-run``): it follows the bindings without needing, or
    checking, the servers' settings. ``ConfigError`` for a problem with the bindings or the file.
    """
    environ = os.environ if environ is None else environ
    path = path or environ.get(CONFIG_ENV) or None
    raw: dict[str, Any] = _read_file(Path(path)) if path else {}
    problems: list[tuple[str, str]] = []
    tenants = _tenants(
        raw.get("tenants"), environ.get(f"{_PREFIX}TENANTS"), problems, f"settings file {path}"
    )
    if problems:
        raise ConfigError(problems, source="the runner's settings")
    return tenants


def _not_utf8(environ: Mapping[str, str]) -> list[tuple[str, str]]:
    """Our variables whose value holds bytes that are not UTF-8 (Python's lone surrogates): no
    driver can take them. The value is never shown: it may be a secret."""
    return [
        (f"environment variable {name}", "holds bytes that are not UTF-8")
        for name, value in sorted(environ.items())
        if name.startswith(_PREFIX) and not value.isascii() and not _encodes(value)
    ]


def _encodes(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _tenants(table: Any, env: str | None, problems: list[tuple[str, str]], in_file: str) -> dict[str, str]:
    """``[tenants]`` (company_sso_id = "schema") overlaid by ``CRM_AUDIT_TENANTS="id=schema,…"``.

    A company named twice in the variable is a problem: the later pair would silently win, and an
    account is bound to one CRM tenant. A tenant bound to several companies (after the overlay) is one
    too: a tenant's data belongs to one account (mission: no cross-tenant data), and ``bound_tenant``
    would let each of them migrate it.
    """
    bindings: dict[str, str] = {}
    named: set[str] = set()
    if table is not None:
        if not isinstance(table, dict) or not all(isinstance(v, str) and v for v in table.values()):
            problems.append((f"{in_file}: tenants", 'expected a table of company_sso_id = "schema"'))
        else:
            bindings.update({str(k): v for k, v in table.items()})
    for part in (env or "").split(","):
        if not part.strip():
            continue
        company, sep, schema = part.partition("=")
        if not sep or not company.strip() or not schema.strip():
            problems.append(
                (
                    f"environment variable {_PREFIX}TENANTS",
                    "expected company_sso_id=schema pairs separated by commas",
                )
            )
            break
        if company.strip() in named:
            # The later pair would silently win: one of the two is a mistake.
            problems.append(
                (f"environment variable {_PREFIX}TENANTS", f"company {company.strip()} is named twice")
            )
        named.add(company.strip())
        bindings[company.strip()] = schema.strip()
    owners: dict[str, list[str]] = {}
    for company, schema in bindings.items():
        owners.setdefault(schema, []).append(company)
    for schema, companies in sorted(owners.items()):
        if len(companies) > 1:
            sources = sorted(
                {
                    f"environment variable {_PREFIX}TENANTS" if c in named else f"{in_file}: tenants"
                    for c in companies
                }
            )
            problems.append(
                (
                    " and ".join(sources),
                    f"tenant {schema} is bound to {len(companies)} companies "
                    f"({', '.join(sorted(companies))}): a tenant's data belongs to one account",
                )
            )
    return bindings


_KIND_NAMES: Final = {str: "a string", int: "an integer", float: "a number"}


def _did_you_mean(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
    return f"; did you mean {close[0]}?" if close else ""


def _misspelled(environ: Mapping[str, str]) -> list[tuple[str, str]]:
    """(``environment variable NAME``, ``is not a setting; did you mean …?``) per near miss."""
    known = sorted(KNOWN_ENVIRONMENT)
    notes = []
    for name in sorted(environ):
        if name.startswith(_PREFIX) and name not in KNOWN_ENVIRONMENT:
            hint = _did_you_mean(name, known)
            if hint:
                notes.append((f"environment variable {name}", f"is not a setting{hint}"))
    return notes


def _loader(
    table: Any, environ: Mapping[str, str], problems: list[tuple[str, str]], in_file: str
) -> LoaderLimits:
    """``LoaderLimits`` from the ``[loader]`` table and ``CRM_AUDIT_LOADER_*`` (the environment wins).

    Each problem names its source as every other setting's does; a TOML value must be an integer
    (text is read as a number only from the environment)."""
    if table is not None and not isinstance(table, dict):
        problems.append((f"{in_file}: loader", "expected a table"))
        table = None
    table = table or {}
    problems.extend(
        (f"{in_file}: loader.{key}", "unknown setting" + _did_you_mean(key, list(LOADER_LIMITS)))
        for key in sorted(set(table) - set(LOADER_LIMITS))
    )
    limits: dict[str, int] = {}
    for name in LOADER_LIMITS:
        env = f"{_LOADER_PREFIX}{name.upper()}"
        value: Any = environ.get(env)
        source, from_text = f"environment variable {env}", True
        if value is None and name in table:
            source, value, from_text = f"{in_file}: loader.{name}", table[name], False
        elif value is None:
            continue
        parsed = (
            value
            if type(value) is int
            else parse_int(value)
            if from_text and isinstance(value, str) and is_int_text(value)  # TOML text is no number
            else None
        )
        shown = as_written(value)
        got = f", got {shown}" if shown else ""
        if parsed is None or parsed < 1:
            problems.append((source, "expected a positive integer" + got))
            continue
        if parsed > LoaderLimits.MAXIMA[name]:
            problems.append((source, f"must be at most {LoaderLimits.MAXIMA[name]}" + got))
            continue
        limits[name] = parsed
    return LoaderLimits(**limits)


_USMAN_TEXT_ENV: Final = frozenset(_USMAN_KEYS[key] for key in _USMAN_TEXT)


def _plain_number(text: str) -> bool:
    try:
        parse_float(text)
    except ValueError:
        return False
    return True


def _usman_got(env_key: str, value: object) -> str:
    """``, got …`` for a numeric USMAN setting as written; nothing for text (a token is a secret)."""
    if env_key in _USMAN_TEXT_ENV or env_key not in _USMAN_KEYS.values():
        return ""
    shown = as_written(value)
    return f", got {shown}" if shown else ""


MAX_SETTINGS_BYTES: Final = 1 << 20
"""A settings file is read up to this many bytes (1 MiB): a larger one (``/dev/zero``, a log named
by mistake) is ``CONFIG_INVALID`` at once, instead of a read that fills the memory."""


def _read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_SETTINGS_BYTES + 1)
        if len(data) > MAX_SETTINGS_BYTES:
            why = f"larger than {MAX_SETTINGS_BYTES} bytes: not a settings file"
            raise ConfigError([(f"settings file {path}", why)])
        return tomllib.loads(data.decode("utf-8"))
    except FileNotFoundError:
        raise ConfigError([(f"settings file {path}", "no such configuration file")]) from None
    except OSError as exc:
        raise ConfigError([(f"settings file {path}", f"cannot read: {exc.strerror}")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([(f"settings file {path}", f"not valid TOML: {exc}")]) from None
    except UnicodeDecodeError as exc:  # TOML is UTF-8
        raise ConfigError([(f"settings file {path}", f"not UTF-8 (byte {exc.start})")]) from None
    except ValueError as exc:  # an integer past Python's integer-to-text limit (4,300 digits)
        limit = sys.get_int_max_str_digits()
        why = f"cannot read a value: an integer of more than {limit} digits"
        raise ConfigError([(f"settings file {path}", why)]) from exc


def _usman(
    table: Any, environ: Mapping[str, str], problems: list[tuple[str, str]], in_file: str
) -> UsmanConfig | None:
    merged: dict[str, str] = {}
    sources: dict[str, str] = {}
    given: dict[str, object] = {}  # the value as written (TOML's own, or the variable's text)
    if table is not None and not isinstance(table, dict):
        problems.append((f"{in_file}: usman", "expected a table ([usman])"))
        table = None
    for key, value in (table or {}).items():
        env_key = _USMAN_KEYS.get(str(key))
        if env_key is None:
            problems.append(
                (f"{in_file}: usman.{key}", "unknown setting" + _did_you_mean(str(key), [*_USMAN_KEYS]))
            )
            continue
        if key in _USMAN_TEXT and not isinstance(value, str):
            problems.append((f"{in_file}: usman.{key}", "expected a string"))
            continue
        if key not in _USMAN_TEXT and (isinstance(value, bool) or not isinstance(value, int | float)):
            # TOML has types: max_attempts = "3" is refused, as page_size = "7" is.
            problems.append((f"{in_file}: usman.{key}", "expected a number"))
            continue
        merged[_USMAN_PREFIX + env_key] = str(value)
        sources[env_key] = f"{in_file}: usman.{key}"
        given[env_key] = value
    for name, value in environ.items():
        if name.startswith(_USMAN_PREFIX):
            merged[name] = value
            sources[name[len(_USMAN_PREFIX) :]] = f"environment variable {name}"
            given[name[len(_USMAN_PREFIX) :]] = value
    if f"{_USMAN_PREFIX}BASE_URL" not in merged:
        return None
    # One key at a time, so that each problem names its own source.
    for env_key, source in sorted(sources.items()):
        if env_key == "BASE_URL":
            continue
        try:
            UsmanConfig.from_env(
                {
                    _USMAN_PREFIX + "BASE_URL": "http://x",
                    _USMAN_PREFIX + env_key: merged[_USMAN_PREFIX + env_key],
                }
            )
        except UnusableUsmanSetting as exc:  # its message never quotes the value
            problems.append((source, str(exc) + _usman_got(env_key, given.get(env_key))))
            continue
        except (TypeError, ValueError):  # float()'s and int()'s messages would quote it
            why = "out of range or of the wrong type (see docs/usman.md)"
            problems.append((source, why + _usman_got(env_key, given.get(env_key))))
            continue
        value = given.get(env_key)
        if isinstance(value, str) and env_key not in _USMAN_TEXT_ENV and not _plain_number(value):
            # The environment's text by the one strict reader (int() and float() take 1_0, ١٠).
            why = "expected a plain number (ASCII digits, an optional - and .)"
            problems.append((source, why + _usman_got(env_key, value)))
    base = merged[f"{_USMAN_PREFIX}BASE_URL"]
    if not base.startswith(("http://", "https://")):
        problems.append((sources.get("BASE_URL", "usman.base_url"), "must start with http:// or https://"))
    elif problem := http_url_problem(base):
        problems.append((sources.get("BASE_URL", "usman.base_url"), problem))
    try:
        return UsmanConfig.from_env(merged)
    except (TypeError, ValueError):
        return None
