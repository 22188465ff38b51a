"""What enrichment did to a job's association logs, kept on the job beside (never inside) its Tally.

Enrichment is not a record outcome — a row is migrated, skipped or failed whether or not its log
was enriched afterwards — so these counts stay out of ``Tally`` and its failure rate.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from attrs import field, frozen


def _counts(value: Mapping[str, int]) -> Mapping[str, int]:
    return dict(sorted((k, v) for k, v in value.items() if v))


@frozen
class EnrichmentTally:
    """Association logs a run enriched: every one is ``patched``, ``complete`` or skipped by reason.

    ``logs == patched + complete + skipped_total``. ``complete`` logs needed nothing (or another
    writer filled them first). A run that dies between a batch's enrichment and its progress write
    replays that batch, finds its logs already patched and counts them ``complete``: ``logs``,
    ``skipped`` and ``enriched`` (patched + complete) are exact whatever happened; the split
    between ``patched`` and ``complete``, and ``keys_set``, may lean towards ``complete``.
    """

    logs: int = 0
    patched: int = 0
    complete: int = 0
    keys_set: int = 0
    skipped: Mapping[str, int] = field(factory=dict, converter=_counts)

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    @property
    def enriched(self) -> int:
        """Logs that now carry every referent key enrichment could give them."""
        return self.patched + self.complete

    def __add__(self, other: EnrichmentTally) -> EnrichmentTally:
        skipped = Counter(self.skipped)
        skipped.update(other.skipped)
        return EnrichmentTally(
            logs=self.logs + other.logs,
            patched=self.patched + other.patched,
            complete=self.complete + other.complete,
            keys_set=self.keys_set + other.keys_set,
            skipped=skipped,
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready counts, as ``status`` shows them."""
        return {
            "logs": self.logs,
            "patched": self.patched,
            "complete": self.complete,
            "keys_set": self.keys_set,
            "skipped": dict(self.skipped),
        }
