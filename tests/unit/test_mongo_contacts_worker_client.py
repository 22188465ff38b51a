"""A worker's copy of the MongoDB contacts opens its client with the runner's options."""

from __future__ import annotations

import mongomock

from crm_audit_adapters.mongo.contacts import MongoContactDirectory


def test_a_workers_client_waits_for_a_server_as_the_runner_does() -> None:
    """Aware datetimes and a 10 s server selection (the runner's ``mongo_client_for``), not pymongo's
    30 s default: a worker meets a down CDP as the runner would. No server is contacted here."""
    db = mongomock.MongoClient().get_database("cdp")
    copy = MongoContactDirectory.in_database(
        db, uri="mongodb://127.0.0.1:1/?connectTimeoutMS=200"
    ).worker_copy()
    assert copy is not None
    try:
        copy._contacts()
        client = copy._client
        assert client is not None
        assert client.options.server_selection_timeout == 10
        assert client.codec_options.tz_aware
    finally:
        copy.close()
