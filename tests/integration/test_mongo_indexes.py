"""Index migrations 035: the golang-migrate files, applying them, and what the indexes refuse."""

from __future__ import annotations

import datetime as dt
import traceback
from typing import Any

import mongomock
import pytest
from pymongo.errors import DuplicateKeyError, OperationFailure

from crm_audit_adapters.mongo import (
    CollectionNames,
    MongoIndexState,
    applied_version,
    apply_migration,
    index_status,
    load_migration,
    missing_indexes,
)
from crm_audit_transform.errors import IndexConflict, LeaseHeld
from support.mongo import native_log_document

ALL_INDEXES = (
    "activity_logs.uniq_company_external_id",
    "contacts.idx_company_crm_data_id",
    "crm_activity_log_migration_jobs.idx_company_sso_id",
    "crm_activity_log_migration_jobs.idx_company_status",
)


def _indexes(db: Any, collection: str) -> dict[str, dict[str, Any]]:
    return {name: info for name, info in db[collection].index_information().items() if name != "_id_"}


class TestMigrationFiles:
    def test_up_file_is_an_array_of_create_indexes_commands(self) -> None:
        """The up file is what golang-migrate's MongoDB driver runs: an array of createIndexes commands."""
        commands = load_migration("up")
        assert [sorted(c) for c in commands] == [["createIndexes", "indexes"]] * 3
        specs = {i["name"]: i for c in commands for i in c["indexes"]}
        assert specs["uniq_company_external_id"] == {
            "key": {"company_sso_id": 1, "external_id": 1},
            "name": "uniq_company_external_id",
            "unique": True,
            "partialFilterExpression": {"external_id": {"$type": "string"}},
        }
        assert specs["idx_company_status"]["partialFilterExpression"] == {"status": "in_progress"}
        assert specs["idx_company_status"]["unique"] is True
        assert specs["idx_company_crm_data_id"]["key"] == {"company_sso_id": 1, "crm_data.id": 1}
        assert specs["idx_company_sso_id"]["key"] == {"company_sso_id": 1}

    def test_down_file_drops_exactly_what_up_creates(self) -> None:
        """Every index the up file creates is dropped by the down file, and nothing else."""
        created = {(c["createIndexes"], i["name"]) for c in load_migration("up") for i in c["indexes"]}
        dropped = {(c["dropIndexes"], c["index"]) for c in load_migration("down")}
        assert dropped == created

    def test_unknown_direction_is_refused(self) -> None:
        """Only "up" and "down" name a migration file."""
        with pytest.raises(ValueError, match="direction"):
            load_migration("sideways")  # type: ignore[arg-type]


class TestApplyMigration:
    def test_up_creates_the_four_indexes_with_their_options(self, mongo_db: Any) -> None:
        """After up, the partial unique indexes carry their filters and nothing is missing."""
        steps = apply_migration(mongo_db, "up")
        assert steps == tuple(f"created {name}" for name in ALL_INDEXES)
        assert missing_indexes(mongo_db) == ()
        logs = _indexes(mongo_db, "activity_logs")["uniq_company_external_id"]
        assert logs["unique"] is True
        assert logs["partialFilterExpression"] == {"external_id": {"$type": "string"}}
        jobs = _indexes(mongo_db, "crm_activity_log_migration_jobs")["idx_company_status"]
        assert jobs["partialFilterExpression"] == {"status": "in_progress"}

    def test_up_twice_is_harmless(self, mongo_db: Any) -> None:
        """Applying up a second time changes nothing and raises nothing."""
        apply_migration(mongo_db, "up")
        before = {c: _indexes(mongo_db, c) for c in ("activity_logs", "contacts")}
        steps = apply_migration(mongo_db, "up")
        assert {c: _indexes(mongo_db, c) for c in ("activity_logs", "contacts")} == before
        assert steps == tuple(f"present {name}" for name in ALL_INDEXES)

    def test_up_then_down_leaves_no_index_behind(self, mongo_db: Any) -> None:
        """Down drops all four indexes; only the _id indexes remain."""
        apply_migration(mongo_db, "up")
        steps = apply_migration(mongo_db, "down")
        assert all(step.startswith("dropped ") for step in steps)
        for collection in ("activity_logs", "contacts", "crm_activity_log_migration_jobs"):
            assert _indexes(mongo_db, collection) == {}
        assert set(missing_indexes(mongo_db)) == set(ALL_INDEXES)

    @pytest.mark.parametrize("where", ["job", "shard"])
    def test_down_is_refused_while_a_runner_holds_a_lease(self, mongo_db: Any, where: str) -> None:
        """A live runner checked the indexes when it started: down would leave it writing without the
        unique index, so it is refused (nothing dropped) until the lease has expired — on the server's
        clock ($$NOW; mongomock, which cannot evaluate it, is given the time). A shard's lease is seen in
        the stored form, shards keyed by number: "shards.lease_expires_at" never matched it."""
        apply_migration(mongo_db, "up")
        now = dt.datetime.now(dt.UTC)
        at = now if isinstance(mongo_db, mongomock.Database) else None
        lease = {"lease_owner": "host:42", "lease_expires_at": now + dt.timedelta(seconds=90)}
        idle = {"lease_owner": None, "lease_expires_at": None}
        job: dict[str, Any] = {"_id": "j1", "company_sso_id": "company-a", "status": "in_progress"}
        if where == "job":
            job.update(lease)
        else:
            job.update(idle, shards={"0": {"shard": 0, **idle}, "1": {"shard": 1, **lease}})
        mongo_db.crm_activity_log_migration_jobs.insert_one(job)
        with pytest.raises(LeaseHeld, match="j1 of company company-a"):
            apply_migration(mongo_db, "down", now=at)
        assert missing_indexes(mongo_db) == ()
        assert applied_version(mongo_db) == (35, False)
        path = "lease_expires_at" if where == "job" else "shards.1.lease_expires_at"
        expired = now - dt.timedelta(seconds=1)
        mongo_db.crm_activity_log_migration_jobs.update_one({"_id": "j1"}, {"$set": {path: expired}})
        steps = apply_migration(mongo_db, "down", now=at)
        assert all(step.startswith("dropped ") for step in steps)

    def test_down_without_up_reports_absent_indexes(self, mongo_db: Any) -> None:
        """Down on a database that never had the indexes drops nothing and does not fail."""
        steps = apply_migration(mongo_db, "down")
        assert all(step.startswith("absent ") for step in steps)
        assert len(steps) == 4

    def test_collection_names_are_configurable(self, mongo_db: Any) -> None:
        """With other collection names, the indexes land on those collections."""
        names = CollectionNames(activity_logs="logs_v2", contacts="people", jobs="jobs_v2")
        apply_migration(mongo_db, "up", names)
        assert set(_indexes(mongo_db, "logs_v2")) == {"uniq_company_external_id"}
        assert set(_indexes(mongo_db, "people")) == {"idx_company_crm_data_id"}
        assert set(_indexes(mongo_db, "jobs_v2")) == {"idx_company_sso_id", "idx_company_status"}
        assert "activity_logs" not in mongo_db.list_collection_names()
        assert missing_indexes(mongo_db, names) == ()

    def test_up_builds_over_existing_native_logs_and_finished_jobs(self, mongo_db: Any) -> None:
        """Documents outside the partial filters (native logs, finished jobs) never block the build."""
        mongo_db.activity_logs.insert_many([native_log_document(n=n) for n in range(3)])
        mongo_db.crm_activity_log_migration_jobs.insert_many(
            [{"_id": f"j{n}", "company_sso_id": "company-a", "status": "completed"} for n in range(2)]
        )
        apply_migration(mongo_db, "up")
        assert missing_indexes(mongo_db) == ()

    def test_up_over_two_in_progress_jobs_of_one_account_is_a_conflict(self, mongo_db: Any) -> None:
        """Existing data that breaks a unique index stops the migration with IndexConflict."""
        mongo_db.crm_activity_log_migration_jobs.insert_many(
            [{"_id": f"j{n}", "company_sso_id": "company-a", "status": "in_progress"} for n in range(2)]
        )
        with pytest.raises(IndexConflict) as caught:
            apply_migration(mongo_db, "up")
        assert caught.value.index == "idx_company_status"

    def test_an_index_of_the_same_name_with_other_options_is_a_conflict(self, mongo_db: Any) -> None:
        """A same-named index that is not unique is reported, never silently kept."""
        mongo_db.activity_logs.create_index(
            [("company_sso_id", 1), ("external_id", 1)], name="uniq_company_external_id"
        )
        with pytest.raises(IndexConflict) as caught:
            apply_migration(mongo_db, "up")
        assert caught.value.collection == "activity_logs"


class _ConflictingIndexes:
    """``db`` whose ``activity_logs`` answers ``create_index`` with a server's long conflict."""

    def __init__(self, db: Any, error: OperationFailure) -> None:
        self._db, self._error = db, error

    def __getitem__(self, name: str) -> Any:
        collection = self._db[name]
        if name != "activity_logs":
            return collection
        error = self._error

        class Refusing:
            def index_information(self) -> Any:
                return collection.index_information()

            def create_index(self, *args: Any, **kwargs: Any) -> Any:
                raise error

        return Refusing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


class TestIndexConflictMessage:
    def test_the_servers_words_are_one_bounded_clause_without_its_full_reply(self, mongo_db: Any) -> None:
        """A conflict quotes the server's first clause, named by its code, at most 300 characters:
        not pymongo's ``full error`` (the whole reply, both index specs, a duplicate's key values),
        as ``STORE_UNAVAILABLE`` quotes a driver's error (``retry.driver_cause``)."""
        specs = "{ key: { company_sso_id: 1, external_id: 1 }, partialFilterExpression: { x: 1 } } " * 40
        reply = {
            "ok": 0,
            "errmsg": f"Requested index: {specs}",
            "code": 86,
            "codeName": "IndexKeySpecsConflict",
        }
        error = OperationFailure(f"An existing index has the same name. Requested index: {specs}", 86, reply)
        with pytest.raises(IndexConflict) as caught:
            apply_migration(_ConflictingIndexes(mongo_db, error), "up")  # type: ignore[arg-type]
        message = str(caught.value)
        assert message.startswith(
            "index 'uniq_company_external_id' on 'activity_logs': IndexKeySpecsConflict (86): An existing"
        )
        assert len(message) <= 300 + len("index 'uniq_company_external_id' on 'activity_logs': ")
        assert "full error" not in message

    def test_a_printed_traceback_shows_the_bounded_message_only(self, mongo_db: Any) -> None:
        """Raised ``from`` pymongo's error, a traceback printed ``IndexConflict``'s cause too, with the
        whole reply: both index specs (a duplicate's key values). Now neither cause nor context is
        shown, and the message keeps the server's code."""
        reply = {"ok": 0, "errmsg": 'E11000 dup key: { external_id: "crm:acme:audit:7" }', "code": 11000}
        error = OperationFailure("E11000 duplicate key error collection: cdp.activity_logs", 11000, reply)
        with pytest.raises(IndexConflict) as caught:
            apply_migration(_ConflictingIndexes(mongo_db, error), "up")  # type: ignore[arg-type]
        printed = "".join(traceback.format_exception(caught.value))
        assert "crm:acme:audit:7" not in printed
        assert "full error" not in printed
        assert "code 11000: E11000 duplicate key error" in printed
        assert caught.value.__cause__ is None
        assert caught.value.__suppress_context__


class TestPartialUniqueIndexes:
    def test_duplicate_external_id_within_a_company_is_refused(self, mongo_db: Any) -> None:
        """The database itself refuses a second log with the same (company, external_id)."""
        apply_migration(mongo_db, "up")
        mongo_db.activity_logs.insert_one({"company_sso_id": "company-a", "external_id": "crm:t:audit:1"})
        with pytest.raises(DuplicateKeyError):
            mongo_db.activity_logs.insert_one({"company_sso_id": "company-a", "external_id": "crm:t:audit:1"})

    def test_same_external_id_in_another_company_is_accepted(self, mongo_db: Any) -> None:
        """Uniqueness is per company: another account may hold the same external_id."""
        apply_migration(mongo_db, "up")
        mongo_db.activity_logs.insert_one({"company_sso_id": "company-a", "external_id": "crm:t:audit:1"})
        mongo_db.activity_logs.insert_one({"company_sso_id": "company-b", "external_id": "crm:t:audit:1"})
        assert mongo_db.activity_logs.count_documents({"external_id": "crm:t:audit:1"}) == 2

    def test_native_logs_without_external_id_are_never_refused(self, mongo_db: Any) -> None:
        """Any number of native logs of one company coexist: the partial filter leaves them out."""
        apply_migration(mongo_db, "up")
        for n in range(3):
            mongo_db.activity_logs.insert_one(native_log_document(n=n))
        assert mongo_db.activity_logs.count_documents({"company_sso_id": "company-a"}) == 3

    def test_two_native_logs_with_an_explicit_null_external_id_are_both_stored(self, mongo_db: Any) -> None:
        """The `$type: "string"` filter leaves `external_id: null` out: a second such native log is kept."""
        apply_migration(mongo_db, "up")
        for n in (1, 2):
            mongo_db.activity_logs.insert_one({**native_log_document(n=n), "external_id": None})
        assert (
            mongo_db.activity_logs.count_documents({"external_id": None, "company_sso_id": "company-a"}) == 2
        )

    def test_a_string_external_id_is_still_unique_per_company(self, mongo_db: Any) -> None:
        """The `$type` filter still refuses the same string external_id twice within one company."""
        apply_migration(mongo_db, "up")
        mongo_db.activity_logs.insert_one({"company_sso_id": "company-a", "external_id": "crm:acme:audit:1"})
        mongo_db.activity_logs.insert_one({"company_sso_id": "company-b", "external_id": "crm:acme:audit:1"})
        with pytest.raises(DuplicateKeyError):
            mongo_db.activity_logs.insert_one(
                {"company_sso_id": "company-a", "external_id": "crm:acme:audit:1"}
            )

    def test_second_in_progress_job_of_an_account_is_refused(self, mongo_db: Any) -> None:
        """One in-progress job per account, enforced by idx_company_status."""
        apply_migration(mongo_db, "up")
        jobs = mongo_db.crm_activity_log_migration_jobs
        jobs.insert_one({"_id": "j1", "company_sso_id": "company-a", "status": "in_progress"})
        jobs.insert_one({"_id": "j2", "company_sso_id": "company-b", "status": "in_progress"})
        jobs.insert_one({"_id": "j3", "company_sso_id": "company-a", "status": "completed"})
        with pytest.raises(DuplicateKeyError):
            jobs.insert_one({"_id": "j4", "company_sso_id": "company-a", "status": "in_progress"})


class TestIndexStatusAndVersion:
    def test_up_records_version_35_clean_and_down_removes_it(self, mongo_db: Any) -> None:
        """Like golang-migrate: up records version 35 not dirty; down leaves no version behind."""
        assert applied_version(mongo_db) is None
        apply_migration(mongo_db, "up")
        assert applied_version(mongo_db) == (35, False)
        apply_migration(mongo_db, "down")
        assert applied_version(mongo_db) is None

    def test_a_failed_up_leaves_the_version_dirty(self, mongo_db: Any) -> None:
        """An up that stops on a conflict leaves version 35 marked dirty, as golang-migrate reports it."""
        mongo_db.activity_logs.create_index([("company_sso_id", 1)], name="uniq_company_external_id")
        with pytest.raises(IndexConflict):
            apply_migration(mongo_db, "up")
        assert applied_version(mongo_db) == (35, True)

    def test_status_names_missing_and_differently_defined_indexes(self, mongo_db: Any) -> None:
        """An index of the right name with the old `$exists` filter counts as differs, hence missing."""
        mongo_db.activity_logs.create_index(
            [("company_sso_id", 1), ("external_id", 1)],
            name="uniq_company_external_id",
            unique=True,
            partialFilterExpression={"external_id": {"$exists": True}},
        )
        states = {r.qualified: r.state for r in index_status(mongo_db)}
        assert states["activity_logs.uniq_company_external_id"] == "differs"
        assert states["contacts.idx_company_crm_data_id"] == "missing"
        assert MongoIndexState(mongo_db).missing_indexes() == ALL_INDEXES

    def test_index_state_is_empty_once_up_has_run(self, mongo_db: Any) -> None:
        """After up the write paths' check finds nothing missing."""
        apply_migration(mongo_db, "up")
        assert MongoIndexState(mongo_db).missing_indexes() == ()
        assert {r.state for r in index_status(mongo_db)} == {"present"}
