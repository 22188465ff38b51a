"""A MongoDB that several processes share: the configured server, else the wire-protocol emulator.

Celery workers are separate processes, so they cannot share a mongomock client.
``shared_mongo_uri`` answers with ``CRM_AUDIT_TEST_MONGO_URI`` when it is set, and otherwise with
the session's mongoeco emulator (``wire_mongo_uri``, support/mongo.py and support/mongo_emulator.py).
Each test takes its own database name from ``wire_mongo_database`` so accounts never meet across
tests.

mongoeco checks a compound unique index by scanning the collection, so an insert costs time in
proportion to the documents already there: fine for the corpus accounts, not for benchmarks.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from pymongo import MongoClient

from .mongo import MONGO_URI_ENV

__all__ = ["shared_mongo_uri", "wire_mongo_database"]


@pytest.fixture(scope="session")
def shared_mongo_uri(request: pytest.FixtureRequest) -> str:
    """A MongoDB URI every process of the session can reach."""
    given = os.environ.get(MONGO_URI_ENV)
    if given:
        return given
    uri: str = request.getfixturevalue("wire_mongo_uri")
    return uri


@pytest.fixture
def wire_mongo_database(shared_mongo_uri: str) -> Iterator[str]:
    """A fresh database name on the shared server, dropped after the test."""
    name = f"crm_audit_wire_{uuid.uuid4().hex[:12]}"
    yield name
    with MongoClient(shared_mongo_uri, serverSelectionTimeoutMS=10_000) as client:
        client.drop_database(name)
