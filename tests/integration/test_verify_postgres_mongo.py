"""Verify over the real adapters: the CRM in PostgreSQL, the CDP in MongoDB (every ``mongo_db`` backend).

Each fault is injected the way it happens for real — a document deleted, inserted or edited in
``activity_logs``, a row committed behind the cursor in PostgreSQL, a live-feed log written at the
seam, a job document's counts changed — and verify must name it; repair must write ``missing`` rows
and set ``drifted`` logs back, nothing else.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import psycopg
import pytest
from pymongo.database import Database

from crm_audit_adapters.crm_postgres import PostgresAuditSource, PostgresUserDirectory, ReadOnlySession
from crm_audit_adapters.mongo import MongoActivityLogStore, MongoJobStore, apply_migration
from crm_audit_adapters.mongo.enrichment import MongoEnrichmentStore
from crm_audit_adapters.mongo.verification import MongoMigratedLogReader
from crm_audit_transform.jobs import COMPLETED, MigrationJob
from crm_audit_transform.tally import Tally
from crm_audit_transform.usecases import RunSettings
from support.corpus_account import World

pytestmark = pytest.mark.postgres
SETTINGS = RunSettings(page_size=200, halt_threshold=1.0)
RECENT = dt.datetime(2024, 4, 14, tzinfo=dt.UTC)
"""A cutoff keeping the newest ~150 acme rows: the fault tests stay quick on mongomock."""


@pytest.fixture
def sessions() -> Iterator[list[ReadOnlySession]]:
    opened: list[ReadOnlySession] = []
    yield opened
    for session in opened:
        session.close()


def migrated(
    dsn: str,
    db: Database[Any],
    sessions: list[ReadOnlySession],
    *,
    before_run: Any = None,
    cutoff: dt.datetime | None = RECENT,
) -> World:
    """The acme account (from ``cutoff``) run through PostgreSQL and MongoDB, associations enriched."""
    list(apply_migration(db, "up"))
    world = World("acme", enrich=True)
    session = ReadOnlySession.from_dsn(dsn)
    sessions.append(session)
    world.source = PostgresAuditSource(session)  # type: ignore[assignment]
    world.users = PostgresUserDirectory(session)  # type: ignore[assignment]
    world.logs = MongoActivityLogStore.in_database(db)  # type: ignore[assignment]
    world.reader = MongoMigratedLogReader.in_database(db)
    world.enrichment = MongoEnrichmentStore.in_database(db)  # type: ignore[assignment]
    world.jobs = MongoJobStore.in_database(db)  # type: ignore[assignment]
    if before_run is not None:
        before_run()
    world.trigger(date_range_start=cutoff)
    assert world.run(settings=SETTINGS).job.status == COMPLETED
    return world


def job_of(world: World) -> MigrationJob:
    job = world.jobs.latest(world.company)
    assert job is not None
    return job


def first_log(db: Database[Any], **query: Any) -> dict[str, Any]:
    doc = db.activity_logs.find_one({"source_tag": "crm_migration", **query}, sort=[("external_id", 1)])
    assert doc is not None
    return doc


def audit_id_of(doc: dict[str, Any]) -> int:
    return int(doc["metadata"]["crm_audit_id"])


class TestVerifyOnRealAdapters:
    @pytest.mark.wire_duplicate  # a whole-account run: see support/wire_sample.py
    def test_a_clean_run_verifies_clean(
        self, crm_dsn: str, mongo_db: Database[Any], sessions: list[ReadOnlySession]
    ) -> None:
        """Every audit accounted for, no drift (NaN values and enrichment keys included), job consistent."""
        world = migrated(crm_dsn, mongo_db, sessions, cutoff=None)
        report = world.verify()
        job = job_of(world)
        assert report.clean, report.to_json()
        assert (report.audits, report.migrated) == (job.tally.processed, job.tally.migrated)
        assert report.content_checked == job.tally.migrated
        assert mongo_db.activity_logs.count_documents({"metadata.linked_entity_name": {"$exists": True}}) > 0

    def test_each_injected_fault_is_found(
        self, crm_dsn: str, mongo_db: Database[Any], sessions: list[ReadOnlySession]
    ) -> None:
        """A deleted log is missing, an inserted one stray, an edited one drifted, a seam twin an overlap."""
        world = migrated(crm_dsn, mongo_db, sessions)
        logs = mongo_db.activity_logs
        gone = first_log(mongo_db)
        logs.delete_one({"_id": gone["_id"]})
        stray = {k: v for k, v in first_log(mongo_db).items() if k != "_id"}
        logs.insert_one({**stray, "external_id": "crm:acme:audit:99999999"})
        edited = first_log(mongo_db, action="updated")
        logs.update_one({"_id": edited["_id"]}, {"$set": {"attributes.0.to": "edited"}})
        association = first_log(mongo_db, **{"metadata.linked_entity_id": {"$exists": True}})
        twin = {k: v for k, v in association.items() if k not in ("_id", "external_id")}
        logs.insert_one({**twin, "source_tag": "live_feed", "timestamp": association["timestamp"]})
        report = world.verify()
        assert [f.audit_id for f in report.findings["missing"].items] == [audit_id_of(gone)]
        assert [f.external_id for f in report.findings["stray"].items] == ["crm:acme:audit:99999999"]
        assert [(f.audit_id, f.detail) for f in report.findings["drifted"].items] == [
            (audit_id_of(edited), "attributes")
        ]
        assert [f.external_id for f in report.findings["overlap"].items] == [association["external_id"]]
        assert report.job is not None
        assert [(m.figure, m.job - m.found) for m in report.job.mismatches] == [("migrated", 1)]

    def test_tampered_job_counts_are_found(
        self, crm_dsn: str, mongo_db: Database[Any], sessions: list[ReadOnlySession]
    ) -> None:
        """A job document whose counts were changed disagrees with what verify finds."""
        world = migrated(crm_dsn, mongo_db, sessions)
        job = job_of(world)
        world.jobs.save(attrs.evolve(job, tally=job.tally + Tally(processed=2)))
        report = world.verify()
        assert report.job is not None
        # Its outcomes no longer add up to its processed either.
        assert [(m.figure, m.job - m.found) for m in report.job.mismatches] == [
            ("outcomes", -2),
            ("processed", 2),
        ]
        assert not report.clean

    @pytest.mark.wire_duplicate  # a whole-account run: see support/wire_sample.py
    def test_a_log_written_past_its_contacts_watermark_is_found(
        self, crm_dsn: str, mongo_db: Database[Any], sessions: list[ReadOnlySession]
    ) -> None:
        """A migrated log moved after its contact's sync is past the watermark (and drifted)."""
        world = migrated(crm_dsn, mongo_db, sessions)
        doc = first_log(mongo_db)
        later = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
        mongo_db.activity_logs.update_one({"_id": doc["_id"]}, {"$set": {"timestamp": later}})
        report = world.verify()
        assert [f.audit_id for f in report.findings["past_watermark"].items] == [audit_id_of(doc)]


class TestLateCommitAndRepair:
    @pytest.mark.wire_duplicate  # a whole-account run: see support/wire_sample.py
    def test_a_row_committed_behind_the_cursor_is_missing_and_repair_writes_it(
        self,
        scratch_database: Callable[..., str],
        mongo_db: Database[Any],
        sessions: list[ReadOnlySession],
    ) -> None:
        """The late row is missing; repair writes it and a deleted log, counts the late one; then nothing."""
        dsn = scratch_database(corpus=True)
        clean = World("acme")
        clean.trigger(date_range_start=RECENT)
        clean.run(settings=SETTINGS)
        held_id = int(clean.logs.logs[5].metadata["crm_audit_id"])  # type: ignore[arg-type]
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE acme.held AS SELECT * FROM acme.audits WHERE id = %s", (held_id,))
        world = migrated(
            dsn,
            mongo_db,
            sessions,
            before_run=lambda: _sql(dsn, "DELETE FROM acme.audits WHERE id = %s", held_id),
        )
        _sql(dsn, "INSERT INTO acme.audits SELECT * FROM acme.held")  # commits behind the cursor
        gone = first_log(mongo_db)
        mongo_db.activity_logs.delete_one({"_id": gone["_id"]})
        drifted = first_log(mongo_db, action="updated")
        category = drifted["category"]
        mongo_db.activity_logs.update_one({"_id": drifted["_id"]}, {"$set": {"category": "other"}})
        before = job_of(world).tally

        found = world.verify()
        assert sorted(f.audit_id or 0 for f in found.findings["missing"].items) == sorted(
            [held_id, audit_id_of(gone)]
        )
        assert found.job is not None
        assert {m.figure for m in found.job.mismatches} == {"processed", "migrated"}

        repaired = world.verify(repair=True)
        assert (repaired.repaired, repaired.repaired_in_job, repaired.restored) == (2, 1, 1)
        assert repaired.outstanding == {}
        assert repaired.job is not None
        assert repaired.job.consistent
        after = job_of(world)
        assert (after.tally.processed, after.tally.migrated) == (before.processed + 1, before.migrated + 1)
        assert after.lease_owner is None
        assert mongo_db.activity_logs.find_one({"_id": drifted["_id"]})["category"] == category  # type: ignore[index]

        count = mongo_db.activity_logs.count_documents({})
        again = world.verify(repair=True)
        assert (again.repaired, again.repaired_in_job, again.restored) == (0, 0, 0)
        assert mongo_db.activity_logs.count_documents({}) == count
        assert job_of(world).tally == after.tally

    def test_rows_committed_late_with_ids_at_or_below_zero_are_missing(
        self,
        scratch_database: Callable[..., str],
        mongo_db: Database[Any],
        sessions: list[ReadOnlySession],
    ) -> None:
        """Ids 0, -7 and the least bigint committed after a run whose first id is positive: all missing.

        Verify walks from before every id, not from 0: ids <= 0 are rows like any other.
        """
        dsn = scratch_database(corpus=True)
        world = migrated(dsn, mongo_db, sessions)
        job = job_of(world)
        assert job.first_audit_id > 0
        copied = audit_id_of(first_log(mongo_db))  # a migrated row: its copies are logs to write
        late = [0, -7, -(2**63)]
        for audit_id in late:
            _sql(
                dsn,
                "INSERT INTO acme.audits SELECT %s::bigint AS id, auditable_id, auditable_type,"
                " associated_id, associated_type, user_id, user_type, username, action, audited_changes,"
                " version, comment, remote_address, request_uuid, created_at FROM acme.audits WHERE id = %s",
                audit_id,
                copied,
            )
        report = world.verify()
        assert sorted(f.audit_id or 0 for f in report.findings["missing"].items) == sorted(late)
        assert not report.clean
        assert report.audits == job.tally.processed + len(late)


def _sql(dsn: str, statement: str, *params: object) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(statement, params)  # type: ignore[arg-type]
