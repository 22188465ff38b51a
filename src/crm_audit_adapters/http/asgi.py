"""The HTTP surface built from the runner's settings: ``uvicorn --factory crm_audit_adapters.http.asgi:app``.

Everything comes from ``Settings`` (file and environment): the runner's own settings
(``CRM_AUDIT_DATABASE_URL``, ``CRM_AUDIT_MONGO_URI``, …) and the surface's secrets,
``CRM_AUDIT_HTTP_USER`` / ``CRM_AUDIT_HTTP_PASSWORD`` (BasicAuth of the ``/private`` routes) and
``CRM_AUDIT_SESSION_SECRET`` (the signed-session key of the tenant route). The wiring is
``crm_audit_adapters.bootstrap.build_http_app``; nothing connects until a request needs it.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.applications import Starlette

from ..bootstrap import build_http_app
from ..settings import load_settings


def app(environ: Mapping[str, str] | None = None) -> Starlette:
    return build_http_app(load_settings(environ=environ))
