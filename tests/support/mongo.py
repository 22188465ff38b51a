"""MongoDB fixtures: every ``mongo_db`` test runs on three backends.

* ``mongomock``: the in-process double (no network, no second process);
* ``wire``: the mongoeco emulator as a separate server process that pymongo reaches over TCP
  (``support.mongo_emulator``): one server for the session, one database per test, dropped after;
* ``real``: a MongoDB server, only when ``CRM_AUDIT_TEST_MONGO_URI`` (e.g.
  ``mongodb://localhost:27017``) is set — each test gets its own database there, dropped afterwards.
  Without it the real runs simply are not generated; nothing is skipped.

mongomock 4.x refuses to *create* a partial unique index when documents outside the filter share a
key (it checks every document, ignoring ``partialFilterExpression``); a real server builds it. The
mongomock backend therefore runs with ``mongomock_partial_unique_index_builds``, a test-only patch
that checks uniqueness only among documents the filter selects. Inserts and updates need no patch:
mongomock already honours the filter there. docs/mongodb.md lists this limitation.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import mongomock
import pytest
from mongomock import helpers
from pymongo import MongoClient
from pymongo.errors import AutoReconnect, DuplicateKeyError, OperationFailure

from crm_audit_transform.domain import ActivityLog, Actor, FieldChange
from crm_audit_transform.jobs import IN_PROGRESS, MigrationJob
from support.mongo_emulator import MongoEmulator

__all__ = [
    "MONGO_URI_ENV",
    "fresh_database",
    "mongo_backends",
    "mongo_db",
    "mongomock_partial_unique_index_builds",
    "real_mongo_client",
    "wire_mongo_client",
    "wire_mongo_uri",
]

MONGO_URI_ENV = "CRM_AUDIT_TEST_MONGO_URI"


def mongo_backends() -> list[Any]:
    """``mongomock`` and ``wire`` always; ``real`` (marked ``mongo_real``) only with a server URI."""
    backends: list[Any] = ["mongomock", "wire"]
    if os.environ.get(MONGO_URI_ENV):
        backends.append(pytest.param("real", marks=pytest.mark.mongo_real))
    return backends


def _original_create_index() -> Any:
    return mongomock.collection.Collection.create_index


def _value_at(doc: dict[str, Any], dotted: str) -> Any:
    try:
        return helpers.get_value_by_dot(doc, dotted)
    except KeyError:
        return None


def mongomock_partial_unique_index_builds(original: Any) -> Any:
    """Wrap mongomock's ``create_index`` so a partial unique index is built the way a server builds it."""

    def create_index(
        self: Any, key_or_list: Any, cache_for: int = 300, session: Any = None, **kwargs: Any
    ) -> Any:
        partial = kwargs.get("partialFilterExpression")
        if not kwargs.get("unique") or partial is None:
            return original(self, key_or_list, cache_for, session=session, **kwargs)
        index_list = helpers.create_index_list(key_or_list)
        name = kwargs.get("name") or helpers.gen_index_name(index_list)
        index = {"key": index_list, "unique": True, "partialFilterExpression": partial}
        existing = self._store.indexes.get(name)
        if existing is not None:
            if existing != index:
                raise OperationFailure(f"Index with name: {name} already exists with different options")
            return name
        seen: set[str] = set()
        for doc in self.find(partial):
            key = repr([_value_at(doc, field) for field, _ in index_list])
            if key in seen:
                raise DuplicateKeyError("E11000 Duplicate Key Error", 11000)
            seen.add(key)
        self._store.create_index(name, index)
        return name

    return create_index


@pytest.fixture(scope="session")
def real_mongo_client() -> Iterator[MongoClient[dict[str, Any]] | None]:
    """One client for the session when a server is configured, else None."""
    uri = os.environ.get(MONGO_URI_ENV)
    if not uri:
        yield None
        return
    client: MongoClient[dict[str, Any]] = MongoClient(uri, serverSelectionTimeoutMS=5000)
    client.admin.command("ping")  # fail the session early and clearly when the server is not there
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def wire_mongo_uri() -> Iterator[str]:
    """URI of the session's MongoDB wire-protocol emulator: a separate process on a free loopback port."""
    with MongoEmulator() as uri:
        yield uri


@pytest.fixture(scope="session")
def wire_mongo_client(wire_mongo_uri: str) -> Iterator[MongoClient[dict[str, Any]]]:
    """One pymongo client to the emulator for the session (``tz_aware`` like the adapters' own)."""
    client: MongoClient[dict[str, Any]] = MongoClient(
        wire_mongo_uri, serverSelectionTimeoutMS=10_000, tz_aware=True
    )
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(params=mongo_backends())
def mongo_db(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A fresh, empty database: mongomock's, or a uniquely named one on the emulator or the real server."""
    yield from fresh_database(request, monkeypatch, request.param)


def fresh_database(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, backend: str
) -> Iterator[Any]:
    """A fresh database on ``backend`` (``mongomock``, ``wire`` or ``real``), for any fixture to yield."""
    if backend == "mongomock":
        monkeypatch.setattr(
            mongomock.collection.Collection,
            "create_index",
            mongomock_partial_unique_index_builds(_original_create_index()),
        )
        yield mongomock.MongoClient()["crm_audit_test"]
        return
    fixture = "wire_mongo_client" if backend == "wire" else "real_mongo_client"
    client: MongoClient[dict[str, Any]] | None = request.getfixturevalue(fixture)
    assert client is not None
    name = f"crm_audit_test_{uuid.uuid4().hex[:16]}"
    try:
        yield client[name]
    finally:
        client.drop_database(name)


# Builders for the Mongo adapter's tests (imported explicitly, not fixtures).

T0 = dt.datetime(2024, 3, 1, 8, 30, 15, 123000, tzinfo=dt.UTC)
"""A millisecond-aligned instant: what BSON stores is exactly what a test compares against."""


def activity_log(
    audit_id: int = 1,
    *,
    company: str = "company-a",
    tenant: str = "tenant_a",
    external_id: str | None = None,
    **overrides: Any,
) -> ActivityLog:
    """A migrated log with a deterministic ``crm:{tenant}:audit:{id}`` external_id."""
    fields: dict[str, Any] = {
        "company_sso_id": company,
        "customer_id": f"customer-{audit_id % 7}",
        "category": "deal",
        "action": "update",
        "actor": Actor("user", "Ana Souza", "sso-ana"),
        "changes": (FieldChange("amount", "Amount", Decimal("10.50"), Decimal("12.00")),),
        "timestamp": T0 + dt.timedelta(minutes=audit_id),
        "external_id": f"crm:{tenant}:audit:{audit_id}" if external_id is None else external_id,
        "metadata": {"crm_audit_id": audit_id, "crm_tenant": tenant, "auditable_type": "Deal"},
    }
    fields.update(overrides)
    return ActivityLog(**fields)


def native_log_document(company: str = "company-a", n: int = 0) -> dict[str, Any]:
    """A live-feed log as the CDP writes it: no ``external_id``, another ``source_tag``."""
    return {
        "company_sso_id": company,
        "customer_id": f"customer-{n}",
        "category": "deal",
        "action": "update",
        "actor": {"type": "user", "name": "Live Feed"},
        "attributes": [],
        "timestamp": T0,
        "source_tag": "live_feed",
        "metadata": {},
    }


def migration_job(
    job_id: str = "job-1", *, company: str = "company-a", status: str = IN_PROGRESS, **overrides: Any
) -> MigrationJob:
    fields: dict[str, Any] = {
        "job_id": job_id,
        "company_sso_id": company,
        "tenant": "tenant_a",
        "status": status,
        "cutoff": T0 - dt.timedelta(days=365),
        "created_at": T0,
        "updated_at": T0,
        "first_audit_id": 1,
        "max_audit_id": 200,
    }
    fields.update(overrides)
    return MigrationJob(**fields)


class FirstAnswerLost:
    """A collection whose first call of ``method`` (or its ``lost``-th) stands on the server and then
    raises ``error`` instead of its answer (a reply lost, or a write concern unconfirmed): the
    store's retry meets its own write. ``calls`` counts the calls of ``method``; every other
    attribute is the inner collection's."""

    def __init__(
        self,
        inner: Any,
        method: str,
        error: Exception | None = None,
        *,
        lost: int = 1,
    ) -> None:
        self._inner, self._method, self._lost, self.calls = inner, method, lost, 0
        self._error = error if error is not None else AutoReconnect("connection reset by peer")

    def __getattr__(self, name: str) -> Any:
        if name != self._method:
            return getattr(self._inner, name)
        call = getattr(self._inner, name)

        def first_answer_lost(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            result = call(*args, **kwargs)
            if self.calls == self._lost:
                raise self._error
            return result

        return first_answer_lost
