"""The run loop's entity names: our association logs name their linked entity before they are written.

After a page is transformed, the linked entities its association logs point at are asked of the
CRM in one ``EntityDirectory`` call per entity type (as the page's users are asked in one call), and
each log gets ``metadata.linked_entity_name`` before its insert. No log is read back and patched
after it is written. The additive enricher (``enrichment.enrich_existing``, the ``enrich`` command)
stays for the logs already in the CDP: the live feed's, and ours written before names were set here.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from .. import reasons
from ..domain import ActivityLog, EncodedLog, EntityRef, Migrated, Outcome, WriteResult
from ..enrichment import ASSOCIATION_ACTIONS
from ..enrichment.planner import linked_entity_name
from ..enrichment_tally import EnrichmentTally
from ..packed import PackedOutcomes, association_counts
from ..ports import EntityDirectory

NAME_KEY = "linked_entity_name"


def name_linked_entities(
    outcomes: Sequence[Outcome], *, tenant: str, entities: EntityDirectory
) -> tuple[Outcome, ...]:
    """``outcomes`` with every association log's ``linked_entity_name`` set (when the CRM gives one).

    One ``entities_by_ids`` call per entity type named by the page's association logs, none when
    there are none. A referent the CRM does not return, or returns deleted, is named
    ``[Deleted reference]``; an existing one without a name leaves the key out. Infrastructure
    errors of the port propagate (the run stops before writing the page, resumable).
    """
    wanted: dict[str, set[int]] = {}
    for outcome in outcomes:
        if isinstance(outcome, Migrated):
            referent = _referent(outcome.log)
            if referent is not None:
                wanted.setdefault(referent[0], set()).add(referent[1])
    if not wanted:
        return tuple(outcomes)
    found: dict[tuple[str, int], EntityRef] = {}
    for entity_type, ids in sorted(wanted.items()):
        answered = entities.entities_by_ids(tenant, entity_type, sorted(ids))
        found.update({(entity_type, entity_id): ref for entity_id, ref in answered.items()})
    return tuple(_named(outcome, found) for outcome in outcomes)


def names_tally(logs: Sequence[ActivityLog | EncodedLog], results: Sequence[WriteResult]) -> EnrichmentTally:
    """The step's association logs now stored, all ``complete`` (named before the write), and the
    names they carry as ``keys_set``: inserted now, or found stored (``duplicate_external_id``).

    A duplicate is counted as the log the step built, never read back (no query-before-insert): a
    replay's duplicate is the log a dead runner built from the same row, the same way (the
    ``external_id`` is deterministic, the name the CRM's), and was never counted, its step's
    progress write having died with it. So a crash and a resume end on a clean run's ``keys_set``,
    as on its ``logs``. A duplicate another writer of the account stored first (``migrate``, a
    ``verify --repair`` racing the run) counts the same way, as the name this run gives it: the
    stored log is not read, and the ``enrich`` command sets a name it lacks (missing keys only).
    """
    stored = {
        r.external_id for r in results if r.status == "inserted" or r.reason == reasons.DUPLICATE_EXTERNAL_ID
    }
    association = [log for log in logs if log.external_id in stored and log.action in ASSOCIATION_ACTIONS]
    keys_set = sum(1 for log in association if _is_named(log))
    return EnrichmentTally(logs=len(association), complete=len(association), keys_set=keys_set)


def packed_names_tally(outcomes: PackedOutcomes) -> EnrichmentTally:
    """``names_tally`` of a packed step whose every log was inserted (``packed``), on its arrays."""
    logs, named = association_counts(outcomes, ASSOCIATION_ACTIONS)
    return EnrichmentTally(logs=logs, complete=logs, keys_set=named)


def may_be_named(log: ActivityLog) -> bool:
    """Whether ``name_linked_entities`` could give ``log`` a ``linked_entity_name``."""
    return _referent(log) is not None


def _referent(log: ActivityLog | EncodedLog) -> tuple[str, int] | None:
    # An encoded log is never one to name: the pipeline leaves those as logs (``encode_ahead``).
    if isinstance(log, EncodedLog) or log.action not in ASSOCIATION_ACTIONS or NAME_KEY in log.metadata:
        return None
    entity_type = log.metadata.get("linked_entity_type")
    entity_id = log.metadata.get("linked_entity_id")
    if isinstance(entity_type, str) and type(entity_id) is int:
        return entity_type, entity_id
    return None


def _is_named(log: ActivityLog | EncodedLog) -> bool:
    return log.named if isinstance(log, EncodedLog) else NAME_KEY in log.metadata


def _named(outcome: Outcome, found: dict[tuple[str, int], EntityRef]) -> Outcome:
    if not isinstance(outcome, Migrated):
        return outcome
    log = outcome.log
    referent = _referent(log)
    name = linked_entity_name(found.get(referent)) if referent is not None else None
    if name is None or isinstance(log, EncodedLog):
        return outcome
    log = attrs.evolve(log, metadata={**log.metadata, NAME_KEY: name})
    return Migrated(outcome.audit_id, log)
