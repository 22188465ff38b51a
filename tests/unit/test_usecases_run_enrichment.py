"""The run loop names the linked entity of the association logs it migrates before writing them, and
counts that apart from the outcomes."""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from crm_audit_transform import reasons
from crm_audit_transform.domain import ActivityLog, WriteResult
from crm_audit_transform.enrichment import ASSOCIATION_ACTIONS, DELETED_REFERENCE
from crm_audit_transform.enrichment_tally import EnrichmentTally
from crm_audit_transform.jobs import COMPLETED
from crm_audit_transform.testing.enrichment import InMemoryEnrichmentStore
from crm_audit_transform.usecases import RunSettings
from crm_audit_transform.usecases.run import run_job
from crm_audit_transform.usecases.status import migration_status
from support.corpus_account import World, audit_rows

NO_HALT = RunSettings(halt_threshold=1.0)
ROWS = [r for r in audit_rows("acme") if r.id <= 200]


class FailingWrites:
    """The timeline, except that the write of ``failing`` external ids fails (nothing is stored)."""

    def __init__(self, inner: InMemoryEnrichmentStore, failing: set[str]) -> None:
        self.inner = inner
        self.failing = failing

    def insert_batch(self, logs: Sequence[ActivityLog]) -> Sequence[WriteResult]:
        results = {
            r.external_id: r
            for r in self.inner.insert_batch([x for x in logs if x.external_id not in self.failing])
        }
        return tuple(
            WriteResult(x.external_id, "failed", reasons.WRITE_ERROR, "simulated")
            if x.external_id in self.failing
            else results[x.external_id]
            for x in logs
        )


def ran(world: World) -> World:
    world.trigger()
    world.run(settings=NO_HALT)
    return world


class TestRunEnrichment:
    def test_migrated_association_logs_get_their_referent_name(self) -> None:
        """Every link/unlink/won/resolved/completed log the run wrote names its linked entity."""
        world = ran(World(rows=ROWS, enrich=True))
        association = [log for log in world.logs.logs if log.action in ASSOCIATION_ACTIONS]
        assert association
        named = [log for log in association if "linked_entity_name" in log.metadata]
        assert len(named) >= len(association) - 1
        assert any(log.metadata["linked_entity_name"] == DELETED_REFERENCE for log in named)
        assert any(log.metadata["linked_entity_name"] != DELETED_REFERENCE for log in named)

    def test_other_logs_and_the_outcome_counts_are_untouched(self) -> None:
        """Enrichment changes only association logs' metadata; the Tally equals an unenriched run's."""
        plain, enriched = ran(World(rows=ROWS)), ran(World(rows=ROWS, enrich=True))
        plain_job, enriched_job = plain.jobs.latest(plain.company), enriched.jobs.latest(enriched.company)
        assert plain_job is not None
        assert enriched_job is not None
        assert (enriched_job.status, enriched_job.tally) == (COMPLETED, plain_job.tally)
        assert plain_job.enrichment == EnrichmentTally()
        for before, after in zip(plain.logs.logs, enriched.logs.logs, strict=True):
            if before.action not in ASSOCIATION_ACTIONS:
                assert repr(after) == repr(before)
                continue
            assert {k: v for k, v in after.metadata.items() if k != "linked_entity_name"} == dict(
                before.metadata
            )

    def test_the_job_counts_every_association_log_once(self) -> None:
        """Every stored association log counts once, complete at its insert; keys_set counts the names."""
        world = ran(World(rows=ROWS, enrich=True))
        job = world.jobs.latest(world.company)
        assert job is not None
        counts = job.enrichment
        association = [log for log in world.logs.logs if log.action in ASSOCIATION_ACTIONS]
        assert counts.logs == counts.complete == len(association)
        assert counts.patched == counts.skipped_total == 0
        assert counts.keys_set == sum(1 for log in association if "linked_entity_name" in log.metadata) > 0

    def test_names_are_set_before_the_insert_with_one_lookup_per_entity_type(self) -> None:
        """Each log is inserted already named, and the CRM is asked once per entity type per page."""
        inserted: list[ActivityLog] = []
        world = World(rows=ROWS, enrich=True)
        timeline = world.logs

        class Recording:
            def insert_batch(self, logs: Sequence[ActivityLog]) -> Sequence[WriteResult]:
                inserted.extend(logs)
                return timeline.insert_batch(logs)

        world.logs = Recording()  # type: ignore[assignment]
        ran(world)
        association = [log for log in inserted if log.action in ASSOCIATION_ACTIONS]
        assert association
        referents = [log for log in association if "linked_entity_id" in log.metadata]
        assert all("linked_entity_name" in log.metadata for log in referents)
        asked = [entity_type for _, entity_type, _ in world.entities.calls]
        assert sorted(asked) == sorted(set(asked))  # ROWS fit one page: one call per type
        assert set(asked) == {log.metadata["linked_entity_type"] for log in association}

    def test_status_shows_the_enrichment_counts(self) -> None:
        """Ops see what enrichment did in status, beside (not inside) the record counts."""
        world = ran(World(rows=ROWS, enrich=True))
        doc = migration_status(world.company, world.jobs).as_dict()
        job = world.jobs.latest(world.company)
        assert job is not None
        assert doc["enrichment"] == job.enrichment.as_dict()
        assert doc["enrichment"]["keys_set"] == job.enrichment.keys_set > 0
        assert doc["records_processed"] == job.tally.processed

    def test_a_rerun_of_a_reset_job_patches_nothing(self) -> None:
        """Replaying every batch over an enriched timeline changes no log and patches nothing; its
        duplicates count as the logs it built, names included (``keys_set`` read 0: a replay's
        duplicates counted none, so a job resumed after a crash ended below a clean run's)."""
        world = ran(World(rows=ROWS, enrich=True))
        before = repr(world.logs.logs)
        first = world.jobs.latest(world.company)
        assert first is not None
        replay = World(rows=ROWS, enrich=True)
        replay.logs, replay.enrichment = world.logs, world.enrichment
        ran(replay)
        again = replay.jobs.latest(replay.company)
        assert again is not None
        assert again.enrichment.patched == 0
        assert again.enrichment == first.enrichment
        assert repr(world.logs.logs) == before

    def test_without_enrichment_ports_nothing_is_enriched(self) -> None:
        """Callers that wire no enrichment (the dry run, older embedders) get exactly the plain run."""
        world = ran(World(rows=ROWS))
        assert not any("linked_entity_name" in log.metadata for log in world.logs.logs)
        assert world.entities.calls == []

    def test_naming_needs_only_the_entity_directory(self) -> None:
        """A run given the entity directory and no enrichment store names its logs all the same."""
        world = World(rows=ROWS)
        world.trigger()
        ports = attrs.evolve(world.run_ports(), entities=world.entities)
        run_job(world.company, ports, world.transformer, owner="runner-1", settings=NO_HALT)
        assert any("linked_entity_name" in log.metadata for log in world.logs.logs)

    def test_a_log_whose_write_failed_is_never_enriched_nor_matched_to_a_live_feed_log(self) -> None:
        """Only stored logs are sources: a failed write cannot patch a live-feed look-alike instead."""
        reference = ran(World(rows=ROWS, enrich=True))
        victim = next(log for log in reference.logs.logs if log.action in ASSOCIATION_ACTIONS)
        world = World(rows=ROWS, enrich=True)
        timeline = world.enrichment
        assert timeline is not None
        look_alike = attrs.evolve(
            victim,
            external_id="",
            source_tag="",
            metadata={"linked_entity_id": victim.metadata["linked_entity_id"]},
        )
        timeline.add_native(look_alike)
        world.logs = FailingWrites(timeline, {victim.external_id})  # type: ignore[assignment]
        ran(world)
        assert timeline.logs[0] == look_alike
        job = world.jobs.latest(world.company)
        reference_job = reference.jobs.latest(reference.company)
        assert job is not None
        assert reference_job is not None
        assert job.enrichment.logs == reference_job.enrichment.logs - 1
        assert job.tally.failed == {reasons.WRITE_ERROR: 1}
