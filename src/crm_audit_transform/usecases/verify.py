"""Verify: prove an account's migration complete, and repair what is missing (docs/verify.md).

The account's in-scope audits are walked page by page exactly as the run walks them (keyset on
``id`` from the job's cutoff), with the same lookups and the same transformer, and each page is
compared with the CDP through a ``MigratedLogReader``:

    page ──▶ reader.migrated_logs(the page's external ids)        (one indexed $in per page)
         ──▶ prepare · plan · fetch_lookups · transform
         ──▶ per row: migrated | missing | pending | unexpected | skipped/failed ; duplicates
             (each stored log parsed on demand: one equal to its recomputed form may not be)
         ──▶ content of (a sample of) the migrated rows: drifted
         ──▶ seam: past_watermark per log (a stored log's customer that no row named is looked
             up then), overlap via reader.live_feed_candidates
         ──▶ --repair: MigrateBatch(the page's missing logs); drifted logs set back
    then ──▶ stray pass over reader.migrated_external_ids (against the set of walked ids)
         ──▶ job check; --repair writes the job's counts and hands its lease back

A row that would migrate and has no log is ``missing``, except past the cursor of a job whose run
has not ended for good (``verification.PENDING_STATES``: in progress, halted, cancelled): the run has
not reached it yet, so it is ``pending`` (``VerifyReport.pending``), not a lost record.

Memory is one page plus the walked audit ids (a bit each where dense, else 8 bytes: ``_id_set``),
and the capped finding lists.

Job consistency compares the job with the rows behind its cursor (``MigrationJob.is_behind``: ``id <=
last_audit_id``, or behind its own shard's cursor in a sharded job; of a file's id repeated at the
cursor, the job's or a shard's, only the ``rows_at_cursor`` rows counted there, ``_verify_cursor``):
``processed`` must equal those rows, ``migrated`` those of them that have a log, the totals of
``skipped`` and ``failed`` those of them without a migrated log that skip or fail now, the job's
own ``migrated + skipped + failed`` its ``processed`` (``outcomes``), and a ``completed`` job's
cursor must have reached the last of them that existed when it was triggered.

Repair writes through ``MigrateBatch`` (the run's write path: idempotent by the unique index) while
holding the job's lease, so no run writes the account meanwhile. It repairs missing rows behind
the cursor, and beyond it only for a ``completed`` job (otherwise the run will still reach them).
Counting into the job: ``migrated`` becomes the number of rows behind the cursor that have a log
once repaired, when that is more than the job counted (a repaired row first restores a log the job
had already counted); what is added is also added to ``processed`` while the job's ``processed``
falls short of the rows behind its cursor (rows committed behind the cursor, which the run never
saw). When every row behind the cursor is then accounted for, ``skipped`` and ``failed`` become the
walk's by reason (a row a halted pass failed and the repair wrote leaves ``failed``); otherwise the
rows written that the job had counted are taken off ``failed``, then ``skipped``: the outcomes
always add up to ``processed``. Rows beyond the cursor are outside the job's counts and stay so.
The counts are written once,
at the end, with the lease handed back. Because they are derived from what is stored rather than
incremented, a repair that dies before that write leaves the logs written and the counts short —
the next verify reports the job mismatch — and the next ``--repair`` counts them: it ends in the
state one uninterrupted repair reaches. A ``drifted`` log is set back to its recomputed log (every
field the run writes; other metadata keys kept) when the writer can (``MigratedLogsRestore``), but
one of another ``source_tag`` (another tool's, as the write path takes it) or whose recomputed
actor USMAN's outage degraded. ``unexpected``, ``overlap``, ``stray`` and ``duplicate`` are only
reported: they need a decision (rollback and re-migrate, or leave them). A second repair finds
nothing missing nor drifted and changes nothing.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Final

from attrs import field, frozen

from .._arguments import port_of
from ..enrichment.model import DEFAULT_MATCH_WINDOW
from ..errors import JobNotFound, JobNotRunnable, TenantMismatch
from ..halting import DEFAULT_HALT_THRESHOLD
from ..jobs import CANCELLED, COMPLETED, HALTED, IN_PROGRESS, MigrationJob
from ..ports import (
    ActivityLogWriter,
    AuditSource,
    Clock,
    ContactDirectory,
    EntityDirectory,
    IndexState,
    JobStore,
    MigratedLogReader,
    SsoDirectory,
    UserDirectory,
)
from ..ports.guards import CLOCK_METHODS
from ..transformer import Transformer
from ..verification import VerifyReport
from ._source_check import check_mapping, check_source
from ._verify_leases import hold_every_lease
from ._verify_walk import Walk
from .migrate_batch import MAX_BATCH_SIZE
from .safety import require_indexes
from .settings import DEFAULT_PAGE_SIZE

REPAIRABLE: Final = frozenset({IN_PROGRESS, HALTED, COMPLETED})
"""Job states repair writes into; a rolled-back or cancelled account is never written back."""

DEFAULT_KEEP: Final = 10_000
"""Ids kept per kind for the report; counts are always exact."""


@frozen
class VerifyPorts:
    """What verify reads; ``jobs`` for the job check; ``logs``, ``clock`` and ``indexes`` for repair;
    ``entities`` names each recomputed association log's linked entity as the run does, so the
    stored ``linked_entity_name`` is compared and a repaired log written named (None: the run's
    ports had none either, and its logs carry no name)."""

    source: AuditSource
    users: UserDirectory
    sso: SsoDirectory
    contacts: ContactDirectory
    reader: MigratedLogReader
    jobs: JobStore | None = None
    logs: ActivityLogWriter | None = None
    clock: Clock | None = field(default=None, validator=port_of("Clock", CLOCK_METHODS, optional=True))
    indexes: IndexState | None = None
    entities: EntityDirectory | None = None


@frozen
class VerifySettings:
    """``sample``: compare the content of at most this many random logs per page (None: all).

    ``keep``: ids kept per finding kind. ``match_window``: the enrichment match key's window.
    """

    page_size: int = DEFAULT_PAGE_SIZE
    sample: int | None = None
    repair: bool = False
    keep: int = DEFAULT_KEEP
    match_window: dt.timedelta = DEFAULT_MATCH_WINDOW
    batch_size: int = MAX_BATCH_SIZE
    lease_seconds: float = 120.0
    halt_threshold: float | None = DEFAULT_HALT_THRESHOLD
    """The run's halt rule's failed share: more failing rows than that is not clean (None: no verdict)."""

    @property
    def lease_ttl(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.lease_seconds)

    def __attrs_post_init__(self) -> None:
        if self.sample is not None and self.sample < 0:
            raise ValueError("sample must be None or at least 0")


def verify_account(
    company_sso_id: str,
    ports: VerifyPorts,
    transformer: Transformer,
    *,
    tenant: str | None = None,
    settings: VerifySettings | None = None,
    rng: random.Random | None = None,
    owner: str = "verify",
) -> VerifyReport:
    """Walk the account's in-scope audits and compare them with the CDP; repair when asked.

    ``tenant`` is the job's when the account has one (a different one is ``TenantMismatch``: an
    account is bound to one tenant); it is required otherwise. ``rng`` draws the ``sample``
    (required with one). Repair needs ``jobs``, ``logs``, ``clock`` and ``indexes``, migration 035's
    indexes (``IndexesMissing``) and a job: ``JobNotFound`` without one, ``LeaseHeld`` while a run
    holds it. A job over a source that marks what it holds (``MigrationJob.source_mark``: an
    export file) is checked against it first, as a run is: ``SourceChanged`` (``BAD_INPUT``) when the
    source is not the job's now, before a row is read or a lease taken. Infrastructure errors
    propagate (the lease, if taken, is handed back first).
    """
    settings = settings or VerifySettings()
    if settings.sample is not None and rng is None:
        raise ValueError("a sample needs an rng")
    job = ports.jobs.latest(company_sso_id) if ports.jobs is not None else None
    tenant = _tenant(company_sso_id, job, tenant)
    if job is not None:
        # Before the walk and the lease: a file rewritten since its job was made would be compared
        # row by row with logs of another file (differences, or a clean report of the wrong file).
        check_source(ports.source, job)
        # Verify compares with what these rules make: under another mapping than the job's, every
        # log would differ (or a repair rewrite them under these rules).
        check_mapping(transformer, job)
    if settings.repair:
        job = _take_lease(company_sso_id, ports, job, owner, settings)
    walk = Walk(company_sso_id, tenant, ports, transformer, settings, job, rng, owner)
    try:
        walk.run()
        walk.stray_pass()
        if settings.repair:
            walk.finish_repair()
        elif job is not None and ports.jobs is not None:
            # Without the lease nothing keeps a run from writing meanwhile: a job document changed
            # since it was read means the rows were compared with figures that moved (JobCheck.moved).
            walk.job_moved = ports.jobs.latest(company_sso_id) != job
    except BaseException:
        if settings.repair:
            walk.release_quietly()
        raise
    return walk.report()


def _tenant(company_sso_id: str, job: MigrationJob | None, tenant: str | None) -> str:
    if job is not None:
        if tenant is not None and tenant != job.tenant:
            raise TenantMismatch(
                f"company {company_sso_id} is bound to CRM tenant {job.tenant!r} (its job's), not {tenant!r}"
            )
        return job.tenant
    if tenant is None:
        raise JobNotFound(f"company {company_sso_id} has no job to take the tenant from: give the tenant")
    return tenant


def _take_lease(
    company_sso_id: str, ports: VerifyPorts, job: MigrationJob | None, owner: str, settings: VerifySettings
) -> MigrationJob:
    if ports.jobs is None or ports.logs is None or ports.clock is None or ports.indexes is None:
        raise ValueError("repair needs the jobs, logs, clock and indexes ports")
    if job is None:
        raise JobNotFound(f"company {company_sso_id} has no migration job: nothing to repair into")
    if job.status not in REPAIRABLE:
        # A rolled-back account's logs were removed on purpose: never write them back. A cancelled
        # job is resumed (trigger --resume) or replaced (--fresh) first, as run refuses it.
        raise JobNotRunnable(
            f"company {company_sso_id}'s latest job is {job.status}: nothing to repair into"
            + ("; trigger --resume or --fresh first" if job.status == CANCELLED else "")
        )
    require_indexes(ports.indexes)  # repair writes: exactly-once rests on the unique index
    return hold_every_lease(ports.jobs, job, owner, settings.lease_ttl)
