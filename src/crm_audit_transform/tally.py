"""Counts of outcomes per kind and reason, summed over a page, a batch or a whole run."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from attrs import field, frozen

from .domain import Failed, Migrated, Outcome, Skipped


def _frozen_counts(value: Mapping[str, int]) -> Mapping[str, int]:
    if type(value) is not dict and not isinstance(value, Mapping):
        raise TypeError(f"counts must be a mapping of reason to count, got {type(value).__name__}")
    if not value:  # most steps of a run count no skip or no failure: no sort to make
        return {}
    return dict(sorted((k, v) for k, v in value.items() if v))


@frozen
class Tally:
    """Immutable counts; ``+`` sums two tallies, ``-`` takes one from another.

    ``fallthrough`` counts OQ-12 status fallthroughs; ``actors_degraded`` the migrated rows whose
    actor became ``[Deleted CRM User]`` only because USMAN could not answer (the plan's
    degradation): they are migrated, yet their actor is not what a healthy USMAN would give.
    """

    processed: int = 0
    migrated: int = 0
    skipped: Mapping[str, int] = field(factory=dict, converter=_frozen_counts)
    failed: Mapping[str, int] = field(factory=dict, converter=_frozen_counts)
    fallthrough: int = 0
    actors_degraded: int = 0

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    @property
    def failed_total(self) -> int:
        return sum(self.failed.values())

    @property
    def failure_rate(self) -> float:
        return self.failed_total / self.processed if self.processed else 0.0

    @property
    def degraded_rate(self) -> float:
        return self.actors_degraded / self.processed if self.processed else 0.0

    @property
    def accuracy_rate(self) -> float:
        """Share of processed rows with a deliberate outcome and, if migrated, a true actor (0–1)."""
        if not self.processed:
            return 1.0
        return (self.processed - self.failed_total - self.actors_degraded) / self.processed

    def __add__(self, other: Tally) -> Tally:
        # By position (a run adds one per batch, and keywords cost); the fields in order.
        return Tally(
            self.processed + other.processed,
            self.migrated + other.migrated,
            _merge(self.skipped, other.skipped),
            _merge(self.failed, other.failed),
            self.fallthrough + other.fallthrough,
            self.actors_degraded + other.actors_degraded,
        )

    def __sub__(self, other: Tally) -> Tally:
        """What was counted since ``other`` (an earlier tally of the same job)."""
        return Tally(
            processed=self.processed - other.processed,
            migrated=self.migrated - other.migrated,
            skipped=_merge(self.skipped, {k: -v for k, v in other.skipped.items()}),
            failed=_merge(self.failed, {k: -v for k, v in other.failed.items()}),
            fallthrough=self.fallthrough - other.fallthrough,
            actors_degraded=self.actors_degraded - other.actors_degraded,
        )

    @classmethod
    def of(cls, outcomes: Iterable[Outcome], fallthrough: int = 0, actors_degraded: int = 0) -> Tally:
        # One pass (outcomes may be an iterator); Counter counts the reasons at C speed.
        processed = migrated = 0
        skipped: list[str] = []
        failed: list[str] = []
        for outcome in outcomes:
            processed += 1
            if isinstance(outcome, Migrated):
                migrated += 1
            elif isinstance(outcome, Skipped):
                skipped.append(outcome.reason)
            elif isinstance(outcome, Failed):
                failed.append(outcome.reason)
        return cls(
            processed,
            migrated,
            Counter(skipped) if skipped else {},
            Counter(failed) if failed else {},
            fallthrough,
            actors_degraded,
        )


def _merge(a: Mapping[str, int], b: Mapping[str, int]) -> Mapping[str, int]:
    # Counter.update adds (negative counts too, for ``-``); zero counts are dropped by the converter,
    # which also copies a side given back alone when the other has no count.
    if not b:
        return a
    if not a:
        return b
    merged = Counter(a)
    merged.update(b)
    return merged
