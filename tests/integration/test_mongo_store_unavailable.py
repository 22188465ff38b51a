"""``StoreUnavailable`` says what went wrong in one short clause, with no secret of the URI in it."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.errors import OperationFailure, WriteConcernError

from crm_audit_adapters.mongo.enrichment import MongoEnrichmentStore
from crm_audit_adapters.mongo.retry import driver_cause
from crm_audit_adapters.retrying import RetryPolicy
from crm_audit_transform.errors import StoreUnavailable

PASSWORD = "Hunter2-s3cret-pw"
USER = "ops-writer"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens on it once the socket is closed


@pytest.fixture
def unreachable() -> Iterator[MongoClient[dict[str, Any]]]:
    uri = f"mongodb://{USER}:{PASSWORD}@127.0.0.1:{closed_port()}/?authSource=admin&serverSelectionTimeoutMS=100"
    client: MongoClient[dict[str, Any]] = MongoClient(uri, tz_aware=True)
    try:
        yield client
    finally:
        client.close()


class TestStoreUnavailableMessage:
    def test_an_unreachable_server_is_one_clause_without_the_topology_or_the_uri(
        self, unreachable: MongoClient[dict[str, Any]]
    ) -> None:
        """Server selection timing out (the server went away mid-pass): the message names the host and
        the refusal only. Before: pymongo's whole topology description and configured timeouts."""
        store = MongoEnrichmentStore.in_database(unreachable.crm, retry=RetryPolicy(attempts=1))
        with pytest.raises(StoreUnavailable) as caught:
            store.association_logs_lacking("sso-acme", after=None, limit=10)
        message = str(caught.value)
        assert message.startswith("scan association logs failed: 127.0.0.1:")
        assert "Connection refused" in message
        for never in ("Topology", "ServerDescription", "configured timeouts", "Timeout:", PASSWORD, USER):
            assert never not in message
        assert len(message) < 120

    def test_a_server_refusal_is_named_by_its_code_without_the_full_reply(self) -> None:
        """An ``OperationFailure``'s full reply (which may quote the document) is left out; its code
        name and code say what it was."""
        refused = OperationFailure(
            "Document failed validation",
            121,
            {"code": 121, "codeName": "DocumentValidationFailure", "errInfo": {"value": "card 4111-1111"}},
        )
        assert driver_cause(refused) == "DocumentValidationFailure (121): Document failed validation"

    def test_a_message_that_names_its_code_already_keeps_its_words(self) -> None:
        """The store's own write-concern message (``code 64: …``) is not named twice."""
        unconfirmed = WriteConcernError("write concern not confirmed: code 64: waiting for replication", 64)
        assert driver_cause(unconfirmed) == "write concern not confirmed: code 64: waiting for replication"

    def test_a_secret_across_the_cut_is_scrubbed_whole(self) -> None:
        """A URI whose password straddles the 300th character: scrubbed before the cut, nothing of
        the password is left. Cut first (``wait_for_mongo`` before), the cut kept its first
        characters, which no scrub of the whole password matches."""
        uri = "mongodb://reader:s3cret-password-of-ops@db.example:27017/cdp"
        cause = driver_cause(OperationFailure("x" * 270 + " " + uri, 2), [uri])
        assert "s3cret" not in cause
        assert "mongodb://reader:***" in cause

    def test_a_long_server_message_is_cut(self) -> None:
        """A server's errmsg past 300 characters is cut with an ellipsis: the error is one line."""
        cause = driver_cause(OperationFailure("x" * 5000, 2))
        assert len(cause) == 300
        assert cause.startswith("code 2: xxx")
        assert cause.endswith("…")
