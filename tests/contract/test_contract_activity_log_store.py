"""``ports.ActivityLogStore``: one contract that every implementation passes.

Implementations: the in-memory store and timeline (``crm_audit_transform.testing``), the MongoDB
store on mongomock, on the wire-protocol emulator and on a real server when configured, and the
JSONL file sink.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from crm_audit_adapters.files import JsonlActivityLogSink
from crm_audit_adapters.mongo import MongoActivityLogStore, apply_migration
from crm_audit_transform.domain import HELD_BY_ANOTHER_TOOL, NO_EXTERNAL_ID, ActivityLog, FieldChange
from crm_audit_transform.jobs import COMPLETED, ROLLED_BACK
from crm_audit_transform.ports import ActivityLogStore
from crm_audit_transform.ports.log_stores import MigratedLogsById, MigratedLogsInChunks
from crm_audit_transform.testing import (
    FixedClock,
    InMemoryActivityLogStore,
    InMemoryEnrichmentStore,
    InMemoryJobStore,
    _bson_size,
)
from crm_audit_transform.testing._log_limits import NESTS_TOO_DEEP, log_document, too_large
from crm_audit_transform.usecases.rollback import RollbackPorts, rollback
from crm_audit_transform.values import Value
from support.mongo import T0, activity_log, fresh_database, migration_job, mongo_backends

LEASE = dt.timedelta(minutes=2)

IMPLEMENTATIONS = ["in_memory", "timeline", *mongo_backends(), "jsonl_file"]


@pytest.fixture(params=IMPLEMENTATIONS)
def store(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[ActivityLogStore]:
    """An empty store of each implementation (the MongoDB ones with migration 035 applied)."""
    kind = request.param
    if kind == "in_memory":
        yield InMemoryActivityLogStore()
    elif kind == "timeline":
        yield InMemoryEnrichmentStore()
    elif kind == "jsonl_file":
        with JsonlActivityLogSink(tmp_path / "logs.jsonl", fsync="never") as sink:
            yield sink
    else:
        for db in fresh_database(request, monkeypatch, kind):
            apply_migration(db, "up")
            yield MongoActivityLogStore.in_database(db)


def logs(*ids: int, company: str = "company-a") -> list[ActivityLog]:
    return [activity_log(i, company=company) for i in ids]


class TestInsertBatch:
    def test_new_logs_are_inserted_with_one_result_each_in_order(self, store: ActivityLogStore) -> None:
        """Every new log gets an ``inserted`` result, in the order given."""
        results = store.insert_batch(logs(3, 1, 2))
        assert [(r.external_id, r.status) for r in results] == [
            ("crm:tenant_a:audit:3", "inserted"),
            ("crm:tenant_a:audit:1", "inserted"),
            ("crm:tenant_a:audit:2", "inserted"),
        ]
        assert store.count_migrated("company-a") == 3

    def test_a_replayed_batch_is_all_skipped_as_duplicates(self, store: ActivityLogStore) -> None:
        """Idempotency: the second write of the same logs stores nothing more."""
        store.insert_batch(logs(1, 2))
        again = store.insert_batch(logs(1, 2))
        assert [(r.status, r.reason) for r in again] == [("skipped", "duplicate_external_id")] * 2
        assert store.count_migrated("company-a") == 2

    def test_a_duplicate_does_not_stop_the_rest_of_the_batch(self, store: ActivityLogStore) -> None:
        """Unordered: the new logs around a duplicate still land."""
        store.insert_batch(logs(2))
        results = store.insert_batch(logs(1, 2, 3))
        assert [r.status for r in results] == ["inserted", "skipped", "inserted"]
        assert store.count_migrated("company-a") == 3

    def test_a_duplicate_within_one_batch_is_skipped(self, store: ActivityLogStore) -> None:
        """The second copy of an external_id in the same batch is the duplicate."""
        results = store.insert_batch(logs(5, 5))
        assert [r.status for r in results] == ["inserted", "skipped"]
        assert store.count_migrated("company-a") == 1

    def test_the_same_external_id_in_another_company_is_not_a_duplicate(
        self, store: ActivityLogStore
    ) -> None:
        """Uniqueness is per (company_sso_id, external_id)."""
        store.insert_batch(logs(1, company="company-a"))
        results = store.insert_batch(logs(1, company="company-b"))
        assert [r.status for r in results] == ["inserted"]
        assert (store.count_migrated("company-a"), store.count_migrated("company-b")) == (1, 1)


def nested(levels: int) -> Value:
    """A list ``levels`` levels deep as MongoDB counts them: ``[[…[1]…]]``."""
    value: Value = 1
    for _ in range(levels):
        value = [value]
    return value


def sized(audit_id: int, size: int) -> ActivityLog:
    """A log whose document, with the ``_id`` a store adds, is ``size`` bytes of BSON."""
    log: ActivityLog = activity_log(audit_id, metadata={"note": ""})
    empty = _bson_size.document_bytes(log_document(log)) + _bson_size.ID_BYTES
    return attrs.evolve(log, metadata={"note": "x" * (size - empty)})


class TestMongoDbLimits:
    """A log MongoDB would refuse fails alone (``write_error``) on every store, in MongoDB's words,
    and the rest of its batch lands: a test passing on the in-memory stores passes on MongoDB."""

    def test_a_log_nested_past_100_levels_fails_and_one_at_100_is_inserted(
        self, store: ActivityLogStore
    ) -> None:
        """A metadata value sits at level 2: 98 levels in it make 100, 99 make 101."""
        at_limit = activity_log(1, metadata={"deep": nested(98)})
        past = activity_log(2, metadata={"deep": nested(99)})
        change = FieldChange("tags", "Tags", None, nested(98))  # a change's value sits at level 3
        results = store.insert_batch([at_limit, past, activity_log(3, changes=(change,)), *logs(4)])
        assert [(r.status, r.reason, r.detail) for r in results] == [
            ("inserted", "", ""),
            ("failed", "write_error", NESTS_TOO_DEEP),
            ("failed", "write_error", NESTS_TOO_DEEP),
            ("inserted", "", ""),
        ]
        assert store.count_migrated("company-a") == 2

    def test_a_log_past_16_mib_fails_and_one_at_16_mib_is_inserted(self, store: ActivityLogStore) -> None:
        """The limit counts the ``_id`` the store adds: 16,777,216 bytes land, one more fails."""
        limit = _bson_size.MAX_DOCUMENT_BYTES
        results = store.insert_batch([sized(1, limit + 1), sized(2, limit), *logs(3)])
        assert [(r.status, r.reason, r.detail) for r in results] == [
            ("failed", "write_error", too_large(limit + 1)),
            ("inserted", "", ""),
            ("inserted", "", ""),
        ]
        assert store.count_migrated("company-a") == 2

    def test_a_log_without_external_id_fails_alone_and_is_never_stored(self, store: ActivityLogStore) -> None:
        """No ``external_id``: no idempotency key, and a native log's shape. Every store refuses it in
        one set of words and writes the rest; a second one is refused again, not taken for a duplicate.
        The in-memory store and timeline inserted it (and a rollback then deleted it as ours)."""
        bare = [activity_log(1, external_id=""), activity_log(2, external_id="")]
        results = store.insert_batch([*bare, *logs(3)])
        assert [(r.status, r.reason, r.detail) for r in results] == [
            ("failed", "write_error", NO_EXTERNAL_ID),
            ("failed", "write_error", NO_EXTERNAL_ID),
            ("inserted", "", ""),
        ]
        assert store.count_migrated("company-a") == 1


class TestKeyHeldByAnotherTool:
    """A log another tool stored under one of our keys (another ``source_tag``) is not ours.

    Not run on the JSONL file sink: a dry run's file holds only the logs that dry run wrote.
    """

    @pytest.mark.parametrize("store", [k for k in IMPLEMENTATIONS if k != "jsonl_file"], indirect=True)
    def test_that_record_fails_and_the_other_log_stays(self, store: ActivityLogStore) -> None:
        """Our log is not written and fails (``write_error``), so a run does not count it as migrated
        (a duplicate of our own log is a replay and is); the rest of the batch lands."""
        store.insert_batch([activity_log(2, source_tag="go_service")])
        results = store.insert_batch(logs(1, 2, 3))
        assert [(r.status, r.reason) for r in results] == [
            ("inserted", ""),
            ("failed", "write_error"),
            ("inserted", ""),
        ]
        assert HELD_BY_ANOTHER_TOOL in results[1].detail
        assert store.count_migrated("company-a") == 2
        replay = store.insert_batch(logs(1, 2))
        assert [(r.status, r.reason) for r in replay] == [
            ("skipped", "duplicate_external_id"),
            ("failed", "write_error"),
        ]


class TestRollback:
    def test_delete_migrated_removes_only_that_companys_logs_and_says_how_many(
        self, store: ActivityLogStore
    ) -> None:
        """Rollback is scoped to one company, counted, and idempotent."""
        store.insert_batch(logs(1, 2, 3, company="company-a"))
        store.insert_batch(logs(1, company="company-b"))
        assert store.delete_migrated("company-a") == 3
        assert store.delete_migrated("company-a") == 0
        assert (store.count_migrated("company-a"), store.count_migrated("company-b")) == (0, 1)

    def test_rolled_back_logs_can_be_written_again(self, store: ActivityLogStore) -> None:
        """After a rollback the same external_ids are new again (a fresh migration re-writes them)."""
        store.insert_batch(logs(1, 2))
        store.delete_migrated("company-a")
        assert [r.status for r in store.insert_batch(logs(1, 2))] == ["inserted", "inserted"]

    def test_logs_deleted_by_id_or_in_a_chunk_can_be_written_again_and_only_they(
        self, store: ActivityLogStore
    ) -> None:
        """A key freed by ``delete_migrated_ids`` or ``delete_migrated_chunk`` is new again; the logs
        kept are still duplicates, and so are the new ones in a later batch."""
        if not isinstance(store, MigratedLogsById):
            assert isinstance(store, JsonlActivityLogSink)
            return
        assert isinstance(store, MigratedLogsInChunks)
        store.insert_batch(logs(1, 2, 3))
        assert store.delete_migrated_ids("company-a", [logs(1)[0].external_id]) == 1
        assert store.delete_migrated_chunk("company-a", store.migrated_chunk("company-a", 1)) == 1
        first = [(r.external_id, r.status) for r in store.insert_batch(logs(1, 2, 3, 4))]
        assert sorted(status for _, status in first) == ["inserted", "inserted", "inserted", "skipped"]
        assert [r.status for r in store.insert_batch(logs(1, 2, 3, 4))] == ["skipped"] * 4

    def test_a_batch_undoing_itself_deletes_its_own_logs_only(self, store: ActivityLogStore) -> None:
        """MigratedLogsById (every store but the file sink): the named logs of that company, no other
        log of it, none of another company's with the same ids. The JSONL sink deletes a whole account
        only (a rewrite of the file), so it does not offer the port, and ``/migrate`` over it names
        ``rollback`` instead (docs/http.md)."""
        if not isinstance(store, MigratedLogsById):
            assert isinstance(store, JsonlActivityLogSink)
            assert not hasattr(store, "delete_migrated_ids")
            return
        store.insert_batch(logs(1, 2, 3, company="company-a"))
        store.insert_batch(logs(1, company="company-b"))
        ids = [log.external_id for log in logs(1, 3, 9)]
        assert store.delete_migrated_ids("company-a", ids) == 2
        assert store.delete_migrated_ids("company-a", ids) == 0
        assert (store.count_migrated("company-a"), store.count_migrated("company-b")) == (1, 1)

    def test_an_unknown_company_counts_and_deletes_nothing(self, store: ActivityLogStore) -> None:
        """No logs: zero, not an error."""
        assert store.count_migrated("nobody") == 0
        assert store.delete_migrated("nobody") == 0

    def test_a_chunk_is_bounded_and_deletes_that_companys_logs_only(self, store: ActivityLogStore) -> None:
        """MigratedLogsInChunks (every store but the file sink): at most ``limit`` ids of that
        company's migrated logs, deleted once (a second delete of the chunk counts 0), never another
        company's logs under the same chunk. The JSONL sink rewrites a whole account in one atomic
        replace of its file (``delete_migrated``), so rollback deletes it in one step."""
        if not isinstance(store, MigratedLogsInChunks):
            assert isinstance(store, JsonlActivityLogSink)
            return
        store.insert_batch(logs(1, 2, 3, 4, 5, company="company-a"))
        store.insert_batch(logs(1, 2, company="company-b"))
        chunk = store.migrated_chunk("company-a", 2)
        assert len(chunk) == 2
        assert store.delete_migrated_chunk("company-b", chunk) == 0
        assert store.delete_migrated_chunk("company-a", chunk) == 2
        assert store.delete_migrated_chunk("company-a", chunk) == 0
        assert (store.count_migrated("company-a"), store.count_migrated("company-b")) == (3, 2)
        deleted = 2
        while chunk := store.migrated_chunk("company-a", 2):
            deleted += store.delete_migrated_chunk("company-a", chunk)
        assert (deleted, store.count_migrated("company-a"), store.count_migrated("company-b")) == (5, 0, 2)
        assert store.migrated_chunk("nobody", 2) == []

    def test_a_rollback_in_chunks_deletes_the_account_and_counts_it_exactly(
        self, store: ActivityLogStore
    ) -> None:
        """Through ``rollback`` with chunks of 2: every migrated log of the account goes, the other
        company's stay, and the job's ``logs_deleted`` is the number deleted (each chunk counted once)."""
        store.insert_batch(logs(*range(1, 8), company="company-a"))
        store.insert_batch(logs(1, company="company-b"))
        jobs = InMemoryJobStore([migration_job(status=COMPLETED)], clock=FixedClock(T0))
        result = rollback("company-a", RollbackPorts(jobs, store, FixedClock(T0), LEASE, chunk=2))
        stored = jobs.latest("company-a")
        assert stored is not None
        assert (result.deleted, stored.logs_deleted, stored.status) == (7, 7, ROLLED_BACK)
        assert (store.count_migrated("company-a"), store.count_migrated("company-b")) == (0, 1)
