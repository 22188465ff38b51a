"""Optional HTTP surface (``pip install crm-audit-transform[http]``): S2S routes, the tenant status route,
and the status indicator script. An ASGI app over the same use cases the runner calls."""

from .app import create_app
from .auth import BasicAuthCredentials, SignedSessionResolver
from .service import HttpService

__all__ = [
    "BasicAuthCredentials",
    "HttpService",
    "SignedSessionResolver",
    "create_app",
]
