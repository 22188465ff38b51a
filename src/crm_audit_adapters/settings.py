"""Runner settings from a TOML file and environment variables (the environment wins).

Secrets — the CRM DSN, the MongoDB URI's password, the USMAN token, the HTTP password and the
session secret — are redacted in every
``repr`` and in ``describe()``, so printing a ``Settings`` never leaks them::

    # crm-audit-migrate.toml                      environment variable
    database_url = "postgresql://ro@crm/crm"      CRM_AUDIT_DATABASE_URL   read-only CRM DSN
    mongo_uri = "mongodb://cdp:27017"             CRM_AUDIT_MONGO_URI      ("mongomock://" in tests)
    mongo_database = "cdp"                        CRM_AUDIT_MONGO_DATABASE
    enabled_companies = "*"                       CRM_AUDIT_ENABLED_COMPANIES  ("a,b" or "*")
    coverage_threshold = 0.99                     CRM_AUDIT_COVERAGE_THRESHOLD
    mapping_config = "mapping.yaml"               CRM_AUDIT_MAPPING_CONFIG (default: bundled)
    page_size = 500                               CRM_AUDIT_PAGE_SIZE
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

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

from attrs import field, frozen

from crm_audit_transform.errors import ConfigError
from crm_audit_transform.loading import LoaderLimits
from crm_audit_transform.numerals import is_int_text, parse_int
from crm_audit_transform.usecases import DEFAULT_COVERAGE_THRESHOLD, RunSettings

from .usman import UsmanConfig

CONFIG_ENV: Final = "CRM_AUDIT_SETTINGS"
_PREFIX: Final = "CRM_AUDIT_"
_USMAN_PREFIX: Final = "CRM_AUDIT_USMAN_"
DEFAULT_VISIBILITY_TIMEOUT: Final = 3600.0
"""Redis's own default: an unacknowledged task goes back to the queue after an hour (docs/scale-out.md)."""
_LOADER_PREFIX: Final = "CRM_AUDIT_LOADER_"
LOADER_LIMITS: Final = ("max_bytes", "max_nodes", "max_depth", "max_int_digits")
"""The fields of ``LoaderLimits``, each a ``[loader]`` key and a ``CRM_AUDIT_LOADER_<FIELD>`` variable."""

_URL_PASSWORD = re.compile(r"(?P<head>://[^:/@\s]*:)[^@\s]*@")
_KV_PASSWORD = re.compile(r"(?P<head>password\s*=\s*)('[^']*'|\S+)", re.IGNORECASE)


def redact(url: str | None) -> str | None:
    """The URL or key=value DSN with its password replaced by ``***``."""
    if not url:
        return url
    return _KV_PASSWORD.sub(r"\g<head>***", _URL_PASSWORD.sub(r"\g<head>***@", url))


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

    def describe(self) -> dict[str, Any]:
        """Every setting with secrets redacted, for ``--show-config`` and error messages."""
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


_SCALARS: Final[dict[str, Callable[[str], Any]]] = {
    "database_url": str,
    "mongo_uri": str,
    "mongo_database": str,
    "enabled_companies": str,
    "coverage_threshold": float,
    "mapping_config": str,
    "page_size": int,
    "halt_threshold": float,
    "degraded_threshold": float,
    "halt_sample": int,
    "lease_seconds": float,
    "broker_url": str,
    "result_backend": str,
    "broker_visibility_timeout": float,
    "http_user": str,
    "http_password": str,
    "session_secret": str,
    "session_max_age": float,
}


def load_settings(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read the file (``path``, else ``$CRM_AUDIT_SETTINGS``, else none), then the environment on top.

    Every problem is reported at once as a ``ConfigError``; the messages never quote a secret.
    """
    environ = os.environ if environ is None else environ
    path = path or environ.get(CONFIG_ENV) or None
    raw: dict[str, Any] = _read_file(Path(path)) if path else {}
    problems: list[tuple[str, str]] = []
    values: dict[str, Any] = {}
    for key, kind in _SCALARS.items():
        source, value = (f"${_PREFIX}{key.upper()}", environ.get(_PREFIX + key.upper()))
        if value is None and key in raw:
            source, value = key, raw[key]
        if value is None:
            continue
        if key == "enabled_companies" and isinstance(value, list):
            value = ",".join(str(v) for v in value)
        try:
            values[key] = kind(value)
        except (TypeError, ValueError):
            problems.append((source, f"expected {kind.__name__}"))
    unknown = set(raw) - set(_SCALARS) - {"usman", "tenants", "loader"}
    problems.extend((key, "unknown setting") for key in sorted(unknown))
    usman = _usman(raw.get("usman"), environ, problems)
    tenants = _tenants(raw.get("tenants"), environ.get(f"{_PREFIX}TENANTS"), problems)
    loader = _loader(raw.get("loader"), environ, problems)
    if values.get("halt_sample", 1) < 1:
        problems.append(("halt_sample", "must be at least 1 row"))
    if problems:
        raise ConfigError(problems)
    run = RunSettings(
        page_size=values.pop("page_size", RunSettings().page_size),
        halt_threshold=values.pop("halt_threshold", RunSettings().halt_threshold),
        degraded_threshold=values.pop("degraded_threshold", RunSettings().degraded_threshold),
        halt_sample=values.pop("halt_sample", RunSettings().halt_sample),
        lease_seconds=values.pop("lease_seconds", RunSettings().lease_seconds),
    )
    return Settings(usman=usman, run=run, tenants=tenants, loader=loader, **values)


def _tenants(table: Any, env: str | None, problems: list[tuple[str, str]]) -> dict[str, str]:
    """``[tenants]`` (company_sso_id = "schema") overlaid by ``CRM_AUDIT_TENANTS="id=schema,…"``."""
    bindings: dict[str, str] = {}
    if table is not None:
        if not isinstance(table, dict) or not all(isinstance(v, str) and v for v in table.values()):
            problems.append(("tenants", 'expected a table of company_sso_id = "schema"'))
        else:
            bindings.update({str(k): v for k, v in table.items()})
    for part in (env or "").split(","):
        if not part.strip():
            continue
        company, sep, schema = part.partition("=")
        if not sep or not company.strip() or not schema.strip():
            problems.append(
                (f"${_PREFIX}TENANTS", "expected company_sso_id=schema pairs separated by commas")
            )
            break
        bindings[company.strip()] = schema.strip()
    return bindings


def _loader(table: Any, environ: Mapping[str, str], problems: list[tuple[str, str]]) -> LoaderLimits:
    """``LoaderLimits`` from the ``[loader]`` table and ``CRM_AUDIT_LOADER_*`` (the environment wins)."""
    if table is not None and not isinstance(table, dict):
        problems.append(("loader", "expected a table"))
        table = None
    table = table or {}
    problems.extend((f"loader.{key}", "unknown setting") for key in sorted(set(table) - set(LOADER_LIMITS)))
    limits: dict[str, int] = {}
    for name in LOADER_LIMITS:
        env = f"{_LOADER_PREFIX}{name.upper()}"
        value: Any = environ.get(env)
        source = f"${env}"
        if value is None and name in table:
            source, value = f"loader.{name}", table[name]
        if value is None:
            continue
        parsed = (
            value
            if type(value) is int
            else parse_int(value)
            if isinstance(value, str) and is_int_text(value)
            else None
        )
        if parsed is None or parsed < 1:
            problems.append((source, "expected a positive integer"))
            continue
        limits[name] = parsed
    return LoaderLimits(**limits)


def _read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError([(str(path), "no such configuration file")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([(str(path), f"not valid TOML: {exc}")]) from None


def _usman(table: Any, environ: Mapping[str, str], problems: list[tuple[str, str]]) -> UsmanConfig | None:
    merged = {f"{_USMAN_PREFIX}{str(k).upper()}": str(v) for k, v in (table or {}).items()}
    if "base_url" in (table or {}):
        merged[f"{_USMAN_PREFIX}BASE_URL"] = str(table["base_url"])
    if isinstance(table, dict) and "max_emails_per_request" in table:
        merged[f"{_USMAN_PREFIX}MAX_EMAILS"] = str(table["max_emails_per_request"])
    merged.update({k: v for k, v in environ.items() if k.startswith(_USMAN_PREFIX)})
    if f"{_USMAN_PREFIX}BASE_URL" not in merged:
        return None
    try:
        return UsmanConfig.from_env(merged)
    except (TypeError, ValueError):
        problems.append(("usman", "invalid USMAN settings (check base_url, timeouts and counts)"))
        return None
