"""The one composition root: adapters wired into the ``MigrationService`` from a ``Settings``.

Every entrypoint gets its service here: the ops runner (``build_runtime(settings).service``), the
HTTP app (``build_http_app``, with its BasicAuth password and session secret from the same
``Settings``) and the dry run (``dry_run_service``: files in, a JSONL sink out, the job in memory).

Nothing connects here or at import: each adapter is built on first use, and the PostgreSQL
session, the MongoDB client and the USMAN client are opened by their first query. ``close()``
releases whatever was opened. Tests and embedding services override any part by keyword
(``mongo_client=mongomock.MongoClient()``, ``sso=...``, ``clock=...``, ``notice=`` a callable that
receives progress notes such as "connecting to MongoDB at …", ``rule_chain=`` a callable that
turns the mapping config into the service's ``RuleChain``, to plug in rules of one's own); the URI
``mongomock://`` builds an in-process mongomock client (one per runtime, so its data lives as long
as it does). A real MongoDB
is pinged once when first used, so an unreachable server costs one ``serverSelectionTimeoutMS``
(the URI's, else 10 s) and a refused login is reported as configuration.

One module per entrypoint's wiring::

    runtime.py       Runtime: every port, built lazily from Settings; build_runtime
    mongo_client.py  the MongoDB client for a URI, and the one ping that says why it is unreachable
    http_app.py      build_http_app: the HTTP surface over a runtime's service
    dry_run.py       dry_run_service / dry_run_recipe: files in, a sink out, the job in memory
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .mongo_client import DEFAULT_SERVER_SELECTION_TIMEOUT_MS, MONGOMOCK_URI, wait_for_mongo
from .runtime import Runtime, SystemClock, build_runtime

if TYPE_CHECKING:
    from .dry_run import DryRunFiles, dry_run_recipe, dry_run_service
    from .http_app import build_http_app

_LATER = {
    "DryRunFiles": "dry_run",
    "dry_run_recipe": "dry_run",
    "dry_run_service": "dry_run",
    "build_http_app": "http_app",
}
"""Names imported on first use, with their module: a run's processes (a shard's, a pool worker's)
import ``runtime`` alone, never the dry run's in-memory stores or the HTTP app's wiring."""


if not TYPE_CHECKING:  # mypy sees the imports above: a module __getattr__ would type any name as Any

    def __getattr__(name: str) -> Any:
        module = _LATER.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{module}"), name)


__all__ = [
    "DEFAULT_SERVER_SELECTION_TIMEOUT_MS",
    "MONGOMOCK_URI",
    "DryRunFiles",
    "Runtime",
    "SystemClock",
    "build_http_app",
    "build_runtime",
    "dry_run_recipe",
    "dry_run_service",
    "wait_for_mongo",
]
