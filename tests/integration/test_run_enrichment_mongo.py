"""The run loop naming linked entities through the MongoDB adapters (mongomock, and a real server when
configured).

The account's CRM side stays in memory; the CDP side is ``MongoActivityLogStore``,
``MongoEnrichmentStore`` and ``MongoJobStore`` over one database with the migration's indexes. The
stored documents and the job's enrichment counts must equal the in-memory enriched run's.
"""

from __future__ import annotations

from typing import Any

import pytest
from pymongo.database import Database

from crm_audit_adapters.mongo import (
    MongoActivityLogStore,
    MongoJobStore,
    apply_migration,
    decode_activity_log,
)
from crm_audit_adapters.mongo.enrichment import MongoEnrichmentStore
from crm_audit_transform.enrichment.enrich import EnrichPorts, enrich_existing
from crm_audit_transform.jobs import COMPLETED
from crm_audit_transform.usecases import RunSettings
from crm_audit_transform.usecases.status import migration_status
from support.corpus_account import World, audit_rows

SETTINGS = RunSettings(page_size=40, halt_threshold=1.0)
ROWS = [r for r in audit_rows("acme") if r.id <= 160]


def mongo_world(db: Database[Any]) -> World:
    list(apply_migration(db, "up"))
    world = World(rows=ROWS, enrich=True)
    world.logs = MongoActivityLogStore.in_database(db)  # type: ignore[assignment]
    world.enrichment = MongoEnrichmentStore.in_database(db)  # type: ignore[assignment]
    world.jobs = MongoJobStore.in_database(db, clock=world.clock)  # type: ignore[assignment]
    return world


def in_memory_run() -> World:
    world = World(rows=ROWS, enrich=True)
    world.trigger()
    world.run(settings=SETTINGS)
    return world


class TestRunEnrichmentOnMongo:
    def test_stored_documents_carry_the_same_referents_as_the_in_memory_run(
        self, mongo_db: Database[Any]
    ) -> None:
        """Every migrated document's metadata, named before its insert, equals the in-memory run's."""
        world = mongo_world(mongo_db)
        world.trigger()
        job = world.run(settings=SETTINGS).job
        clean = in_memory_run()
        assert job.status == COMPLETED
        docs = mongo_db.activity_logs.find({"source_tag": "crm_migration"}, {"_id": 0})
        stored = {log.external_id: dict(log.metadata) for log in map(decode_activity_log, docs)}
        assert stored == {log.external_id: dict(log.metadata) for log in clean.logs.logs}
        assert any("linked_entity_name" in metadata for metadata in stored.values())

    def test_the_job_document_keeps_the_enrichment_counts(self, mongo_db: Database[Any]) -> None:
        """Status read back from MongoDB shows the enrichment counts the run saved."""
        world = mongo_world(mongo_db)
        world.trigger()
        world.run(settings=SETTINGS)
        clean = in_memory_run().jobs.latest(world.company)
        assert clean is not None
        status = migration_status(world.company, world.jobs)
        assert status.enrichment == clean.enrichment
        assert status.enrichment.keys_set > 0
        raw = mongo_db.crm_activity_log_migration_jobs.find_one({"company_sso_id": world.company})
        assert raw is not None
        assert raw["enrichment"]["keys_set"] == clean.enrichment.keys_set

    @pytest.mark.wire_duplicate  # a whole-account run: see support/wire_sample.py
    def test_enrich_after_the_run_patches_nothing(self, mongo_db: Database[Any]) -> None:
        """The `enrich` pass over a run's own logs finds nothing left to set."""
        world = mongo_world(mongo_db)
        world.trigger()
        world.run(settings=SETTINGS)
        store = MongoEnrichmentStore.in_database(mongo_db)
        report = enrich_existing(world.company, world.tenant, ports=EnrichPorts(world.entities, store))
        assert (report.planned_patches, report.keys_set) == (0, 0)
