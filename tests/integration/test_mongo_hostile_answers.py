"""MongoActivityLogStore against answers a sound server never gives, and a URI reading from secondaries.

Each ends typed, nothing counted from an answer the store cannot read, and a replay of the batch
(what ``--resume`` sends) leaves each log stored once, as a clean run does.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from pymongo import MongoClient, ReadPreference
from pymongo.errors import BulkWriteError

from crm_audit_adapters.mongo import MongoActivityLogStore, MongoJobStore, RetryPolicy, apply_migration
from crm_audit_transform.errors import StoreUnavailable
from support.mongo import activity_log

NO_WAIT = RetryPolicy(attempts=3, sleep=lambda _: None)


class Answering:
    """A collection whose ``insert_many`` applies the batch, then answers with ``write_errors``."""

    def __init__(self, inner: Any, write_errors: list[Any]) -> None:
        self._inner = inner
        self._write_errors = write_errors
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def insert_many(self, documents: list[dict[str, Any]], ordered: bool = True) -> Any:
        self.calls += 1
        with contextlib.suppress(BulkWriteError):
            self._inner.insert_many(documents, ordered=ordered)
        raise BulkWriteError({"writeErrors": self._write_errors, "nInserted": len(documents)})


@pytest.fixture
def logs(mongo_db: Any) -> Any:
    apply_migration(mongo_db, "up")
    return mongo_db.activity_logs


DUPLICATE = {"code": 11000, "errmsg": "E11000 duplicate key error"}


class TestAWriteErrorNamingNoLogOfTheBatch:
    @pytest.mark.parametrize(
        "write_errors",
        [
            [{"index": 2, **DUPLICATE}],  # past the batch of 2
            [{"index": -1, **DUPLICATE}],
            [DUPLICATE],  # no index
            [{"index": "0", **DUPLICATE}],
            [{"index": True, **DUPLICATE}],
            [{"index": 0, **DUPLICATE}, {"index": 0, **DUPLICATE}],
            ["E11000"],  # not a document
        ],
        ids=["past-the-end", "negative", "missing", "text", "bool", "twice", "not-a-document"],
    )
    def test_is_store_unavailable_and_a_replay_stores_each_log_once(
        self, logs: Any, write_errors: list[Any]
    ) -> None:
        """Not retried, nothing counted: ``StoreUnavailable`` naming the answer, never a document's
        value; before, it was ``IndexError``, ``KeyError`` or ``ValueError``, untyped, or another
        log's error counted. The replay meets the logs that answer had applied as duplicates."""
        batch = [activity_log(1, metadata={"note": "hunter2"}), activity_log(2)]
        answering = Answering(logs, write_errors)
        with pytest.raises(StoreUnavailable, match="none of them") as caught:
            MongoActivityLogStore(answering, retry=NO_WAIT).insert_batch(batch)
        assert answering.calls == 1
        assert "hunter2" not in str(caught.value)
        replay = MongoActivityLogStore(logs, retry=NO_WAIT).insert_batch(batch)
        assert [(r.status, r.reason) for r in replay] == [("skipped", "duplicate_external_id")] * 2
        assert sorted(doc["external_id"] for doc in logs.find({}, {"external_id": 1})) == [
            log.external_id for log in batch
        ]


class TestAUriReadingFromSecondaries:
    def test_the_store_reads_its_own_writes_from_the_primary(
        self, wire_mongo_client: MongoClient[dict[str, Any]]
    ) -> None:
        """``readPreference=secondaryPreferred`` in the URI: the store's reads (a retry telling its
        own logs from older ones right after its insert, a rollback's counts) still go to the
        primary, where its writes are; a secondary lagging behind would have made a retry's own
        logs count as skipped duplicates. So does the job store (a job read back to decide the next
        step). The client's other collections keep the URI's choice."""
        host, port = wire_mongo_client.address  # type: ignore[misc]
        client: MongoClient[dict[str, Any]] = MongoClient(
            f"mongodb://{host}:{port}/?directConnection=true&readPreference=secondaryPreferred"
        )
        try:
            db = client.crm_audit_reads
            store = MongoActivityLogStore.in_database(db)
            jobs = MongoJobStore.in_database(db)
            assert store.collection.read_preference == ReadPreference.PRIMARY
            assert jobs._docs.collection.read_preference == ReadPreference.PRIMARY
            assert db.activity_logs.read_preference == ReadPreference.SECONDARY_PREFERRED
            assert store.log_encoder() is not None  # still handed raw BSON
        finally:
            client.close()
