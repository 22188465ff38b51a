"""``MongoActivityLogStore.restore_migrated_many`` (mongomock and the wire emulator): a batch of
drifted logs set back in one unordered ``bulk_write``, a log MongoDB refuses counted apart."""

from __future__ import annotations

from typing import Any

import pytest
from pymongo.database import Database
from pymongo.errors import AutoReconnect

from crm_audit_adapters.mongo import MongoActivityLogStore, RetryPolicy, apply_migration
from crm_audit_transform.domain import FieldChange
from crm_audit_transform.errors import RestoreRefused, StoreUnavailable
from crm_audit_transform.usecases._verify_findings import written_keys
from support.mongo import activity_log, fresh_database

NO_WAIT = RetryPolicy(attempts=2, sleep=lambda _: None)
RUN_KEYS = written_keys(True)


class Requests:
    """A collection that counts the writes sent, and fails ``bulk_write`` while ``down``."""

    def __init__(self, collection: Any) -> None:
        self._collection = collection
        self.sent: list[str] = []
        self.down = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._collection, name)

    def bulk_write(self, requests: Any, **kwargs: Any) -> Any:
        self.sent.append("bulk_write")
        if self.down:
            raise AutoReconnect("connection reset")
        return self._collection.bulk_write(requests, **kwargs)

    def update_many(self, *args: Any, **kwargs: Any) -> Any:
        self.sent.append("update_many")
        return self._collection.update_many(*args, **kwargs)


def drifted(db: Database[Any], n: int) -> list[Any]:
    """``n`` logs written by the store, each then edited: the last one's metadata made no document."""
    list(apply_migration(db, "up"))
    logs = [activity_log(i) for i in range(1, n + 1)]
    MongoActivityLogStore.in_database(db).insert_batch(logs)
    db.activity_logs.update_many({}, {"$set": {"category": "other", "metadata.crm_note": "kept"}})
    db.activity_logs.update_one({"external_id": logs[-1].external_id}, {"$set": {"metadata": "gone"}})
    return logs


def test_a_batch_is_set_back_in_one_request(mongo_db: Database[Any]) -> None:
    """Twenty drifted logs (one whose metadata is no document) are set back by one ``bulk_write``,
    each counted once, another writer's key kept; before, one ``update_many`` went out a log."""
    logs = drifted(mongo_db, 20)
    collection = Requests(mongo_db.activity_logs)
    store = MongoActivityLogStore(collection, retry=NO_WAIT)
    result = store.restore_migrated_many(logs, RUN_KEYS)
    assert (result.restored, result.refused, collection.sent) == (20, (), ["bulk_write"])
    for log in logs:
        stored = mongo_db.activity_logs.find_one({"external_id": log.external_id})
        assert stored is not None
        kept = {} if log is logs[-1] else {"crm_note": "kept"}
        assert (stored["category"], stored["metadata"]) == (log.category, {**log.metadata, **kept})
    again = store.restore_migrated_many([*logs, activity_log(99)], RUN_KEYS)
    assert (again.restored, again.refused) == (20, ())  # the 21st has no stored log


def test_an_outage_midway_is_typed_and_a_rerun_completes(mongo_db: Database[Any]) -> None:
    """A connection lost on every attempt is ``StoreUnavailable`` (nothing half counted), and the
    same call once the store is back sets every log back."""
    logs = drifted(mongo_db, 5)
    collection = Requests(mongo_db.activity_logs)
    store = MongoActivityLogStore(collection, retry=NO_WAIT)
    collection.down = True
    with pytest.raises(StoreUnavailable, match="restore drifted activity logs"):
        store.restore_migrated_many(logs, RUN_KEYS)
    collection.down = False
    assert store.restore_migrated_many(logs, RUN_KEYS).restored == 5
    assert mongo_db.activity_logs.count_documents({"category": "other"}) == 0


def test_a_document_past_16_mib_is_refused_and_counted(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the wire emulator, which refuses as MongoDB does: a log whose restore would make a document
    of more than 16 MiB (another writer's 9 MiB key kept beside 8 MiB of the log's) is a
    ``RestoreRefused`` naming it, counted; the batch's other log is set back all the same, and the
    one-log call raises it typed. Before, MongoDB's write error stopped the whole repair."""
    for db in fresh_database(request, monkeypatch, "wire"):
        list(apply_migration(db, "up"))
        small, other = activity_log(1), activity_log(2)
        store = MongoActivityLogStore.in_database(db, retry=NO_WAIT)
        store.insert_batch([small, other])
        db.activity_logs.update_many({}, {"$set": {"category": "other"}})
        db.activity_logs.update_one(
            {"external_id": small.external_id}, {"$set": {"metadata.crm_note": "x" * (9 << 20)}}
        )
        big = activity_log(1, changes=(FieldChange("notes", "Notes", "a", "y" * (8 << 20)),))
        result = store.restore_migrated_many([big, other], RUN_KEYS)
        assert result.restored == 1
        (refusal,) = result.refused
        assert isinstance(refusal, RestoreRefused)
        assert refusal.external_id == big.external_id
        assert "code 17419" in refusal.reason
        assert db.activity_logs.find_one({"external_id": other.external_id})["category"] == other.category
        with pytest.raises(RestoreRefused):
            store.restore_migrated(big, RUN_KEYS)
