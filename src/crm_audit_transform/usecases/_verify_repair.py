"""Repair's bookkeeping: write a page's missing logs under the leases, count them into the job at the end.

The counting rule is in ``usecases.verify``'s docstring.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import attrs

from ..domain import Migrated
from ..errors import CrmAuditError
from ..jobs import JobShard, MigrationJob
from ..ports import Clock, JobStore
from ..tally import Tally
from ._entity_names import name_linked_entities
from ._verify_leases import hold_every_lease, release_every_lease, save_job_as, unleased
from .migrate_batch import MAX_BATCH_SIZE, migrate_batch

if TYPE_CHECKING:
    from .verify import VerifyPorts, VerifySettings


class Repair:
    """What one ``verify --repair`` wrote: in all, behind the job's cursor, and counted into the job.

    A missing association log is written as the run writes it: named (``linked_entity_name``) before
    the write, when the ports give the CRM's entities (``_entity_names``). The job's enrichment counts
    are left as they are: they count the association logs of the run's batches, and a restored log
    was counted by the batch that first wrote it.
    """

    def __init__(self, ports: VerifyPorts, settings: VerifySettings, owner: str) -> None:
        self.ports = ports
        self.settings = settings
        self.owner = owner
        self.repaired = 0
        self.repaired_in_range = 0
        self.counted = 0
        self.batch_size = min(settings.batch_size, MAX_BATCH_SIZE)

    def write(self, missing: Sequence[Migrated], job: MigrationJob | None) -> MigrationJob:
        """Renew the leases, write ``missing``'s logs in batches, then renew them again: the job as
        stored now.

        The renewal before the first batch is the run's (``run.py``: before inserting, once half the
        lease has passed), done for every page that has logs to write: a repair whose page stalled
        past its lease (slow lookups, a pause) finds the job rolled back or cancelled meanwhile there
        (``JobNotRunnable``) or taken over (``LeaseHeld``), and writes nothing of that page.
        """
        writer = self.ports.logs
        if writer is None or job is None:  # _take_lease made sure of both
            raise ValueError("repair needs the logs port and a job")
        job = self._renew_lease(job)
        entities = self.ports.entities
        if entities is not None:  # the log the run writes: its association logs named
            named = name_linked_entities(missing, tenant=job.tenant, entities=entities)
            missing = [m for m in named if isinstance(m, Migrated)]
        size = self.batch_size
        for start in range(0, len(missing), size):
            chunk = missing[start : start + size]
            result = migrate_batch([m.log for m in chunk], writer, max_size=size)
            for item, written in zip(chunk, result.results, strict=True):
                # A duplicate means the log is there (written meanwhile): the row is no longer missing.
                if written.status == "inserted" or written.status == "skipped":
                    self.repaired += 1
                    if item.audit_id <= job.last_audit_id:
                        self.repaired_in_range += 1
        return self._renew_lease(job)

    def _lease_ports(self, job: MigrationJob | None) -> tuple[JobStore, Clock, MigrationJob]:
        jobs, clock = self.ports.jobs, self.ports.clock
        if jobs is None or clock is None or job is None:  # _take_lease made sure of all three
            raise ValueError("repair needs the jobs and clock ports and a job")
        return jobs, clock, job

    def _renew_lease(self, job: MigrationJob | None) -> MigrationJob:
        # Taking the leases again renews them while they are ours (LeaseHeld once another took one
        # over); save_progress would not: it writes in-progress jobs only, and repair serves ended ones.
        jobs, _, job = self._lease_ports(job)
        return hold_every_lease(jobs, job, self.owner, self.settings.lease_ttl)

    def finish(self, job: MigrationJob | None, proved: Tally) -> MigrationJob:
        """Count the repaired rows into the job (rule in ``usecases.verify``) and hand the lease back.

        ``proved`` is what the walk found behind the job's cursor: ``processed`` its rows,
        ``migrated`` those with a log before the repair, ``skipped`` and ``failed`` those without a
        migrated log by recomputed reason. Returns the job as saved.
        """
        jobs, clock, job = self._lease_ports(job)
        # Still ours, or LeaseHeld: with every shard's lease held too, no runner writes this document
        # meanwhile, so saving it whole cannot undo a shard's batch.
        held = hold_every_lease(jobs, job, self.owner, self.settings.lease_ttl)
        # The job counts the rows behind its cursor that have a log: derived from what is stored now,
        # not incremented, so a repair that died before this write is counted by the next one.
        logged = proved.migrated + self.repaired_in_range
        added = max(0, logged - held.tally.migrated)
        unseen = min(added, max(0, proved.processed - held.tally.processed))
        self.counted = added
        counted = held.tally + Tally(processed=unseen, migrated=added)
        proved = attrs.evolve(proved, migrated=logged)
        if (counted.processed, counted.migrated) == (proved.processed, proved.migrated) and _adds_up(proved):
            # Every row behind the cursor is accounted for: the job's counts become what was proved,
            # each row under its outcome now (a row that failed before a fixed cause and was written
            # here leaves the failed count).
            counted = attrs.evolve(counted, skipped=proved.skipped, failed=proved.failed)
        else:
            # Some row is not accounted for (one left missing): the rows written here that the job
            # had counted (not the unseen ones) leave its failed, then its skipped counts.
            counted = _taken_off(counted, added - unseen)
        done = attrs.evolve(
            held,
            tally=counted,
            updated_at=clock.now(),
            lease_owner=None,
            lease_expires_at=None,
        )
        if held.shards:
            # A sharded job's counts are its shards' sums: what the repair changed is spread over
            # them (``_spread``). Still derived from the stored totals, not added up.
            done = attrs.evolve(done, shards=_spread(unleased(held.shards), counted - held.tally))
        save_job_as(jobs, done, held.status, self.owner)
        return done

    def release_quietly(self, company_sso_id: str, job: MigrationJob | None) -> None:
        """Hand back the leases after a failure, best effort: they expire anyway."""
        jobs = self.ports.jobs
        if jobs is None or job is None:
            return
        # Best effort, from the job as stored: the leases expire anyway.
        with contextlib.suppress(CrmAuditError):
            stored = jobs.latest(company_sso_id)
            if stored is not None and stored.job_id == job.job_id:
                release_every_lease(jobs, stored, self.owner)


def _adds_up(tally: Tally) -> bool:
    return tally.processed == tally.migrated + tally.skipped_total + tally.failed_total


def _taken_off(tally: Tally, rows: int) -> Tally:
    """``tally`` with ``rows`` rows taken off its failed counts, then its skipped ones (reasons in
    name order), never below zero: rows the job counted as failed or skipped that now have a log."""
    failed, rows = _less(tally.failed, rows)
    skipped, _ = _less(tally.skipped, rows)
    return attrs.evolve(tally, failed=failed, skipped=skipped)


def _less(counts: Mapping[str, int], rows: int) -> tuple[dict[str, int], int]:
    left = dict(counts)
    for reason in sorted(left):
        taken = min(rows, left[reason])
        left[reason] -= taken
        rows -= taken
    return left, rows


def _spread(shards: tuple[JobShard, ...], change: Tally) -> tuple[JobShard, ...]:
    """``shards`` with ``change`` (new sums − old) applied: what grows goes to the last shard
    (open-ended, where late rows land); a skipped or failed reason that shrinks is taken off the
    shards that hold it, in order, never below zero."""
    tallies = [shard.tally for shard in shards]
    grows = Tally(
        processed=max(0, change.processed),
        migrated=max(0, change.migrated),
        skipped={k: v for k, v in change.skipped.items() if v > 0},
        failed={k: v for k, v in change.failed.items() if v > 0},
    )
    tallies[-1] = tallies[-1] + grows
    shrinks = Tally(
        skipped={k: -v for k, v in change.skipped.items() if v < 0},
        failed={k: -v for k, v in change.failed.items() if v < 0},
    )
    for n, tally in enumerate(tallies):
        # What this shard gives: as much of each shrinking reason as it holds.
        given = Tally(
            skipped={k: min(v, tally.skipped.get(k, 0)) for k, v in shrinks.skipped.items()},
            failed={k: min(v, tally.failed.get(k, 0)) for k, v in shrinks.failed.items()},
        )
        tallies[n] = tally - given
        shrinks = shrinks - given
    return tuple(attrs.evolve(shard, tally=tally) for shard, tally in zip(shards, tallies, strict=True))
