"""The run loop: one account's job from its cursor to the end, one durable step per batch.

Each page of 500 rows (keyset on ``id`` from ``job.last_audit_id``) is prepared, planned, looked
up (at most one call per port) and transformed; its rows are then cut into *steps* that hold at most 20
logs to write. After every step that wrote logs, and after a page's last step, the cursor (the id
of the step's last row: skipped and failed rows before it are covered too), the counts and the
renewed lease are saved in one atomic job write (``JobStore.save_progress``), guarded on the lease
owner. A step that wrote no log (all its rows skipped or failed) is saved with the next save: a
replay of it writes nothing, so saving it alone would only cost the CDP a round trip. So a crash
anywhere leaves a job whose cursor and counts describe exactly the rows behind it, the next run
replays at most one step that wrote logs (and the log-free steps after it on its page), and a
runner whose lease was taken over gets ``LeaseHeld`` instead of overwriting the job.

Counting rule for replays: a step replayed after a crash between its insert and its progress
write finds its logs already stored and gets ``duplicate_external_id`` for them. Such a
duplicate is one of our own, deterministic external ids — the record *is* in the timeline
exactly once — so the loop counts it as migrated. Counts after any number of crashes equal a
clean run's. (``migrate_batch`` itself still reports the duplicate, as its contract says.)

Entity names: when the ports include an ``EntityDirectory``, each page's association logs get
``linked_entity_name`` before they are written (one CRM call per entity type per page,
``_entity_names``), so nothing is read back and patched after a write. The counts go to
``job.enrichment`` (an ``EnrichmentTally``: the stored association logs, all complete, and the
names their inserts set), not to the outcome ``Tally``: naming is not a record's outcome and never
moves the failure rate. Logs already in the CDP (the live feed's, ours from before) are the
``enrich`` command's (``enrichment.enrich_existing``).

Halting (``halting.HaltRule``): batches are also cut at the rule's check points — every
``halt_sample`` rows counted since the job's ``halt_basis`` — so the counts at each check point
are the same in every run, however it was paged, batched or interrupted; the rule is checked
there (on the counts in hand, saved or not; a halt saves them) and at the end of the data. A
USMAN outage counts degraded actors (``actors_degraded``)
and halts past its own threshold, the reason naming USMAN.

Cancel: ``save_progress`` writes only while the job is in progress; a job cancelled meanwhile
comes back ``cancelled`` at the next save (a batch of logs, or a page's end) and the run stops
there (its last batch is written, its cursor not: a resume replays it, harmlessly). A rollback
under way on the account refuses the run. Before a step, when half the lease has passed since it
was last renewed (a page whose lookups were slow, a pause), the progress is saved first — that
renews the lease, or finds the job cancelled or rolled back (its lease having expired meanwhile)
before the step's batch is inserted, not after.

Pages: the loop reads its pages lazily and hands them to a ``PagePipeline`` (``pages``), which
prepares and transforms them — in this process by default (``InProcessPages``), or in worker
processes (``crm_audit_adapters.page_pool``) — and gives them back in id order. A pipeline of worker
processes is handed the writer's ``log_encoder`` (``EncodingLogWriter``): its workers then encode the
logs the loop will not change, and the loop writes those ``EncodedLog`` bytes as they are. The page's lookups
are made here, through the one cache, in page order. Steps are cut, written and saved by this loop
alone, as above, whatever the pipeline: a pipeline changes where the CPU work runs, not what is
written or when the cursor moves. Pages read ahead and not yet written when the loop ends (halt,
stop, cancel, an error) are dropped with the pipeline's generator; the cursor never covers them.
With a source that can tell a page by its ids (``ports.AuditPageIds``) and a pipeline that reads
pages itself (``ports.SpanPipeline``), the loop reads only each page's ids (``pages.PageSpan``,
the same keyset pages, byte budget included) and the pipeline reads the rows where it transforms
them; the steps are cut from the ids of the rows it read, so the cursor moves exactly as above.
A source that also tells where a page lies (``ports.PageExtents``: an export file's byte range)
puts that in the span, for the pipeline's readers to read that range alone.

Rows set aside: a source that sets rows aside as their ``Failed`` outcome instead of handing them
over (``ports.RowsSetAside``: a file's repeated id or unbuildable line) is asked for them after
each page it reads (or tells by its ids); they are counted with that page's rows in id order
(after a page's last row: as a page of their own), so the halt rule's check points, the job's
counts and ``on_outcomes`` see them exactly as a database source's rows that fail one by one. A
page of no rows with rows set aside is a source that paused in a run of them (a file's unreadable
lines): counted as such a page. Each page is asked after the highest id the one before handed (its
rows' or the rows set aside with it). A file may repeat an id: a step may end among one id's rows
(``cut_steps``), and the job saves with its cursor how many rows of that id it counted
(``MigrationJob.rows_at_cursor``). A resume with such rows reads from the id below its cursor and
passes over that many rows of the cursor's id (``_page_rows.CountedAtCursor``: an id's row first,
then its repeats in read order, as every read hands them), and drops the rows set aside below that
which a source hands again (a resume reading its file from the start): stopped, halted or crashed
anywhere and resumed, a run counts each row once, and no id's rows are held past their page.

Lookups: one ``LookupCache`` per run remembers the CRM users and SSO ids (and "not found") already
answered, so each user id and email is asked at most once per run; contacts are asked per page.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

from ..domain import Outcome
from ..errors import JobAlreadyRunning, JobNotFound
from ..jobs import IN_PROGRESS, MigrationJob
from ..ports import PagePipeline
from ..transformer import Transformer
from ._run_loop import RunLoop
from ._run_ports import RunPorts
from ._run_result import HaltPoint, RunResult
from ._source_check import check_mapping, check_source
from .pages import InProcessPages
from .safety import require_indexes
from .settings import RunSettings

__all__ = ["HaltPoint", "RunPorts", "RunResult", "RunSettings", "run_job", "run_loop"]


def _never() -> bool:
    return False


def run_job(
    company_sso_id: str,
    ports: RunPorts,
    transformer: Transformer,
    *,
    owner: str,
    settings: RunSettings | None = None,
    should_stop: Callable[[], bool] = _never,
    on_progress: Callable[[MigrationJob], None] | None = None,
    on_outcomes: Callable[[Sequence[Outcome]], None] | None = None,
    pipeline: PagePipeline | None = None,
) -> RunResult:
    """Start or resume the account's in-progress job; return it as left (completed, halted, or saved).

    ``on_outcomes`` receives each saved step's outcomes (write results folded in), in row order,
    once that step's progress is durable. A job that is not in progress is returned untouched.
    ``pipeline`` prepares and transforms the pages (default: ``InProcessPages``, in this process).
    ``LeaseHeld`` when another runner holds the job, or took it over mid-run (the job is then left
    as that runner wrote it); any other error (infrastructure, ``KeyboardInterrupt``, an untyped
    one) propagates as it was, after the lease is handed back.
    """
    settings = settings or RunSettings()
    job = ports.jobs.latest(company_sso_id)
    if job is None:
        raise JobNotFound(f"company {company_sso_id} has no migration job: trigger one first")
    if job.shards:
        raise ValueError(f"job {job.job_id} is sharded: run its shards (run_shard)")
    return run_loop(
        company_sso_id,
        ports,
        transformer,
        owner=owner,
        settings=settings,
        job=job,
        should_stop=should_stop,
        on_progress=on_progress,
        on_outcomes=on_outcomes,
        pipeline=pipeline,
    )


def run_loop(
    company_sso_id: str,
    ports: RunPorts,
    transformer: Transformer,
    *,
    owner: str,
    settings: RunSettings,
    job: MigrationJob,
    should_stop: Callable[[], bool] = _never,
    on_progress: Callable[[MigrationJob], None] | None = None,
    on_outcomes: Callable[[Sequence[Outcome]], None] | None = None,
    until_id: int | None = None,
    check_at_end: bool = True,
    pipeline: PagePipeline | None = None,
) -> RunResult:
    """The loop over ``job`` as ``ports.jobs`` presents it (the job, or one shard's view of it).

    ``until_id`` bounds the rows (a shard's range); ``check_at_end=False`` leaves the halt rule's
    end-of-data check to the caller (a sharded job decides it once, over every shard's rows).
    """
    if job.status != IN_PROGRESS:
        return RunResult(job)
    require_indexes(ports.indexes)
    held = ports.jobs.rollback_under_way(company_sso_id)
    if held is not None:
        # The rollback's fence: it checks for a newer job after holding the account, so a run
        # that passes here started before the hold and makes the rollback refuse (rollback.py).
        raise JobAlreadyRunning(f"company {company_sso_id} is being rolled back (job {held.job_id}): wait")
    leased_at = ports.clock.monotonic()  # the half lease counts from the sending (RunLoop._save)
    job = _lease(ports, job, owner, settings)
    if job.status != IN_PROGRESS:
        # Cancelled, halted or completed (a shard: completed) since it was read: nothing to write.
        # A lease taken on a halted or completed job is handed back; a cancelled one is not taken
        # (a shard's acquire_shard_lease raises JobNotRunnable for it instead).
        if job.lease_owner == owner:
            _release_quietly(ports, company_sso_id, owner)
        return RunResult(job)
    pipeline = pipeline or InProcessPages()
    loop = RunLoop(
        ports,
        transformer,
        owner,
        settings,
        should_stop,
        on_progress,
        on_outcomes,
        pipeline,
        leased_at=leased_at,
    )
    loop.bound(until_id, check_at_end=check_at_end)
    try:
        check_mapping(transformer, job)
        check_source(ports.source, job)
        return loop.run(job)
    except BaseException:
        # Whatever ends the loop here — a dependency down, the operator's abort, an untyped error
        # that will end the process — the lease is handed back first and the error goes on as it
        # was; else the account stays held for lease_seconds. A killed process cannot: it expires.
        _release_quietly(ports, company_sso_id, owner)
        raise


def _lease(ports: RunPorts, job: MigrationJob, owner: str, settings: RunSettings) -> MigrationJob:
    # The expiry is computed on the store's (the database's) clock, never this host's.
    return ports.jobs.acquire_lease(job.job_id, owner, settings.lease_ttl)


def _release_quietly(ports: RunPorts, company_sso_id: str, owner: str) -> None:
    # Hand the lease back from the job as stored (never from memory, which may be behind it),
    # so a rerun need not wait for it to expire. Best effort: the lease expires anyway. Through the
    # guarded progress write, never a plain save: a job cancelled or rolled back meanwhile keeps its
    # status (a job no longer in progress gets its lease handed back and JobNotRunnable, ignored).
    # Any failure of the hand-back is swallowed: the error that ended the run is the one to tell.
    with contextlib.suppress(Exception):
        stored = ports.jobs.latest(company_sso_id)
        if stored is not None and stored.lease_owner == owner:
            ports.jobs.save_progress(stored, owner, None)
