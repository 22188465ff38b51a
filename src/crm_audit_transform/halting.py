"""The halt rule: a pure function of the rows behind the cursor, never of where a run was cut.

The plan halts a job "when cumulative failed/processed > 0.10". Evaluated after every batch, that
decision depends on where batches, pages and interruptions fall: 6 bad rows among the first 29
halted a job whose whole account fails 0.8%, and a Ctrl-C and resume halted a job a clean run
completes. So the rule is evaluated only at fixed points of the row sequence:

* the rows are counted in audit-id order from the **basis** (the trigger, or the last ``--resume``);
* the rule is evaluated each time that count reaches a multiple of ``sample`` rows (default 200),
  and once at the end of the data — the run cuts its batches at those points, so every run sees
  exactly the same counts there, however it was paged, batched or interrupted (a replayed batch
  counts exactly as in a clean run: docs/runner.md);
* ``sample`` is also the **minimum sample**: at the end of the data, fewer than ``sample`` rows
  since the basis never halt. 1 failure in 3 rows is 33% of nothing: halting a tiny tenant (or the
  last few rows after a ``--resume``) there would prevent no write — every row is already
  processed — and only leave a job that a ``--resume`` completes at once. The job completes
  instead and its failures stay counted per reason (``status``, the dry run's report and
  ``--outcomes``), so each failed row can be found and fixed;
* at each point, the job halts when the failed share of the rows since the basis exceeds
  ``threshold`` (default 10%), or when the share of actors degraded by a USMAN outage exceeds
  ``degraded_threshold`` (default 10%) — the reason then names USMAN, and ``--resume`` once it is
  back carries on from the cursor.

The dry run reports "would halt at …" from the same rule (``RunResult.would_halt``).

A **sharded** job (``usecases.shards``) runs its id ranges side by side, so no shard sees the
rows of another in id order, and the sum of the shards' counts at any moment depends on how fast
each ran. Each shard therefore applies ``per_shard(n)``: the same thresholds over its own rows since
its basis, checked every ``ceil(sample / n)`` of its rows — the job's n shards together check about
as often as one unsharded run, and a shard's decision stays a function of its rows (and of n, fixed
at the trigger), whatever the timing of the others. A shard that halts halts the job. The end of
the data is decided once, over every shard's rows (the job's ``sample`` as its minimum sample).
Without this, 4 shards of 190 rows never reached a check point of 200 and wrote every row through a
USMAN outage before the end check halted the job.
"""

from __future__ import annotations

from typing import Final

from attrs import Attribute, evolve, field, frozen, validators

from ._arguments import typed
from .tally import Tally

DEFAULT_HALT_THRESHOLD: Final = 0.10
DEFAULT_DEGRADED_THRESHOLD: Final = 0.10
DEFAULT_HALT_SAMPLE: Final = 200


def _share(instance: HaltRule, attribute: Attribute[float], value: float) -> None:
    """A threshold is a real number: NaN compares false with every rate, so it would never halt."""
    if value != value:
        raise ValueError(f"HaltRule.{attribute.name} must be a share (0–1), got NaN: it would never halt")


@frozen
class HaltRule:
    """Thresholds (shares, 0–1) and the sample size (rows) between two evaluations.

    Checked when built, each error naming the field: a threshold that is no ``int`` or ``float`` (a
    bool included) is a ``TypeError``, NaN a ``ValueError``; ``sample`` an ``int`` ≥ 1. A threshold
    given as text was accepted and failed only in ``decide``, at the first check point of a run.
    """

    threshold: float = field(default=DEFAULT_HALT_THRESHOLD, validator=[typed((int, float)), _share])
    degraded_threshold: float = field(
        default=DEFAULT_DEGRADED_THRESHOLD, validator=[typed((int, float)), _share]
    )
    sample: int = field(default=DEFAULT_HALT_SAMPLE, validator=[typed(int), validators.ge(1)])

    def per_shard(self, shards: int) -> HaltRule:
        """The rule each of ``shards`` (≥ 1) shards applies to its own rows: the same thresholds,
        ``sample`` divided by ``shards`` and rounded up (see the module docstring)."""
        if shards < 1:
            raise ValueError(f"shards must be at least 1, got {shards}")
        return evolve(self, sample=-(-self.sample // shards))

    def rows_to_next_check(self, since: int) -> int:
        """How many more rows until the next evaluation point, given ``since`` rows counted (≥ 1)."""
        return self.sample - since % self.sample

    def checks_at(self, processed: int) -> bool:
        """Whether ``processed`` rows since the basis is an evaluation point (a positive multiple
        of ``sample``): where ``decide`` may halt before the end. A run asks this per batch and
        builds the tally since the basis only where it is true."""
        return processed > 0 and not processed % self.sample

    def crossed(self, before: int, after: int) -> bool:
        """Whether a step that took the rows counted since the basis from ``before`` to ``after``
        reached or passed an evaluation point (``usecases._run_steps.cut_steps`` ends a step at
        each point, so a step reaches one exactly)."""
        return after > 0 and after // self.sample > before // self.sample

    def decide(self, since: Tally, *, at_end: bool = False, crossed: bool = False) -> str | None:
        """The halt reason for the rows counted since the basis, or None to carry on.

        Only at an evaluation point (``checks_at``; ``crossed``, the step that passed one; or
        ``at_end`` with at least ``sample`` rows: the minimum sample); elsewhere None.
        """
        if at_end:
            if since.processed < self.sample:
                return None  # the minimum sample: too few rows for a share to mean anything
        elif not crossed and not self.checks_at(since.processed):
            return None
        if since.failure_rate > self.threshold:
            return (
                f"failure rate {since.failure_rate:.2%} ({since.failed_total} of {since.processed} rows "
                f"since the job started or resumed) exceeded {self.threshold:.0%}"
            )
        if since.degraded_rate > self.degraded_threshold:
            return (
                f"USMAN: {since.actors_degraded} of {since.processed} actors degraded to the deleted "
                f"user ({since.degraded_rate:.2%}) exceeded {self.degraded_threshold:.0%}; "
                "trigger --resume once USMAN answers again"
            )
        return None
