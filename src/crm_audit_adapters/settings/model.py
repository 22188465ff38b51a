"""The runner's settings as loaded: every value checked, every secret redacted in its ``repr``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from attrs import field, frozen

from crm_audit_transform.loading import LoaderLimits
from crm_audit_transform.usecases import DEFAULT_COVERAGE_THRESHOLD, RunSettings

from ..redaction import redact
from ..usman import UsmanConfig
from ..usman_config import shown_path

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
            # Where the lookup goes is base_url + path: shown so ops see it, its query (a key) hidden.
            "usman_path": shown_path(self.usman.path) if self.usman else None,
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
        # The URL the client posts to (its path's query too: ``?api_key=…``), as its messages name it.
        usman = (
            (self.usman.base_url, self.usman.base_url.rstrip("/") + self.usman.path, self.usman.token)
            if self.usman
            else ()
        )
        others = (self.broker_url, self.result_backend, self.http_password, self.session_secret)
        return tuple(v for v in (self.database_url, self.mongo_uri, *usman, *others) if v)
