"""``build_http_app``: the HTTP surface over a runtime's service, its secrets from the same ``Settings``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from crm_audit_transform.errors import ConfigError

from ..redaction import ScrubbingFilter
from ..settings import Settings
from .runtime import build_runtime

if TYPE_CHECKING:
    from starlette.applications import Starlette


def build_http_app(settings: Settings, **overrides: Any) -> Starlette:
    """The HTTP surface over ``build_runtime(settings).service``; the runtime closes with the app.

    ``ConfigError`` naming ``CRM_AUDIT_HTTP_PASSWORD`` / ``CRM_AUDIT_SESSION_SECRET`` when either
    is unset: the surface never starts with a default secret.
    """
    needed = {
        "CRM_AUDIT_HTTP_PASSWORD": settings.http_password,
        "CRM_AUDIT_SESSION_SECRET": settings.session_secret,
    }
    missing = [(name, "not set") for name, value in needed.items() if not value]
    if missing:
        raise ConfigError(missing)
    from ..http import BasicAuthCredentials, SignedSessionResolver, create_app  # the optional [http] extra
    from ..http.errors import log as errors_log

    # The 503 causes it logs are secret-free at their source; the filter is the second line.
    for old in [f for f in errors_log.filters if isinstance(f, ScrubbingFilter)]:
        errors_log.removeFilter(old)  # one app per process; a rebuilt app replaces its filter
    errors_log.addFilter(ScrubbingFilter(settings.secrets()))
    runtime = build_runtime(settings, **overrides)
    return create_app(
        runtime.service,
        basic_auth=BasicAuthCredentials(settings.http_user, str(settings.http_password)),
        sessions=SignedSessionResolver(
            secret=str(settings.session_secret).encode(), max_age=settings.session_max_age
        ),
        max_json_depth=settings.loader.max_depth,
        on_close=runtime.close,
    )
