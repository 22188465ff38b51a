"""The one count type of enrichment: a plan's, an apply's, an ``enrich`` pass's and a job's.

Enrichment is not a record outcome — a row is migrated, skipped or failed whether or not its log
was enriched afterwards — so these counts stay out of ``Tally`` and its failure rate, kept on the
job beside (never inside) it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import TypedDict

from attrs import field, fields, frozen


def _counts(value: Mapping[str, int]) -> Mapping[str, int]:
    if not isinstance(value, Mapping):
        raise TypeError(f"counts must be a mapping of reason to count, got {type(value).__name__}")
    return dict(sorted((k, v) for k, v in value.items() if v))


class EnrichmentCounts(TypedDict):
    """What enrichment did to the job's association logs (not record outcomes)."""

    logs: int
    patched: int
    complete: int
    keys_set: int
    skipped: dict[str, int]


@frozen
class EnrichmentTally:
    """Counts of association-log enrichment; ``+`` sums two of them field by field.

    ``logs`` association logs lacking a key were looked at: each was ``complete`` (needed nothing,
    or another writer filled it first), skipped by reason (``skipped``), or planned a patch
    (``planned_patches``, ``planned_keys`` keys): ``logs == planned_patches + complete +
    skipped_total``. Applying the patches gave ``patched`` logs at least one key: ``keys_set`` keys
    set, ``keys_left_alone`` found already there (or on a log whose metadata cannot take a key),
    ``keys_too_large`` refused because the log would pass MongoDB's 16 MiB document limit,
    ``keys_refused`` refused by the store for that one log, by the store's name for the refusal
    (MongoDB's ``codeName``: ``DocumentValidationFailure`` for a collection's validator, 121;
    ``DuplicateKey`` for a unique index, 11000; ``Overflow`` for a value that would nest the log past
    100 levels, 15) — all zero on a dry run, which applies nothing:
    ``keys_set + keys_left_alone + keys_too_large + keys_refused_total == planned_keys``.
    ``ignored`` logs were not eligible (not an association log). ``EnrichmentStore.apply`` answers
    the apply fields only.

    A job's tally counts the association logs of its batches, all ``complete`` with the entity
    names they carried into the insert (``keys_set``). A run that dies between a batch's write and
    its progress write replays that batch: its duplicates are counted as the logs it built, names
    included (``usecases._entity_names.names_tally``), so every count ends as a clean run's.
    """

    logs: int = 0
    patched: int = 0
    complete: int = 0
    keys_set: int = 0
    skipped: Mapping[str, int] = field(factory=dict, converter=_counts)
    ignored: int = 0
    planned_patches: int = 0
    planned_keys: int = 0
    keys_left_alone: int = 0
    keys_too_large: int = 0
    keys_refused: Mapping[str, int] = field(factory=dict, converter=_counts)

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    @property
    def keys_refused_total(self) -> int:
        return sum(self.keys_refused.values())

    @property
    def enriched(self) -> int:
        """Logs that now carry every referent key enrichment could give them."""
        return self.patched + self.complete

    def __add__(self, other: EnrichmentTally) -> EnrichmentTally:
        skipped, refused = Counter(self.skipped), Counter(self.keys_refused)
        skipped.update(other.skipped)
        refused.update(other.keys_refused)
        summed = {f.name: getattr(self, f.name) + getattr(other, f.name) for f in _NUMBERS}
        return EnrichmentTally(skipped=skipped, keys_refused=refused, **summed)

    def as_dict(self) -> EnrichmentCounts:
        """JSON-ready counts of a job, as ``status`` shows them (a job plans and applies nothing)."""
        return {
            "logs": self.logs,
            "patched": self.patched,
            "complete": self.complete,
            "keys_set": self.keys_set,
            "skipped": dict(self.skipped),
        }


_NUMBERS = tuple(f for f in fields(EnrichmentTally) if f.name not in {"skipped", "keys_refused"})
