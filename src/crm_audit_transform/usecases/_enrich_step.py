"""The run loop's enrichment step: enrich what a step just stored, count it apart from outcomes.

It runs after a step's write and before its progress write. Only logs the write reports as stored
(inserted now, or a replay's duplicates of our own) are sources, so each has a log of our own to
patch and enrichment never goes looking for a live-feed log on behalf of a failed write. Patches set
only keys still absent, so a replayed step patches nothing twice.
"""

from __future__ import annotations

from collections.abc import Sequence

from .. import reasons
from ..domain import ActivityLog, WriteResult
from ..enrichment import EnrichmentReport, EnrichmentStore, EnrichPorts, enrich_migrated, is_association
from ..enrichment_tally import EnrichmentTally
from ..ports import EntityDirectory


class EnrichStep:
    """Enrich the association logs among a step's written logs; return what it did as counts."""

    __slots__ = ("_entities", "_store")

    def __init__(self, entities: EntityDirectory, store: EnrichmentStore) -> None:
        self._entities = entities
        self._store = store

    def __call__(
        self, tenant: str, logs: Sequence[ActivityLog], results: Sequence[WriteResult]
    ) -> EnrichmentTally:
        stored = _stored_ids(results)
        sources = [log for log in logs if log.external_id in stored and is_association(log)]
        if not sources:
            return EnrichmentTally()
        report = enrich_migrated(sources, tenant=tenant, ports=EnrichPorts(self._entities, self._store))
        return enrichment_tally(report)


def _stored_ids(results: Sequence[WriteResult]) -> frozenset[str]:
    return frozenset(
        r.external_id
        for r in results
        if r.external_id and (r.status == "inserted" or r.reason == reasons.DUPLICATE_EXTERNAL_ID)
    )


def enrichment_tally(report: EnrichmentReport) -> EnrichmentTally:
    """A run's counts of an enrichment pass: every eligible log patched, complete or skipped."""
    # A planned patch that set nothing found every key already written by another writer: complete.
    return EnrichmentTally(
        logs=report.eligible,
        patched=report.patched_docs,
        complete=report.complete + report.planned_patches - report.patched_docs,
        keys_set=report.keys_set,
        skipped=report.skipped,
    )
