"""Enrichment use cases: plan against the ports, then apply (or only show) the plan.

``enrich_existing`` walks the association logs of a company already in the CDP (ours and the
live feed's) for ``crm-audit-migrate enrich [--dry-run]``; ``enrich_migrated`` enriches a given set
of written logs. The run loop itself needs neither for its own logs: it names their linked entities
before the insert (``usecases/_entity_names.py``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable

from attrs import frozen

from ..domain import EntityRef
from ..enrichment_tally import EnrichmentTally
from ..ports import EnrichmentStore, EntityDirectory
from .model import DEFAULT_MATCH_WINDOW, EnrichmentPlan, MatchKey, StoredLog, tally_of
from .planner import (
    Source,
    customers_wanted,
    external_ids_wanted,
    match_keys_wanted,
    plan_patches,
    referents_wanted,
    resolve_targets,
)

DEFAULT_SCAN_BATCH = 500


@frozen
class EnrichPorts:
    """What enrichment reads and patches: the CRM's entities and the CDP's stored logs."""

    entities: EntityDirectory
    store: EnrichmentStore


def plan_enrichment(
    sources: Iterable[Source],
    *,
    tenant: str,
    ports: EnrichPorts,
    window: dt.timedelta = DEFAULT_MATCH_WINDOW,
) -> EnrichmentPlan:
    """Read what the planner needs (one call per port and kind) and return the plan; writes nothing."""
    entities, store = ports.entities, ports.store
    logs = tuple(sources)
    own: dict[tuple[str, str], StoredLog] = {}
    for company, ids in external_ids_wanted(logs).items():
        own.update({(company, ext): log for ext, log in store.logs_by_external_ids(company, ids).items()})
    keys = match_keys_wanted(logs, own)
    candidates: dict[MatchKey, tuple[StoredLog, ...]] = {}
    if keys:
        candidates = {key: tuple(found) for key, found in store.live_feed_candidates(keys, window).items()}
    resolution = resolve_targets(logs, own=own, candidates=candidates, window=window)
    persons: dict[tuple[str, str], int] = {}
    for company, customers in customers_wanted(resolution).items():
        people = store.crm_person_ids(company, customers)
        persons.update({(company, customer): person for customer, person in people.items()})
    refs: dict[tuple[str, int], EntityRef] = {}
    for entity_type, entity_ids in referents_wanted(resolution).items():
        found_refs = entities.entities_by_ids(tenant, entity_type, entity_ids)
        refs.update({(entity_type, entity_id): ref for entity_id, ref in found_refs.items()})
    return plan_patches(resolution, persons=persons, entities=refs)


def enrich_migrated(
    logs: Iterable[Source],
    *,
    tenant: str,
    ports: EnrichPorts,
    window: dt.timedelta = DEFAULT_MATCH_WINDOW,
) -> EnrichmentTally:
    """Enrich the association logs among ``logs`` (logs already written) and report the counts."""
    plan = plan_enrichment(logs, tenant=tenant, ports=ports, window=window)
    if not plan.patches:
        return tally_of(plan)
    return tally_of(plan, ports.store.apply(plan))


def enrich_existing(
    company_sso_id: str,
    tenant: str,
    *,
    ports: EnrichPorts,
    window: dt.timedelta = DEFAULT_MATCH_WINDOW,
    batch_size: int = DEFAULT_SCAN_BATCH,
    dry_run: bool = False,
    on_plan: Callable[[EnrichmentPlan], None] | None = None,
) -> EnrichmentTally:
    """Enrich the company's stored association logs that lack a key, page by page.

    Each page is planned, handed to ``on_plan`` (the CLI prints it), then applied unless
    ``dry_run``. Pages advance by document id, so logs that stay incomplete (no candidate,
    ambiguous) are visited once per call, never in a loop.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    report = EnrichmentTally()
    after: str | None = None
    while True:
        page = ports.store.association_logs_lacking(company_sso_id, after=after, limit=batch_size)
        if not page:
            return report
        plan = plan_enrichment(page, tenant=tenant, ports=ports, window=window)
        if on_plan is not None:
            on_plan(plan)
        applied = None if dry_run or not plan.patches else ports.store.apply(plan)
        report += tally_of(plan, applied)
        if len(page) < batch_size:
            return report
        after = page[-1].doc_id
