"""Enrichment values: what a log is matched by, what a patch may set, and what a plan holds.

A plan is data, not code: a tuple of (target, keys to set) pairs that can be printed for review
(``describe`` / ``to_json``), stored, and applied later by any ``EnrichmentStore``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Mapping
from typing import Any, Final

from attrs import field, frozen

from ..enrichment_tally import EnrichmentTally
from ..numerals import as_id
from ..timestamps import as_utc
from ..values import Value

ASSOCIATION_ACTIONS: Final = frozenset({"link", "unlink", "won", "resolved", "completed"})
"""CDP actions of association logs; no other log is ever read for, or touched by, enrichment."""

ENRICHMENT_KEYS: Final = ("crm_person_id", "linked_entity_type", "linked_entity_id", "linked_entity_name")
"""The only ``metadata`` keys a patch may set; everything else in a document is out of reach."""

DELETED_REFERENCE: Final = "[Deleted reference]"
"""``linked_entity_name`` of a referent that the CRM no longer has (deleted, or its row gone)."""

"""Skip reason: the log and its target disagree on a referent id, so neither is trusted."""

DEFAULT_MATCH_WINDOW: Final = dt.timedelta(seconds=5)
"""How far a live-feed log's timestamp may lie from the event's (docs/enrichment.md: why 5 s)."""


def _utc(value: dt.datetime) -> dt.datetime:
    return as_utc(value)


def _enrichment_keys_only(value: Mapping[str, Value]) -> Mapping[str, Value]:
    return {key: value[key] for key in ENRICHMENT_KEYS if key in value}


@frozen
class StoredLog:
    """An activity-log document as enrichment sees it: its identity and the enrichment keys it has.

    ``doc_id`` is the store's own document id, as text. ``metadata`` holds only the enrichment keys
    the document carries (present with any value, ``None`` included). ``entity_id`` is the linked
    entity id found where the live feed keeps it (the OQ-13 path), ``None`` when there is none.
    """

    doc_id: str
    company_sso_id: str
    customer_id: str
    category: str
    action: str
    timestamp: dt.datetime = field(converter=_utc)
    external_id: str = ""
    metadata: Mapping[str, Value] = field(factory=dict, converter=_enrichment_keys_only)
    entity_id: Value = None

    @property
    def is_live_feed(self) -> bool:
        return not self.external_id

    @property
    def referent_id(self) -> int | None:
        """The linked entity id: where the live feed keeps it, else ``metadata.linked_entity_id``."""
        found = as_referent_id(self.entity_id)
        return found if found is not None else as_referent_id(self.metadata.get("linked_entity_id"))


@frozen
class MatchKey:
    """What identifies a live-feed association log that carries no ``external_id``.

    Two logs share a key when they belong to the same company and customer, have the same category
    and action, name the same linked entity, and lie within the match window of ``timestamp``.
    """

    company_sso_id: str
    customer_id: str
    category: str
    action: str
    linked_entity_id: int
    timestamp: dt.datetime = field(converter=_utc)

    def matches(self, log: StoredLog, window: dt.timedelta) -> bool:
        """True when ``log`` is a live-feed log this key points at."""
        return (
            log.is_live_feed
            and log.company_sso_id == self.company_sso_id
            and log.customer_id == self.customer_id
            and log.category == self.category
            and log.action == self.action
            and log.referent_id == self.linked_entity_id
            and abs(log.timestamp - self.timestamp) <= window
        )


def as_referent_id(value: Value) -> int | None:
    """A CRM id as an int (live feeds may write ids as text): ``numerals.as_id``."""
    return as_id(value)


@frozen
class Target:
    """The one document a patch may touch, pinned by everything the plan saw of it.

    ``external_id`` is empty for a live-feed log: the store then also requires the document to have
    no ``external_id`` at all, so a patch can never land on a log of another shape.
    """

    doc_id: str
    company_sso_id: str
    customer_id: str
    category: str
    action: str = field()
    external_id: str = ""

    @action.validator
    def _association_only(self, _: object, value: str) -> None:
        if value not in ASSOCIATION_ACTIONS:
            raise ValueError(f"only association logs are enriched, not {value!r} ones")

    @classmethod
    def of(cls, log: StoredLog) -> Target:
        return cls(log.doc_id, log.company_sso_id, log.customer_id, log.category, log.action, log.external_id)


def _patch_keys(value: Mapping[str, Value]) -> Mapping[str, Value]:
    extra = sorted(set(value) - set(ENRICHMENT_KEYS))
    if extra:
        raise ValueError(f"a patch sets enrichment keys only, not {extra}")
    if not value:
        raise ValueError("a patch sets at least one key")
    return {key: value[key] for key in ENRICHMENT_KEYS if key in value}


@frozen
class Patch:
    """Set these missing ``metadata`` keys on that target, each only while it is still absent."""

    target: Target
    sets: Mapping[str, Value] = field(converter=_patch_keys)
    source: str = ""


@frozen
class EnrichmentSkip:
    """A log enrichment deliberately left alone, with the reason (``enrich_ambiguous`` …)."""

    source: str
    reason: str
    detail: str = ""


@frozen
class EnrichmentPlan:
    """Patches to apply and the logs skipped, with counts of logs already complete or not eligible."""

    patches: tuple[Patch, ...] = ()
    skipped: tuple[EnrichmentSkip, ...] = ()
    complete: int = 0
    ignored: int = 0

    @property
    def keys_planned(self) -> int:
        return sum(len(patch.sets) for patch in self.patches)

    @property
    def skip_counts(self) -> Mapping[str, int]:
        return dict(sorted(Counter(skip.reason for skip in self.skipped).items()))

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready view for review: every target with its filter fields and the keys to set."""
        return {
            "patches": [
                {
                    "target": {
                        "doc_id": patch.target.doc_id,
                        "company_sso_id": patch.target.company_sso_id,
                        "customer_id": patch.target.customer_id,
                        "category": patch.target.category,
                        "action": patch.target.action,
                        "external_id": patch.target.external_id or None,
                    },
                    "set": {f"metadata.{key}": value for key, value in patch.sets.items()},
                    "source": patch.source,
                }
                for patch in self.patches
            ],
            "skipped": [
                {"source": skip.source, "reason": skip.reason, "detail": skip.detail} for skip in self.skipped
            ],
            "complete": self.complete,
            "ignored": self.ignored,
        }

    def describe(self) -> str:
        """The plan as text, one line per patched key and per skip, for ``--dry-run`` and logs."""
        lines = [
            f"enrichment plan: {len(self.patches)} patches ({self.keys_planned} keys), "
            f"{len(self.skipped)} skipped, {self.complete} already complete, {self.ignored} not eligible"
        ]
        for patch in self.patches:
            target = patch.target
            shape = f"external_id={target.external_id}" if target.external_id else "live-feed"
            lines.append(f"patch doc {target.doc_id} ({target.company_sso_id}, {target.action}, {shape})")
            lines.extend(
                f"  set metadata.{key} = {json.dumps(value, default=str, ensure_ascii=False)}"
                for key, value in patch.sets.items()
            )
        for skip in self.skipped:
            lines.append(f"skip {skip.source}: {skip.reason}" + (f" ({skip.detail})" if skip.detail else ""))
        return "\n".join(lines)


def tally_of(plan: EnrichmentPlan, applied: EnrichmentTally | None = None) -> EnrichmentTally:
    """The counts of a plan and, unless it was a dry run (``applied`` is None), of its application."""
    done = applied or EnrichmentTally()
    return EnrichmentTally(
        logs=len(plan.patches) + len(plan.skipped) + plan.complete,
        ignored=plan.ignored,
        complete=plan.complete,
        skipped=plan.skip_counts,
        planned_patches=len(plan.patches),
        planned_keys=plan.keys_planned,
        patched=done.patched,
        keys_set=done.keys_set,
        keys_left_alone=done.keys_left_alone,
        keys_too_large=done.keys_too_large,
        keys_refused=done.keys_refused,
    )
