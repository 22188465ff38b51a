"""The HTTP surface built from the runner's settings: ``uvicorn --factory crm_audit_adapters.http.asgi:app``.

Besides the runner's settings (``CRM_AUDIT_DATABASE_URL``, ``CRM_AUDIT_MONGO_URI``, …) it reads
``CRM_AUDIT_HTTP_USER`` / ``CRM_AUDIT_HTTP_PASSWORD`` (BasicAuth of the ``/private`` routes) and
``CRM_AUDIT_SESSION_SECRET`` (the signed-session key of the tenant route). Nothing connects until the
first request needs it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from starlette.applications import Starlette

from crm_audit_transform.errors import ConfigError

from ..bootstrap import build_runtime
from ..settings import load_settings
from .app import create_app
from .auth import BasicAuthCredentials, SignedSessionResolver


def app(environ: Mapping[str, str] | None = None) -> Starlette:
    env = os.environ if environ is None else environ
    missing = [
        (name, "not set")
        for name in ("CRM_AUDIT_HTTP_PASSWORD", "CRM_AUDIT_SESSION_SECRET")
        if not env.get(name)
    ]
    if missing:
        raise ConfigError(missing)
    runtime = build_runtime(load_settings(environ=env))
    return create_app(
        runtime,
        basic_auth=BasicAuthCredentials(
            env.get("CRM_AUDIT_HTTP_USER", "crm-audit"), env["CRM_AUDIT_HTTP_PASSWORD"]
        ),
        sessions=SignedSessionResolver(secret=env["CRM_AUDIT_SESSION_SECRET"].encode()),
    )
