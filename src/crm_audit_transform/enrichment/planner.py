"""The enrichment planner: pure functions from logs and lookups to an ``EnrichmentPlan``.

Planning runs in two pure steps around the lookups a caller makes (see ``enrich.py``):

    sources ──external_ids_wanted──▶ store: our logs by external_id
            ──match_keys_wanted────▶ store: live-feed candidates by match key
            ──resolve_targets──────▶ Resolution (one target per source, or a counted skip)
            ──referents_wanted / customers_wanted──▶ CRM entities, contacts' crm_person_id
            ──plan_patches─────────▶ EnrichmentPlan (only the keys each target is missing)

A source is an association event we know the referent of: a log this library built
(``ActivityLog``) or one read back from the store (``StoredLog``). Its target is our own log
with the same ``external_id`` when the store has it, else the one live-feed log its match key
finds. Zero candidates, several, or two sources claiming one log: a counted skip, never a guess.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import TypeAlias

from attrs import frozen

from .. import reasons
from ..domain import ActivityLog, EntityRef
from ..values import Value
from .model import (
    ASSOCIATION_ACTIONS,
    DEFAULT_MATCH_WINDOW,
    DELETED_REFERENCE,
    EnrichmentPlan,
    EnrichmentSkip,
    MatchKey,
    Patch,
    StoredLog,
    Target,
    as_referent_id,
)

Source: TypeAlias = ActivityLog | StoredLog
"""An association event whose referent we know: a log we built, or one read back from the store."""

_IDENTITY_KEYS = ("crm_person_id", "linked_entity_type", "linked_entity_id")


def is_association(log: Source) -> bool:
    """Only link / unlink / won / resolved / completed logs are ever enriched."""
    return log.action in ASSOCIATION_ACTIONS


def source_ref(log: Source) -> str:
    """How reports name a source: its external_id, else its document id, else its key fields."""
    if log.external_id:
        return log.external_id
    if isinstance(log, StoredLog):
        return f"doc:{log.doc_id}"
    when = log.timestamp.isoformat()
    return f"log:{log.company_sso_id}/{log.customer_id}/{log.category}/{log.action}/{when}"


def _entity_id(log: Source) -> int | None:
    if isinstance(log, StoredLog):
        return log.referent_id
    return as_referent_id(log.metadata.get("linked_entity_id"))


def match_key_of(log: Source) -> MatchKey | None:
    """The live-feed match key of a source, or None when it names no linked entity to match on."""
    entity_id = _entity_id(log)
    if entity_id is None:
        return None
    return MatchKey(log.company_sso_id, log.customer_id, log.category, log.action, entity_id, log.timestamp)


def _unique_sources(sources: Iterable[Source]) -> list[Source]:
    seen: set[str] = set()
    unique = []
    for log in sources:
        ref = source_ref(log)
        if ref not in seen:
            seen.add(ref)
            unique.append(log)
    return unique


def external_ids_wanted(sources: Iterable[Source]) -> Mapping[str, frozenset[str]]:
    """Per company, the external_ids of association sources: their own logs are looked up first."""
    wanted: dict[str, set[str]] = {}
    for log in sources:
        if is_association(log) and log.external_id:
            wanted.setdefault(log.company_sso_id, set()).add(log.external_id)
    return {company: frozenset(ids) for company, ids in sorted(wanted.items())}


OwnLogs: TypeAlias = Mapping[tuple[str, str], StoredLog]
"""Our stored logs by ``(company_sso_id, external_id)``."""


def match_keys_wanted(sources: Iterable[Source], own: OwnLogs) -> frozenset[MatchKey]:
    """Match keys of the association sources whose own log the store does not have."""
    keys = set()
    for log in sources:
        if not is_association(log) or (log.company_sso_id, log.external_id) in own:
            continue
        key = match_key_of(log)
        if key is not None:
            keys.add(key)
    return frozenset(keys)


@frozen
class Referent:
    """What a target's referent is, merged from the source and the target (they never disagree)."""

    crm_person_id: int | None
    entity_type: str | None
    entity_id: int | None


@frozen
class Claim:
    """A source that found exactly one target, and the referent it brings."""

    source: str
    target: StoredLog
    referent: Referent


@frozen
class Resolution:
    """Every eligible source either claims one target or is skipped; ``ignored`` were not eligible."""

    claims: tuple[Claim, ...] = ()
    skipped: tuple[EnrichmentSkip, ...] = ()
    ignored: int = 0


def _same(a: Value, b: Value) -> bool:
    left, right = as_referent_id(a), as_referent_id(b)
    if left is not None or right is not None:
        return left == right
    return a == b


def _merge(source: Source, target: StoredLog) -> Referent | str:
    """The referent both logs describe, or the name of the first key they disagree on."""
    for key in _IDENTITY_KEYS:
        mine, theirs = source.metadata.get(key), target.metadata.get(key)
        if mine is not None and theirs is not None and not _same(mine, theirs):
            return key
    if _entity_id(source) is not None and _entity_id(target) not in (None, _entity_id(source)):
        return "linked_entity_id"
    person = as_referent_id(target.metadata.get("crm_person_id"))
    if person is None:
        person = as_referent_id(source.metadata.get("crm_person_id"))
    entity_type = target.metadata.get("linked_entity_type") or source.metadata.get("linked_entity_type")
    entity_id = _entity_id(target)
    if entity_id is None:
        entity_id = _entity_id(source)
    return Referent(person, entity_type if isinstance(entity_type, str) else None, entity_id)


def _find_target(
    log: Source, own: OwnLogs, candidates: Mapping[MatchKey, Sequence[StoredLog]], window: dt.timedelta
) -> StoredLog | EnrichmentSkip:
    ref = source_ref(log)
    mine = own.get((log.company_sso_id, log.external_id)) if log.external_id else None
    if mine is not None:
        return mine
    key = match_key_of(log)
    if key is None:
        detail = "no linked entity id to match a live-feed log on"
        return EnrichmentSkip(ref, reasons.ENRICH_NO_CANDIDATE, detail)
    # Re-check the store's answer: a lax query must never widen what the key means.
    found = {c.doc_id: c for c in candidates.get(key, ()) if key.matches(c, window)}
    if not found:
        return EnrichmentSkip(ref, reasons.ENRICH_NO_CANDIDATE, "no live-feed log matches the key")
    if len(found) > 1:
        ids = ", ".join(sorted(found))
        return EnrichmentSkip(ref, reasons.ENRICH_AMBIGUOUS, f"{len(found)} live-feed logs match: {ids}")
    return next(iter(found.values()))


def resolve_targets(
    sources: Iterable[Source],
    *,
    own: OwnLogs,
    candidates: Mapping[MatchKey, Sequence[StoredLog]],
    window: dt.timedelta = DEFAULT_MATCH_WINDOW,
) -> Resolution:
    """Give each association source its one target, or a skip; two sources on one log both skip."""
    ignored = 0
    skipped: list[EnrichmentSkip] = []
    by_target: dict[tuple[str, str], list[Claim]] = {}
    for log in _unique_sources(sources):
        if not is_association(log):
            ignored += 1
            continue
        found = _find_target(log, own, candidates, window)
        if isinstance(found, EnrichmentSkip):
            skipped.append(found)
            continue
        if not is_association(found):
            ignored += 1
            continue
        merged = _merge(log, found)
        if isinstance(merged, str):
            detail = f"{merged} differs from the target's"
            skipped.append(EnrichmentSkip(source_ref(log), reasons.ENRICH_CONFLICT, detail))
            continue
        claim = Claim(source_ref(log), found, merged)
        by_target.setdefault((found.company_sso_id, found.doc_id), []).append(claim)
    claims = []
    for (_, doc_id), group in by_target.items():
        if len(group) == 1:
            claims.append(group[0])
            continue
        detail = f"{len(group)} logs match the same live-feed log {doc_id}"
        skipped.extend(EnrichmentSkip(c.source, reasons.ENRICH_AMBIGUOUS, detail) for c in group)
    return Resolution(tuple(claims), tuple(skipped), ignored)


def referents_wanted(resolution: Resolution) -> Mapping[str, frozenset[int]]:
    """Per entity type, the linked entity ids whose name (or absence) the CRM must tell."""
    wanted: dict[str, set[int]] = {}
    for claim in resolution.claims:
        ref = claim.referent
        if ref.entity_type is not None and ref.entity_id is not None:
            wanted.setdefault(ref.entity_type, set()).add(ref.entity_id)
    return {entity_type: frozenset(ids) for entity_type, ids in sorted(wanted.items())}


def customers_wanted(resolution: Resolution) -> Mapping[str, frozenset[str]]:
    """Per company, customers whose contact must supply ``crm_person_id`` (no log carries it)."""
    wanted: dict[str, set[str]] = {}
    for claim in resolution.claims:
        if claim.referent.crm_person_id is None:
            wanted.setdefault(claim.target.company_sso_id, set()).add(claim.target.customer_id)
    return {company: frozenset(ids) for company, ids in sorted(wanted.items())}


def linked_entity_name(ref: EntityRef | None) -> str | None:
    """The ``linked_entity_name`` a referent gets: its CRM name, ``[Deleted reference]`` when the CRM
    no longer has it (``None`` or ``exists=False``), ``None`` (leave the key out) for a nameless one."""
    if ref is None or not ref.exists:
        return DELETED_REFERENCE
    # An existing entity without a name: nothing true to write, so leave the key missing.
    return ref.name or None


def plan_patches(
    resolution: Resolution,
    *,
    persons: Mapping[tuple[str, str], int],
    entities: Mapping[tuple[str, int], EntityRef],
) -> EnrichmentPlan:
    """For every claim, the enrichment keys its target lacks; nothing the target has is touched.

    ``persons`` maps ``(company_sso_id, customer_id)`` to the contact's CRM person id; ``entities``
    maps ``(entity_type, id)`` to what the CRM said; a referent it did not return is deleted.
    """
    patches: list[Patch] = []
    complete = 0
    for claim in resolution.claims:
        target, ref = claim.target, claim.referent
        person = ref.crm_person_id
        if person is None:
            person = persons.get((target.company_sso_id, target.customer_id))
        name = None
        if ref.entity_type is not None and ref.entity_id is not None:
            name = linked_entity_name(entities.get((ref.entity_type, ref.entity_id)))
        wanted: dict[str, Value] = {
            "crm_person_id": person,
            "linked_entity_type": ref.entity_type,
            "linked_entity_id": ref.entity_id,
            "linked_entity_name": name,
        }
        missing = {k: v for k, v in wanted.items() if v is not None and k not in target.metadata}
        if missing:
            patches.append(Patch(Target.of(target), missing, claim.source))
        else:
            complete += 1
    return EnrichmentPlan(tuple(patches), resolution.skipped, complete, resolution.ignored)
