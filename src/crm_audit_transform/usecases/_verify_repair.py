"""Repair's bookkeeping: write a page's missing logs under the leases, count them into the job at the end.

The counting rule is in ``usecases.verify``'s docstring.
"""

from __future__ import annotations

import contextlib
from bisect import bisect_left
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import attrs

from ..domain import ActivityLog, Migrated
from ..errors import CrmAuditError, RestoreRefused
from ..jobs import JobShard, MigrationJob
from ..ports import Clock, GrowingSourceMarks, JobStore
from ..ports.log_stores import MigratedLogsRestore, MigratedLogsRestoreMany
from ..tally import Tally
from ._entity_names import name_linked_entities
from ._verify_findings import written_keys
from ._verify_leases import hold_every_lease, release_every_lease, save_job_as, unleased
from .migrate_batch import MAX_BATCH_SIZE, migrate_batch

if TYPE_CHECKING:
    from .verify import VerifyPorts, VerifySettings


class Repair:
    """What one ``verify --repair`` wrote: in all, behind the job's cursor, and counted into the job.

    A missing association log is written as the run writes it: named (``linked_entity_name``) before
    the write, when the ports give the CRM's entities (``_entity_names``). The job's enrichment counts
    are left as they are: they count the association logs of the run's batches, and a restored log
    was counted by the batch that first wrote it. A ``drifted`` log is set back to its recomputed log
    (``restored``) when the writer can (``ports.log_stores.MigratedLogsRestore``), under the same
    leases, a batch's worth in one request where the store batches (``MigratedLogsRestoreMany``);
    its counts are unchanged (the row was migrated, and stays so). One the store refuses
    (``RestoreRefused``: past its document limit) is counted (``restore_refused``) and stays drifted.
    """

    def __init__(self, ports: VerifyPorts, settings: VerifySettings, owner: str) -> None:
        self.ports = ports
        self.settings = settings
        self.owner = owner
        self.repaired = 0
        self.repaired_in_range = 0
        self.repaired_by_shard: Counter[int] = Counter()  # of repaired_in_range, by shard index
        self.counted = 0
        self.restored = 0
        self.restore_refused = 0  # drifted logs the store refused to set back (RestoreRefused)
        self.run_keys = written_keys(ports.entities is not None)
        self.batch_size = min(settings.batch_size, MAX_BATCH_SIZE)

    @property
    def restores(self) -> bool:
        """Whether ``write`` can set drifted logs back: the writer restores (``MigratedLogsRestore``)."""
        return isinstance(self.ports.logs, MigratedLogsRestore)

    def write(
        self, missing: Sequence[Migrated], job: MigrationJob | None, drifted: Sequence[ActivityLog] = ()
    ) -> MigrationJob:
        """Renew the leases, write ``missing``'s logs in batches, set the ``drifted`` logs back (their
        recomputed logs, named as written; a batch's worth at a time), then renew the leases again:
        the job as stored now.

        The renewal before the first batch is the run's (``run.py``: before inserting, once half the
        lease has passed), done for every page that has logs to write: a repair whose page stalled
        past its lease (slow lookups, a pause) finds the job rolled back or cancelled meanwhile there
        (``JobNotRunnable``) or taken over (``LeaseHeld``), and writes nothing of that page. A page
        holds up to ``page_size`` missing logs, many batches: before each later batch the lease is
        renewed again once half of it has passed since the last renewal (the entity names' lookup,
        a slow write, a pause between two batches), so such a stall lets at most the batch in
        flight out after the lease is lost, as in the run — not the rest of the page. The drifted logs
        are set back under the same rule, a batch's worth between two checks of the lease.
        """
        writer = self.ports.logs
        clock = self.ports.clock
        if writer is None or job is None or clock is None:  # _take_lease made sure of all three
            raise ValueError("repair needs the logs and clock ports and a job")
        # Counted from the renewal's sending, not from its answer (the expiry is set when the
        # store applies it, which may be long before the answer comes back) nor from the mark's
        # growth after it (gigabytes appended, a pause): either would push the next renewal back.
        renewed = clock.monotonic()
        job = self._renew_lease(job)
        job = self._grow_source_mark(job)
        half = self.settings.lease_ttl.total_seconds() / 2
        entities = self.ports.entities
        if entities is not None:  # the log the run writes: its association logs named
            named = name_linked_entities(missing, tenant=job.tenant, entities=entities)
            missing = [m for m in named if isinstance(m, Migrated)]
        size = self.batch_size
        for start in range(0, len(missing), size):
            if clock.monotonic() - renewed >= half:
                # On this host's monotonic clock (a duration; the expiry itself is the store's), as the run's.
                renewed = clock.monotonic()
                job = self._renew_lease(job)
            chunk = missing[start : start + size]
            result = migrate_batch([m.log for m in chunk], writer, max_size=size)
            for item, written in zip(chunk, result.results, strict=True):
                # A duplicate means the log is there (written meanwhile): the row is no longer missing.
                if written.status == "inserted" or written.status == "skipped":
                    self.repaired += 1
                    if job.is_behind(item.audit_id):
                        self.repaired_in_range += 1
                        shard = shard_of(job.shards, item.audit_id)
                        if shard is not None:
                            self.repaired_by_shard[shard] += 1
        restorer = writer if isinstance(writer, MigratedLogsRestore) else None
        for start in range(0, len(drifted) if restorer is not None else 0, size):
            if clock.monotonic() - renewed >= half:
                renewed = clock.monotonic()
                job = self._renew_lease(job)
            if restorer is not None:
                self._restore(restorer, drifted[start : start + size])
        return self._renew_lease(job)

    def _restore(self, restorer: MigratedLogsRestore, logs: Sequence[ActivityLog]) -> None:
        """Set ``logs`` back: in one request when the store batches (``MigratedLogsRestoreMany``),
        else one a log. A log the store refuses (``RestoreRefused``) is counted and stays drifted;
        the others are set back all the same. An outage (``StoreUnavailable``) stops the repair:
        what it set back stays, and a rerun finds the rest still drifted."""
        if isinstance(restorer, MigratedLogsRestoreMany):
            result = restorer.restore_migrated_many(logs, self.run_keys)
            self.restored += result.restored
            self.restore_refused += len(result.refused)
            return
        for log in logs:
            try:
                if restorer.restore_migrated(log, self.run_keys):
                    self.restored += 1
            except RestoreRefused:
                self.restore_refused += 1

    def _grow_source_mark(self, job: MigrationJob) -> MigrationJob:
        """``job`` with its ``source_mark`` grown over what the source holds now, saved under the
        leases repair holds, when the source holds more than the mark covers: rows added after the
        job was made (a file's rows appended after it completed), which this repair is about to
        write. The run grows it so before it hands a page (``_source_check.grow_source_mark``);
        without it a row written here and rewritten since was read at the next verify as a
        ``drifted`` log of the same file, not ``SourceChanged``. Saved before the writes: a crash
        between them leaves a mark that covers more than was written, never less. One cheap look
        (a file's ``stat``) while the source holds no more; the source's own error when what the
        mark covers changed under the repair."""
        source = self.ports.source
        if job.source_mark is None or not isinstance(source, GrowingSourceMarks):
            return job
        grown = source.grown_mark(job.source_mark)
        if grown is None:
            return job
        jobs, _, _ = self._lease_ports(job)
        # Repair holds every lease, so no runner grows the mark meanwhile: the whole job is saved
        # under them, in its status (a compare-and-set, ``save_job_as``).
        marked = attrs.evolve(job, source_mark=grown)
        save_job_as(jobs, marked, job.status, self.owner)
        return marked

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

    def finish(
        self, job: MigrationJob | None, proved: Tally, by_shard: ShardCounts | None = None
    ) -> MigrationJob:
        """Count the repaired rows into the job (rule in ``usecases.verify``) and hand the lease back.

        ``proved`` is what the walk found behind the job's cursor: ``processed`` its rows,
        ``migrated`` those with a log before the repair, ``skipped`` and ``failed`` those without a
        migrated log by recomputed reason. A sharded job needs ``by_shard``, the same split by shard
        range: each shard's counts follow the rule on its own range (the job's are their sums).
        Returns the job as saved.
        """
        jobs, clock, job = self._lease_ports(job)
        # Still ours, or LeaseHeld: with every shard's lease held too, no runner writes this document
        # meanwhile, so saving it whole cannot undo a shard's batch.
        held = hold_every_lease(jobs, job, self.owner, self.settings.lease_ttl)
        done = attrs.evolve(held, updated_at=clock.now(), lease_owner=None, lease_expires_at=None)
        if held.shards:
            if by_shard is None or len(by_shard.rows) != len(held.shards):
                raise ValueError("a sharded job's repair needs the walk's counts by shard")
            shards = []
            self.counted = 0
            for n, shard in enumerate(unleased(held.shards)):
                tally, added = _counted(shard.tally, by_shard.proved(n), self.repaired_by_shard[n])
                shards.append(attrs.evolve(shard, tally=tally))
                self.counted += added
            # The job's counts are derived from its shards' (``MigrationJob``).
            done = attrs.evolve(done, shards=tuple(shards))
        else:
            tally, self.counted = _counted(held.tally, proved, self.repaired_in_range)
            done = attrs.evolve(done, tally=tally)
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


def _counted(tally: Tally, proved: Tally, repaired: int) -> tuple[Tally, int]:
    """``tally`` (the job's, or one shard's) counted from what the walk ``proved`` in its range and
    the ``repaired`` rows written there, and the number of rows added to ``migrated``."""
    # Derived from what is stored now, not incremented: a repair that died before its job write is
    # counted by the next one.
    logged = proved.migrated + repaired
    added = max(0, logged - tally.migrated)
    unseen = min(added, max(0, proved.processed - tally.processed))
    counted = tally + Tally(processed=unseen, migrated=added)
    proved = attrs.evolve(proved, migrated=logged)
    if (counted.processed, counted.migrated) == (proved.processed, proved.migrated) and _adds_up(proved):
        # Every row behind the cursor is accounted for: the counts become what was proved, each
        # row under its outcome now (a row that failed before a fixed cause and was written here
        # leaves the failed count).
        return attrs.evolve(counted, skipped=proved.skipped, failed=proved.failed), added
    # Some row is not accounted for (one left missing): the rows written here that were counted
    # (not the unseen ones) leave the failed, then the skipped counts.
    return _taken_off(counted, added - unseen), added


def shard_of(shards: Sequence[JobShard], audit_id: int) -> int | None:
    """The index of the shard whose range ``(after_id, until_id]`` holds ``audit_id``; None if none
    does (no shards, or an id outside them). ``shards`` in id order, as a job holds them."""
    n = bisect_left([shard.after_id for shard in shards], audit_id) - 1
    if n < 0:
        return None
    until = shards[n].until_id
    return n if until is None or audit_id <= until else None


class ShardCounts:
    """What the walk proved behind the job's cursor, split by shard range ``(after_id, until_id]``:
    rows, rows with a log, rows without a migrated log by recomputed reason (``Repair.finish``)."""

    def __init__(self, shards: Sequence[JobShard]) -> None:
        self._shards = tuple(shards)
        self.rows = [0] * len(shards)
        self.logged = [0] * len(shards)
        self.skipped: list[Counter[str]] = [Counter() for _ in shards]
        self.failed: list[Counter[str]] = [Counter() for _ in shards]

    def of(self, audit_id: int) -> int | None:
        """``shard_of`` for these shards."""
        return shard_of(self._shards, audit_id)

    def count_rows(self, audit_ids: Sequence[int], logged: bool = False) -> None:
        """Count ``audit_ids`` (behind the job's cursor) as rows, or as rows with a log."""
        counts = self.logged if logged else self.rows
        for audit_id in audit_ids:
            n = self.of(audit_id)
            if n is not None:
                counts[n] += 1

    def proved(self, n: int) -> Tally:
        """Shard ``n``'s range as ``Repair.finish``'s ``proved``."""
        return Tally(
            processed=self.rows[n],
            migrated=self.logged[n],
            skipped=dict(self.skipped[n]),
            failed=dict(self.failed[n]),
        )
