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

from ..redaction import redact
from .checks import HTTP_PASSWORD_MIN_CHARS as HTTP_PASSWORD_MIN_CHARS
from .checks import LEASE_SECONDS_MIN as LEASE_SECONDS_MIN
from .checks import MONGO_SCHEMES as MONGO_SCHEMES
from .checks import SESSION_SECRET_MIN_CHARS as SESSION_SECRET_MIN_CHARS
from .checks import Check as Check
from .checks import as_written as as_written
from .keys import CONFIG_ENV
from .keys import KNOWN_ENVIRONMENT as KNOWN_ENVIRONMENT
from .model import DEFAULT_PAGE_BYTES as DEFAULT_PAGE_BYTES
from .model import DEFAULT_VISIBILITY_TIMEOUT as DEFAULT_VISIBILITY_TIMEOUT
from .model import LOADER_LIMITS as LOADER_LIMITS
from .model import PAGE_BYTES_RANGE as PAGE_BYTES_RANGE
from .model import Settings
from .reading import MAX_SETTINGS_BYTES as MAX_SETTINGS_BYTES
from .reading import load_settings, load_tenants

__all__ = ["CONFIG_ENV", "Settings", "load_settings", "load_tenants", "redact"]
