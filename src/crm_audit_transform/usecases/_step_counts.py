"""A step's writes counted into its job (``_run_loop.RunLoop._apply``): row by row from the write
results (``settle``) or, for a worker's packed step whose every log was inserted, on its arrays
(``write_packed``, ``count_packed``: no object a row, ``packed``)."""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from ..domain import ActivityLog, EncodedLog, Outcome, WriteResult
from ..enrichment_tally import EnrichmentTally
from ..errors import BatchTooLarge
from ..jobs import MigrationJob
from ..packed import PackedOutcomes
from ..ports import Clock, PackedLogWriter
from ..tally import Tally
from ._entity_names import names_tally, packed_names_tally
from ._run_steps import Step, settle_outcomes


def write_packed(
    writer: PackedLogWriter, outcomes: PackedOutcomes, batch_size: int
) -> Sequence[WriteResult] | None:
    """The logs of a plain packed step written (``PackedLogWriter.insert_packed``): None when every
    one was inserted (or it had none), else one ``WriteResult`` a log. ``BatchTooLarge`` above
    ``batch_size`` logs, before anything is written."""
    if outcomes.logs > batch_size:
        raise BatchTooLarge(outcomes.logs, batch_size)
    return writer.insert_packed(outcomes) if outcomes.has_packed else None


def count_packed(
    job: MigrationJob,
    step: Step,
    outcomes: PackedOutcomes,
    unsaved: list[Sequence[Outcome]],
    *,
    names: bool,
    clock: Clock,
) -> MigrationJob:
    """``count`` of a packed step whose every log was inserted: the outcomes stand as they are,
    counted on the arrays (``names``: the run names entities, its association logs are counted)."""
    tally = outcomes.tally(step.fallthrough, step.degraded)
    enrichment = job.enrichment if not names else job.enrichment + packed_names_tally(outcomes)
    return count(job, step, outcomes, tally, enrichment, unsaved, clock=clock)


def settle(
    job: MigrationJob,
    step: Step,
    outcomes: Sequence[Outcome],
    logs: Sequence[ActivityLog | EncodedLog],
    results: Sequence[WriteResult],
    unsaved: list[Sequence[Outcome]],
    *,
    names: bool,
    clock: Clock,
) -> MigrationJob:
    """The step's write ``results`` folded into its outcomes, and counted into ``job``."""
    settled = tuple(settle_outcomes(outcomes, results))
    tally = Tally.of(settled, step.fallthrough, step.degraded)
    # Without entity names (a dry run, a run without a CRM) a step adds no enrichment counts.
    enrichment = job.enrichment if not names else job.enrichment + names_tally(logs, results)
    return count(job, step, settled, tally, enrichment, unsaved, clock=clock)


def count(
    job: MigrationJob,
    step: Step,
    settled: Sequence[Outcome],
    tally: Tally,
    enrichment: EnrichmentTally,
    unsaved: list[Sequence[Outcome]],
    *,
    clock: Clock,
) -> MigrationJob:
    """``job`` with the step counted (not saved): the cursor at the step's last id (never moved
    back), the step's ``tally`` added, ``enrichment`` (the job's, the step's already in it) set;
    ``settled``, the step's outcomes after its write, appended to ``unsaved`` (``on_outcomes``)."""
    unsaved.append(settled)
    return attrs.evolve(
        job,
        # A step of set-aside rows alone never moves the cursor back (ports.RowsSetAside).
        last_audit_id=max(job.last_audit_id, step.last_id),
        rows_at_cursor=rows_at_cursor(job, step),
        tally=job.tally + tally,
        enrichment=enrichment,
        updated_at=clock.now(),
    )


def rows_at_cursor(job: MigrationJob, step: Step) -> int:
    """How many rows of the cursor's id are counted once ``step`` is (``MigrationJob.rows_at_cursor``):
    the step's last rows of its last id, and those counted before it when the whole step is of the
    id the cursor was already at (a file's id repeated across steps). 0 where ids are unique."""
    if step.last_id < job.last_audit_id:
        return job.rows_at_cursor  # the cursor stays (set-aside rows behind it: never handed now)
    if step.last_id == job.last_audit_id and step.last_rows == len(step.outcomes):
        return job.rows_at_cursor + step.last_rows
    return step.last_rows
