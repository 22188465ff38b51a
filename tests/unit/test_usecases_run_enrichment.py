"""The run loop enriches the association logs it migrates, and counts that apart from the outcomes."""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import pytest

from crm_audit_transform import reasons
from crm_audit_transform.domain import ActivityLog, WriteResult
from crm_audit_transform.enrichment import ASSOCIATION_ACTIONS, DELETED_REFERENCE
from crm_audit_transform.enrichment_tally import EnrichmentTally
from crm_audit_transform.jobs import COMPLETED
from crm_audit_transform.testing import InMemoryEntityDirectory
from crm_audit_transform.testing.timeline import InMemoryTimelineStore
from crm_audit_transform.usecases import RunPorts, RunSettings, migration_status
from support.corpus_account import World, audit_rows

NO_HALT = RunSettings(halt_threshold=1.0)
ROWS = [r for r in audit_rows("acme") if r.id <= 200]


class FailingWrites:
    """The timeline, except that the write of ``failing`` external ids fails (nothing is stored)."""

    def __init__(self, inner: InMemoryTimelineStore, failing: set[str]) -> None:
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
        """logs = patched + complete + skipped, one per association log the run stored."""
        world = ran(World(rows=ROWS, enrich=True))
        job = world.jobs.latest(world.company)
        assert job is not None
        counts = job.enrichment
        association = sum(1 for log in world.logs.logs if log.action in ASSOCIATION_ACTIONS)
        assert counts.logs == association
        assert counts.logs == counts.patched + counts.complete + counts.skipped_total
        assert counts.keys_set >= counts.patched > 0

    def test_status_shows_the_enrichment_counts(self) -> None:
        """Ops see what enrichment did in status, beside (not inside) the record counts."""
        world = ran(World(rows=ROWS, enrich=True))
        doc = migration_status(world.company, world.jobs).as_dict()
        job = world.jobs.latest(world.company)
        assert job is not None
        assert doc["enrichment"] == job.enrichment.as_dict()
        assert doc["enrichment"]["patched"] == job.enrichment.patched > 0
        assert doc["records_processed"] == job.tally.processed

    def test_a_rerun_of_a_reset_job_patches_nothing(self) -> None:
        """Replaying every batch over an enriched timeline finds each log complete: zero keys set."""
        world = ran(World(rows=ROWS, enrich=True))
        before = repr(world.logs.logs)
        first = world.jobs.latest(world.company)
        assert first is not None
        replay = World(rows=ROWS, enrich=True)
        replay.logs, replay.enrichment = world.logs, world.enrichment
        ran(replay)
        again = replay.jobs.latest(replay.company)
        assert again is not None
        assert again.enrichment.patched == again.enrichment.keys_set == 0
        assert again.enrichment.complete == first.enrichment.enriched
        assert repr(world.logs.logs) == before

    def test_without_enrichment_ports_nothing_is_enriched(self) -> None:
        """Callers that wire no enrichment (the dry run, older embedders) get exactly the plain run."""
        world = ran(World(rows=ROWS))
        assert not any("linked_entity_name" in log.metadata for log in world.logs.logs)
        assert world.entities.calls == []

    def test_half_the_enrichment_ports_is_refused(self) -> None:
        """An entity directory without an enrichment store (or the reverse) is a wiring mistake."""
        world = World(rows=ROWS)
        with pytest.raises(ValueError, match="both ports"):
            RunPorts(
                world.source,
                world.users,
                world.sso,
                world.contacts,
                world.logs,
                world.jobs,
                world.clock,
                entities=InMemoryEntityDirectory(),
                indexes=world.indexes,
            )

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
