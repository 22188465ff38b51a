"""In-memory audit source, activity-log store, job store, feature flags and clock.

They honour the same contracts as the real adapters — the unique ``(company_sso_id, external_id)``
rule of the activity-log index, one in-progress job per account, atomic leases — so a use case
tested against them behaves the same against MongoDB and PostgreSQL.
"""

from __future__ import annotations

import bisect
import datetime as dt
import json
import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import TypeGuard

import attrs

from .. import reasons
from ..domain import (
    HELD_BY_ANOTHER_TOOL,
    NO_TIME_KNOWN,
    SOURCE_TAG,
    ActivityLog,
    AuditRow,
    EncodedLog,
    ScopeBounds,
    WriteResult,
)
from ..errors import JobAlreadyRunning, JobNotFound, JobNotRunnable, LeaseHeld
from ..jobs import (
    CANCELLED,
    COMPLETED,
    IN_PROGRESS,
    LEASABLE,
    ROLLED_BACK,
    ROLLING_BACK,
    JobShard,
    MigrationJob,
    RollbackInFlight,
    WholeAccountDelete,
    lease_is_live,
    live_lease,
    rolled_back_under,
    shard_not_leasable,
)
from ..ports import Clock
from ..timestamps import as_utc
from ._log_limits import log_refusal

__all__ = [
    "FixedClock",
    "InMemoryActivityLogStore",
    "InMemoryAuditSource",
    "InMemoryJobStore",
    "StaticFeatureFlags",
]


class InMemoryAuditSource:
    """The ``audits`` tables of several tenants, paged by keyset exactly like the SQL query.

    The rows in a scope, sorted by id, are kept from one call to the next until a row is added: a run
    in pages of a few rows filtered and sorted the whole tenant at each page (quadratic in its rows).
    """

    __slots__ = ("_rows", "_scoped")

    def __init__(self, rows: Iterable[AuditRow] = ()) -> None:
        self._rows: dict[str, dict[int, AuditRow]] = {}
        self._scoped: dict[_ScopeKey, tuple[list[AuditRow], list[int]]] = {}
        for row in rows:
            self.add(row)

    def add(self, row: AuditRow) -> None:
        self._rows.setdefault(row.tenant, {})[row.id] = row
        self._scoped.clear()

    def _in_scope(self, tenant: str, scope: Sequence[str], cutoff: dt.datetime | None) -> list[AuditRow]:
        return self._scoped_rows(tenant, scope, cutoff)[0]

    def _scoped_rows(
        self, tenant: str, scope: Sequence[str], cutoff: dt.datetime | None
    ) -> tuple[list[AuditRow], list[int]]:
        """The rows of ``_in_scope`` and their ids, kept until ``add`` (callers never change them)."""
        key = (tenant, tuple(scope), cutoff)
        kept = self._scoped.get(key)
        if kept is None:
            rows = self._sorted_in_scope(tenant, scope, cutoff)
            kept = self._scoped[key] = (rows, [r.id for r in rows])
        return kept

    def _sorted_in_scope(
        self, tenant: str, scope: Sequence[str], cutoff: dt.datetime | None
    ) -> list[AuditRow]:
        wanted = set(scope)
        rows = self._rows.get(tenant, {}).values()
        return sorted(
            # A NULL or unreadable created_at is in every range, as the PostgreSQL adapter's query keeps
            # it; so is one of a caller's row that is no aware datetime (the transformer fails it).
            (
                r
                for r in rows
                if r.auditable_type in wanted
                and (cutoff is None or not _placed(r.created_at) or r.created_at >= cutoff)
            ),
            key=lambda r: r.id,
        )

    def scope_bounds(
        self, tenant: str, scope: Sequence[str], cutoff: dt.datetime | None
    ) -> ScopeBounds | None:
        rows = self._in_scope(tenant, scope, cutoff)
        if not rows:
            return None
        times = [r.created_at for r in rows if _placed(r.created_at)]
        oldest = min(times) if times else NO_TIME_KNOWN
        return ScopeBounds(rows[0].id, rows[-1].id, oldest, len(rows))

    def page(
        self, tenant: str, scope: Sequence[str], *, after_id: int, cutoff: dt.datetime, limit: int
    ) -> Sequence[AuditRow]:
        rows, ids = self._scoped_rows(tenant, scope, cutoff)
        first = bisect.bisect_right(ids, after_id)  # ids ascend, one row each: the first past after_id
        return tuple(rows[first : first + limit])

    def id_quantiles(
        self, tenant: str, scope: Sequence[str], cutoff: dt.datetime | None, parts: int
    ) -> Sequence[int]:
        """As PostgreSQL's ``percentile_disc(k / parts)`` over the in-scope ids, k = 1 … parts-1."""
        ids = [r.id for r in self._in_scope(tenant, scope, cutoff)]
        if not ids:
            return ()
        return tuple(ids[max(0, math.ceil(len(ids) * k / parts) - 1)] for k in range(1, parts))

    def audit_by_id(self, tenant: str, audit_id: int) -> AuditRow | None:
        return self._rows.get(tenant, {}).get(audit_id)


_ScopeKey = tuple[str, tuple[str, ...], dt.datetime | None]
"""``InMemoryAuditSource``'s kept scopes: tenant, scope, cutoff."""


def _log_key(log: ActivityLog) -> str:
    """A stored log's id in ``InMemoryActivityLogStore``'s chunks: its company and external id."""
    return json.dumps([log.company_sso_id, log.external_id])


class InMemoryActivityLogStore:
    """The CDP timeline: native logs (no ``external_id``) and migrated ones, unique per company."""

    __slots__ = ("_logs",)

    def __init__(self, logs: Iterable[ActivityLog] = ()) -> None:
        self._logs: list[ActivityLog] = []
        for log in logs:
            self._logs.append(log)

    @property
    def logs(self) -> tuple[ActivityLog, ...]:
        """Every stored log in insertion order."""
        return tuple(self._logs)

    def add_native(self, log: ActivityLog) -> None:
        """Store a live-feed log as the CDP itself would: no ``external_id``, never ours."""
        self._logs.append(log)

    def _keys(self) -> dict[tuple[str, str], object]:
        """Each stored (company, external id) and the ``source_tag`` of the log holding it."""
        return {
            (log.company_sso_id, log.external_id): log.source_tag for log in self._logs if log.external_id
        }

    def insert_batch(self, logs: Sequence[ActivityLog | EncodedLog]) -> Sequence[WriteResult]:
        # Unordered insert against the partial unique index: each duplicate is reported, the rest land;
        # a key another tool's log holds fails (``held_by_another_tool``), as MongoActivityLogStore's.
        # It has no log_encoder, so an EncodedLog reaching it is a wiring mistake. A log MongoDB
        # would refuse (past 16 MiB, nested past 100 levels) fails alone, as it does there.
        return insert_unordered(refuse_encoded(logs, self), self._keys(), self._logs.append)

    def delete_migrated(self, company_sso_id: str) -> int:
        keep = [
            log
            for log in self._logs
            if not (log.company_sso_id == company_sso_id and log.source_tag == SOURCE_TAG)
        ]
        deleted = len(self._logs) - len(keep)
        self._logs = keep
        return deleted

    def migrated_chunk(self, company_sso_id: str, limit: int) -> Sequence[object]:
        """``[company, external id]`` as JSON text, of at most ``limit`` of the company's migrated
        logs (``MigratedLogsInChunks``): a log's identity here, as ``_id`` is in MongoDB — but a log
        written again with the same external id (a new job's) is the same one here, where MongoDB
        gives it a new ``_id``. Text, so they come back from a job store that records them
        (``JobStore.renew_rollback``'s ``sending``, in BSON) as they went."""
        return [_log_key(log) for log in self._logs if self._migrated(log, company_sso_id)][:limit]

    def delete_migrated_chunk(self, company_sso_id: str, chunk: Sequence[object]) -> int:
        wanted = set(chunk)
        keep = [
            log for log in self._logs if not (self._migrated(log, company_sso_id) and _log_key(log) in wanted)
        ]
        deleted = len(self._logs) - len(keep)
        self._logs = keep
        return deleted

    @staticmethod
    def _migrated(log: ActivityLog, company_sso_id: str) -> bool:
        return log.company_sso_id == company_sso_id and log.source_tag == SOURCE_TAG

    def delete_migrated_ids(self, company_sso_id: str, external_ids: Collection[str]) -> int:
        wanted = set(external_ids)
        keep = [
            log
            for log in self._logs
            if not (
                log.company_sso_id == company_sso_id
                and log.source_tag == SOURCE_TAG
                and log.external_id in wanted
            )
        ]
        deleted = len(self._logs) - len(keep)
        self._logs = keep
        return deleted

    def count_migrated(self, company_sso_id: str) -> int:
        return sum(
            1 for log in self._logs if log.company_sso_id == company_sso_id and log.source_tag == SOURCE_TAG
        )

    def restore_migrated(self, log: ActivityLog, run_keys: Collection[str]) -> bool:
        """Set this company's ``crm_migration`` logs of ``log``'s ``external_id`` back to ``log``,
        keeping their metadata keys that are not ``run_keys`` (``ports.MigratedLogsRestore``)."""
        found = False
        for index, stored in enumerate(self._logs):
            if self._migrated(stored, log.company_sso_id) and stored.external_id == log.external_id:
                self._logs[index] = restored_log(log, stored.metadata, run_keys)
                found = True
        return found


class InMemoryJobStore:
    """Job documents by id; a second in-progress job for one account is refused like the index does.

    ``clock`` stands for the database's clock: lease expiries are computed on it, never on the
    runner's (give the runner another ``FixedClock`` to simulate skew between hosts).
    """

    __slots__ = ("_chunks", "_clock", "_counted", "_jobs", "_sending")

    def __init__(self, jobs: Iterable[MigrationJob] = (), *, clock: Clock | None = None) -> None:
        self._jobs: dict[str, MigrationJob] = {}
        self._counted: set[tuple[str, str]] = set()  # (job_id, token) of each finish_rollback counted
        self._chunks: dict[str, tuple[str, int]] = {}  # job_id: the last renew_rollback counted
        self._sending: dict[str, tuple[str, RollbackInFlight]] = {}  # job_id: (owner, chunk in flight)
        self._clock: Clock = clock or FixedClock()
        for job in jobs:
            self._jobs[job.job_id] = job

    @property
    def jobs(self) -> tuple[MigrationJob, ...]:
        return tuple(self._jobs.values())

    def create(self, job: MigrationJob) -> None:
        if job.job_id in self._jobs:
            raise JobAlreadyRunning(f"job {job.job_id} already exists")
        self._refuse_second_in_progress(job)
        self._jobs[job.job_id] = job

    def _refuse_second_in_progress(self, job: MigrationJob) -> None:
        if job.status == IN_PROGRESS and any(
            j.company_sso_id == job.company_sso_id and j.status == IN_PROGRESS and j.job_id != job.job_id
            for j in self._jobs.values()
        ):
            raise JobAlreadyRunning(f"company {job.company_sso_id} already has a job in progress")

    def latest(self, company_sso_id: str) -> MigrationJob | None:
        mine = [j for j in self._jobs.values() if j.company_sso_id == company_sso_id]
        # Insertion order breaks ties between jobs created at the same instant.
        return (
            self._seen(max(enumerate(mine), key=lambda pair: (pair[1].created_at, pair[0]))[1])
            if mine
            else None
        )

    def rollback_under_way(self, company_sso_id: str) -> MigrationJob | None:
        held = next(
            (
                j
                for j in self._jobs.values()
                if j.company_sso_id == company_sso_id and j.status == ROLLING_BACK
            ),
            None,
        )
        return None if held is None else self._seen(held)

    def _seen(self, job: MigrationJob) -> MigrationJob:
        """``job`` as read: ``rollback_unfinished`` derived from the chunk in flight, as the MongoDB
        store derives it (the chunk's owner's count not closed, the job rolling back)."""
        sending = self._sending.get(job.job_id)
        unfinished: int | None = None
        if (
            job.status == ROLLING_BACK
            and sending is not None
            and (job.job_id, sending[0]) not in self._counted
        ):
            chunk = sending[1]
            unfinished = (chunk.before if isinstance(chunk, WholeAccountDelete) else len(chunk)) or None
        return (
            job
            if job.rollback_unfinished == unfinished
            else attrs.evolve(job, rollback_unfinished=unfinished)
        )

    def save(self, job: MigrationJob) -> None:
        if job.job_id not in self._jobs:
            raise JobNotFound(f"no job {job.job_id}")
        self._refuse_second_in_progress(job)
        self._jobs[job.job_id] = job

    def transition(
        self,
        job: MigrationJob,
        expected: Collection[str],
        *,
        unleased: bool = False,
        leased_to: str | None = None,
        status_only: bool = False,
        resumed: bool = False,
    ) -> MigrationJob | None:
        stored = self._jobs.get(job.job_id)
        if stored is None:
            raise JobNotFound(f"no job {job.job_id}")
        if stored.status not in expected:
            return None
        if status_only:
            # The status and its end alone, over the job as stored now (in the same step): a
            # runner's progress saved since ``job`` was read is not written back over (cancel).
            job = attrs.evolve(
                stored,
                status=job.status,
                updated_at=job.updated_at,
                finished_at=job.finished_at,
                halted_reason=job.halted_reason,
            )
        if unleased:
            live = live_lease(stored, self._clock.now())  # on the store's clock, in the same step
            if live is not None:
                raise LeaseHeld(f"job {job.job_id} is held by {live[0]} until {live[1].isoformat()}")
        if resumed and _counts(stored) != _counts(job):
            return None  # saved since the resume read the job (a repair): its basis would be stale
        if unleased and not resumed:  # resumed: the whole job, no lease being live
            # The lease fields stay as stored: a hand-back since the job was read is not undone;
            # and the counts and cursor too, as MongoDB's $set leaves them: a repair's count saved
            # since the job was read is not undone either.
            job = attrs.evolve(
                job,
                lease_owner=stored.lease_owner,
                lease_expires_at=stored.lease_expires_at,
                shards=stored.shards,
                tally=stored.tally,
                enrichment=stored.enrichment,
                halt_basis=stored.halt_basis,
                last_audit_id=stored.last_audit_id,
                rows_at_cursor=stored.rows_at_cursor,
                logs_deleted=stored.logs_deleted,
            )
        if leased_to is not None:
            if stored.lease_owner != leased_to or any(
                s.lease_owner not in (None, leased_to) and s.status != COMPLETED for s in stored.shards
            ):
                return None
        elif IN_PROGRESS in expected:
            job = attrs.evolve(job, shards=stored.shards)  # live shards own their entries
        self._refuse_second_in_progress(job)
        self._jobs[job.job_id] = job
        return job

    def hold_rollback(
        self, job: MigrationJob, expected: Collection[str], *, owner: str, ttl: dt.timedelta
    ) -> MigrationJob | None:
        held = self.transition(job, expected, unleased=True)
        if held is None:
            return None
        held = attrs.evolve(held, lease_owner=owner, lease_expires_at=self._clock.now() + ttl)
        self._jobs[job.job_id] = held
        return held

    def give_back_rollback(self, job: MigrationJob, *, owner: str) -> MigrationJob | None:
        stored = self._jobs.get(job.job_id)
        if stored is None:
            raise JobNotFound(f"no job {job.job_id}")
        if stored.status != ROLLING_BACK or stored.lease_owner != owner:
            return None
        back = attrs.evolve(
            stored, status=job.status, updated_at=job.updated_at, lease_owner=None, lease_expires_at=None
        )
        self._jobs[job.job_id] = back
        return back

    def renew_rollback(
        self,
        job_id: str,
        *,
        owner: str,
        ttl: dt.timedelta,
        deleted: int,
        chunk: int,
        sending: RollbackInFlight | None = None,
    ) -> MigrationJob:
        stored = self._jobs.get(job_id)
        if stored is None:
            raise JobNotFound(f"no job {job_id}")
        if stored.status != ROLLING_BACK or stored.lease_owner != owner:
            raise LeaseHeld.lost(f"job {job_id}", owner, stored.lease_owner, stored.lease_expires_at)
        renewed = attrs.evolve(stored, lease_expires_at=self._clock.now() + ttl)
        if self._chunks.get(job_id) != (owner, chunk):  # a retry of a counted chunk renews only
            self._chunks[job_id] = (owner, chunk)
            renewed = attrs.evolve(renewed, logs_deleted=(stored.logs_deleted or 0) + deleted)
        if sending is not None:
            self._sending[job_id] = (
                owner,
                sending if isinstance(sending, WholeAccountDelete) else tuple(sending),
            )
        self._jobs[job_id] = renewed
        return renewed

    def adopt_rollback_chunk(self, job_id: str, *, owner: str) -> RollbackInFlight:
        stored = self._jobs.get(job_id)
        if stored is None:
            raise JobNotFound(f"no job {job_id}")
        sending = self._sending.get(job_id)
        if sending is None or stored.status != ROLLING_BACK or stored.lease_owner != owner:
            return ()
        previous, chunk = sending
        if previous == owner:
            return chunk  # adopted already
        if chunk == () or (job_id, previous) in self._counted:
            return ()
        self._counted.add((job_id, previous))  # its finish_rollback adds nothing: the chunk is counted here
        self._sending[job_id] = (owner, chunk)
        return chunk

    def finish_rollback(self, job: MigrationJob, deleted: int, *, token: str) -> MigrationJob | None:
        stored = self._jobs.get(job.job_id)
        if stored is None:
            raise JobNotFound(f"no job {job.job_id}")
        if stored.status not in (ROLLING_BACK, ROLLED_BACK):
            return None
        if (job.job_id, token) in self._counted:
            return stored  # this rollback's count is in already
        self._counted.add((job.job_id, token))
        # Added to the count as stored now, in the same step: a rollback beside this one that
        # finished first keeps its count.
        done = attrs.evolve(stored, logs_deleted=(stored.logs_deleted or 0) + deleted)
        if stored.lease_owner == token:
            # Still this rollback's hold: it ends the rollback. Else another rollback took the hold
            # over once this one's had expired: that one ends it, or (it let go) the next one does.
            done = attrs.evolve(
                done, status=ROLLED_BACK, updated_at=job.updated_at, lease_owner=None, lease_expires_at=None
            )
        self._jobs[job.job_id] = done
        return done

    def acquire_lease(self, job_id: str, owner: str, ttl: dt.timedelta) -> MigrationJob:
        job = self._jobs.get(job_id)
        if job is None:
            raise JobNotFound(f"no job {job_id}")
        if job.status not in LEASABLE:
            return job  # cancelled or rolled back: never leased again, nothing to write
        now = self._clock.now()
        if job.lease_owner != owner and lease_is_live(job.lease_owner, job.lease_expires_at, now):
            raise LeaseHeld(f"job {job_id} is held by {job.lease_owner} until {job.lease_expires_at}")
        leased = attrs.evolve(job, lease_owner=owner, lease_expires_at=now + ttl, not_resent_at=None)
        self._jobs[job_id] = leased
        return leased

    def note_not_resent(self, company_sso_id: str, shard: int | None = None) -> MigrationJob | None:
        job = next(
            (
                j
                for j in self._jobs.values()
                if j.company_sso_id == company_sso_id and j.status == IN_PROGRESS
            ),
            None,
        )
        if job is None:
            return None
        now = self._clock.now()
        if shard is None:
            noted = attrs.evolve(job, not_resent_at=now)
        elif 0 <= shard < len(job.shards) and job.shards[shard].status != COMPLETED:
            noted = _with_shard(job, attrs.evolve(job.shards[shard], not_resent_at=now))
        else:
            return None
        self._jobs[job.job_id] = noted
        return self._seen(noted)

    def save_progress(self, job: MigrationJob, owner: str, ttl: dt.timedelta | None) -> MigrationJob:
        stored = self._jobs.get(job.job_id)
        if stored is None:
            raise JobNotFound(f"no job {job.job_id}")
        if stored.lease_owner != owner:
            if stored.status in (ROLLING_BACK, ROLLED_BACK):
                raise rolled_back_under(stored, owner)  # the rollback's hold took the expired lease
            raise LeaseHeld.lost(f"job {job.job_id}", owner, stored.lease_owner, stored.lease_expires_at)
        if stored.status != IN_PROGRESS:
            # Ended meanwhile: the runner stops, nothing is written but the hand-back of its lease.
            stored = attrs.evolve(stored, lease_owner=None, lease_expires_at=None)
            self._jobs[job.job_id] = stored
            if stored.status == CANCELLED:
                return stored
            raise JobNotRunnable(
                f"job {job.job_id} is {stored.status}: it was ended while {owner} ran it (its lease had "
                "expired: a rollback, or another runner that finished it); nothing written"
            )
        saved = attrs.evolve(
            stored,
            last_audit_id=job.last_audit_id,
            rows_at_cursor=job.rows_at_cursor,
            tally=job.tally,
            enrichment=job.enrichment,
            updated_at=job.updated_at,
            status=job.status,
            finished_at=job.finished_at,
            halted_reason=job.halted_reason,
            lease_owner=owner if ttl is not None else None,
            lease_expires_at=self._clock.now() + ttl if ttl is not None else None,
        )
        self._jobs[job.job_id] = saved
        return saved

    def grow_source_mark(
        self, job_id: str, owner: str, mark: str, *, previous: str, shard: int | None = None
    ) -> MigrationJob:
        stored = self._jobs.get(job_id)
        if stored is None:
            raise JobNotFound(f"no job {job_id}")
        if shard is None:
            if stored.lease_owner != owner:
                if stored.status in (ROLLING_BACK, ROLLED_BACK):
                    raise rolled_back_under(stored, owner)
                raise LeaseHeld.lost(f"job {job_id}", owner, stored.lease_owner, stored.lease_expires_at)
        else:
            entry = _shard_of(stored, shard)
            if entry.lease_owner != owner:
                raise LeaseHeld.lost(
                    f"shard {shard} of job {job_id}", owner, entry.lease_owner, entry.lease_expires_at
                )
        if stored.status != IN_PROGRESS or stored.source_mark != previous:
            return stored  # ended meanwhile, or grown by another shard's run: nothing written
        grown = attrs.evolve(stored, source_mark=mark)
        self._jobs[job_id] = grown
        return grown

    def acquire_shard_lease(self, job_id: str, shard: int, owner: str, ttl: dt.timedelta) -> MigrationJob:
        job = self._jobs.get(job_id)
        if job is None:
            raise JobNotFound(f"no job {job_id}")
        entry = _shard_of(job, shard)
        if job.status not in LEASABLE:
            raise shard_not_leasable(job, shard)  # checked in the step that takes the lease
        if entry.status == COMPLETED:
            return job  # nothing left to write there: its lease is never taken
        now = self._clock.now()
        if entry.lease_owner != owner and lease_is_live(entry.lease_owner, entry.lease_expires_at, now):
            raise LeaseHeld(
                f"shard {shard} of job {job_id} is held by {entry.lease_owner} until {entry.lease_expires_at}"
            )
        taken = attrs.evolve(entry, lease_owner=owner, lease_expires_at=now + ttl, not_resent_at=None)
        leased = _with_shard(job, taken)
        self._jobs[job_id] = leased
        return leased

    def save_shard_progress(
        self, job_id: str, shard: JobShard, owner: str, ttl: dt.timedelta | None
    ) -> MigrationJob:
        stored = self._jobs.get(job_id)
        if stored is None:
            raise JobNotFound(f"no job {job_id}")
        entry = _shard_of(stored, shard.shard)
        if entry.lease_owner != owner:
            raise LeaseHeld.lost(
                f"shard {shard.shard} of job {job_id}", owner, entry.lease_owner, entry.lease_expires_at
            )
        if stored.status != IN_PROGRESS:
            # Cancelled, halted or completed meanwhile: the runner stops, nothing is written but
            # the hand-back of its lease, which would otherwise block a rollback or a repair.
            stored = _with_shard(stored, attrs.evolve(entry, lease_owner=None, lease_expires_at=None))
            self._jobs[job_id] = stored
            return stored
        saved = _with_shard(
            stored,
            attrs.evolve(
                entry,
                last_audit_id=shard.last_audit_id,
                rows_at_cursor=shard.rows_at_cursor,
                status=shard.status,
                tally=shard.tally,
                enrichment=shard.enrichment,
                halted_reason=shard.halted_reason,
                finished_at=shard.finished_at,
                lease_owner=owner if ttl is not None else None,
                lease_expires_at=self._clock.now() + ttl if ttl is not None else None,
            ),
        )
        self._jobs[job_id] = saved
        return saved


def _counts(job: MigrationJob) -> object:
    """What ``resumed`` fences on: the counts and cursors, a sharded job's shard by shard."""
    if job.shards:
        return tuple((s.tally, s.enrichment, s.last_audit_id) for s in job.shards)
    return (job.tally, job.enrichment, job.last_audit_id, job.rows_at_cursor)


def _shard_of(job: MigrationJob, shard: int) -> JobShard:
    if not 0 <= shard < len(job.shards):
        raise JobNotFound(f"job {job.job_id} has no shard {shard}")
    return job.shards[shard]


def _with_shard(job: MigrationJob, entry: JobShard) -> MigrationJob:
    shards = list(job.shards)
    shards[entry.shard] = entry
    return attrs.evolve(job, shards=tuple(shards))


class InMemoryIndexState:
    """Migration 035's indexes as a test sets them: all in place unless ``missing`` names some."""

    __slots__ = ("missing",)

    def __init__(self, missing: Iterable[str] = ()) -> None:
        self.missing = tuple(missing)

    def missing_indexes(self) -> tuple[str, ...]:
        return self.missing


class StaticFeatureFlags:
    """Flags switched on for a fixed set of accounts, or for every account with ``"*"``."""

    __slots__ = ("_enabled",)

    def __init__(self, enabled: Collection[str] | str = ()) -> None:
        self._enabled = frozenset({enabled} if isinstance(enabled, str) else enabled)

    def is_enabled(self, company_sso_id: str) -> bool:
        return "*" in self._enabled or company_sso_id in self._enabled


def _placed(created_at: object) -> TypeGuard[dt.datetime]:
    """Whether ``created_at`` is an aware ``datetime``: one a cutoff can be compared with."""
    return isinstance(created_at, dt.datetime) and created_at.utcoffset() is not None


class FixedClock:
    """A clock that only moves when told to: ``advance`` lets time pass (both readings move),
    ``set`` sets the wall clock alone (forward or back, as NTP or an operator steps it: ``monotonic``
    stays where it is)."""

    __slots__ = ("_now", "_ticks")

    def __init__(self, now: dt.datetime | None = None) -> None:
        self._now = as_utc(now or dt.datetime(2025, 1, 1, tzinfo=dt.UTC))
        self._ticks = 0.0

    def now(self) -> dt.datetime:
        return self._now

    def monotonic(self) -> float:
        return self._ticks

    def advance(self, delta: dt.timedelta | float) -> None:
        """Let a ``timedelta`` or a number of seconds pass; a negative one steps the wall clock
        back, as ``set`` does (``monotonic`` never goes back)."""
        step = delta if isinstance(delta, dt.timedelta) else dt.timedelta(seconds=delta)
        self._now += step
        self._ticks += max(step.total_seconds(), 0.0)

    def set(self, now: dt.datetime) -> None:
        self._now = as_utc(now)


def restored_log(log: ActivityLog, stored_metadata: object, run_keys: Collection[str]) -> ActivityLog:
    """``log`` with the keys of ``stored_metadata`` that are not ``run_keys`` kept (none when it is
    not a mapping): what ``MigratedLogsRestore.restore_migrated`` leaves stored."""
    others = (
        {key: value for key, value in stored_metadata.items() if key not in run_keys}
        if isinstance(stored_metadata, Mapping)
        else {}
    )
    return attrs.evolve(log, metadata={**log.metadata, **others})


def held_by_another_tool(external_id: str, holder_source_tag: object) -> WriteResult:
    """The result of a log refused for a key already stored, whose log has ``holder_source_tag``:
    ``skipped: duplicate_external_id`` when it is ours (a replay), else ``failed: write_error``
    (``HELD_BY_ANOTHER_TOOL``), as ``MongoActivityLogStore`` reports it."""
    if holder_source_tag == SOURCE_TAG:
        return WriteResult(external_id, "skipped", reasons.DUPLICATE_EXTERNAL_ID)
    return WriteResult(external_id, "failed", reasons.WRITE_ERROR, f"code 11000: {HELD_BY_ANOTHER_TOOL}")


def insert_unordered(
    logs: Iterable[ActivityLog], keys: dict[tuple[str, str], object], add: Callable[[ActivityLog], object]
) -> tuple[WriteResult, ...]:
    """An in-memory store's ``insert_batch``, as MongoDB's unordered insert against the partial
    unique index on (company_sso_id, external_id): a log MongoDB would refuse (``log_refusal``:
    past 16 MiB, nested past 100 levels) fails alone, ``write_error``; a log whose key is in
    ``keys`` (each stored key → the ``source_tag`` of the log holding it) is refused as
    ``held_by_another_tool`` says; every other log goes to ``add`` and its key into ``keys``. One
    result a log, in order."""
    results: list[WriteResult] = []
    for log in logs:
        key = (log.company_sso_id, log.external_id)
        if refusal := log_refusal(log):
            results.append(WriteResult(log.external_id, "failed", reasons.WRITE_ERROR, refusal))
            continue
        if key in keys:
            results.append(held_by_another_tool(log.external_id, keys[key]))
            continue
        add(log)
        keys[key] = log.source_tag
        results.append(WriteResult(log.external_id, "inserted"))
    return tuple(results)


def refuse_encoded(logs: Sequence[ActivityLog | EncodedLog], writer: object) -> list[ActivityLog]:
    """``logs``, all ``ActivityLog``; ``TypeError`` for an ``EncodedLog``: a writer without a
    ``log_encoder`` is never handed one (``ports.ActivityLogWriter``)."""
    plain: list[ActivityLog] = []
    for log in logs:
        if isinstance(log, EncodedLog):
            raise TypeError(
                f"{type(writer).__name__} has no log encoder, yet got a log encoded as {log.encoding}"
            )
        plain.append(log)
    return plain
