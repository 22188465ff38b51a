"""The migration's Celery tasks; messages carry ids only.

    crm_audit.migrate_account(company_sso_id)   run or resume the account's job under its lease
    crm_audit.migrate_shard(company_sso_id, shard)
                                                run or resume one shard of a sharded job, under
                                                that shard's lease; the last shard settles the job
    crm_audit.enrich_account(company_sso_id)    fill referents of the account's association logs
    crm_audit.verify_account(company_sso_id, sample=None, repair=False)
                                                prove the account complete; the report as JSON

Retries, with exponential backoff and jitter, are for infrastructure only: a dependency that is
down (``Unavailable``: CRM, CDP or USMAN) or a lease another runner holds (``LeaseHeld``: the
redelivered task of a worker that died waits for the dead worker's lease to expire). A run's wait
for a lease has no last try (``_wait_for_lease``): a copy of a live task waits as long as the job
runs elsewhere, so a job never loses its last message while its lease can still expire; a
``verify --repair`` waits on the same way for the run holding the job to end. Guards,
configuration errors and a CRM query no retry changes (``SourceQueryFailed``) fail the task at once:
retrying cannot fix them; so does a message whose
arguments have the wrong type (``_checked_company``, ``_checked_verify_options``), before anything
is built or written. A worker asked to shut down
stops its run after the current batch and sends the task again, so the rest of the account goes
to another worker instead of being acknowledged unfinished (``ShutdownFlag``). Every re-send
waits for a broker that is down (Celery's publish retry policy), and one the broker still does not
take hands the running message back instead of dropping it (``resend``).
"""

from __future__ import annotations

import contextlib
import mmap
import os
import secrets
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Final

from celery import Celery, Task
from celery.exceptions import Retry
from celery.signals import task_retry, worker_process_init, worker_shutting_down
from structlog.typing import FilteringBoundLogger

from crm_audit_transform.errors import ConfigError, JobNotFound, LeaseHeld, Unavailable
from crm_audit_transform.usecases.shards import shard_view
from crm_audit_transform.verification import SAMPLE_MAX, VerifyReportDocument

from ..bootstrap import Runtime
from ..lease_owners import lease_owner
from ..observability import JobObserver, migration_logger, process_metrics
from .account_run import run_account, run_account_shard
from .resend import ResendingTask, resend

MIGRATE_ACCOUNT: Final = "crm_audit.migrate_account"
MIGRATE_SHARD: Final = "crm_audit.migrate_shard"
ENRICH_ACCOUNT: Final = "crm_audit.enrich_account"
VERIFY_ACCOUNT: Final = "crm_audit.verify_account"
MAX_RETRIES: Final = 12
RETRY_BACKOFF_MAX_S: Final = 600

_RETRYING: Final[dict[str, object]] = {
    "bind": True,
    "base": ResendingTask,  # a retry the broker does not take hands the message back (resend)
    "shared": False,  # each app gets its own tasks, bound to its own runtime
    "acks_late": True,
    "reject_on_worker_lost": True,
    "autoretry_for": (Unavailable,),
    "retry_backoff": True,
    "retry_backoff_max": RETRY_BACKOFF_MAX_S,
    "retry_jitter": True,
    "max_retries": MAX_RETRIES,
}


class _ProcessRuntime:
    """One ``Runtime`` per worker process, built by its first task (after any fork).

    Every task of a process must run on the thread that built it: a task on another thread (a
    ``threads``, ``gevent`` or ``eventlet`` pool, which patch thread identity per greenlet) would
    share the process's lease owner and CRM connection with a task running beside it, so it fails
    with ``ConfigError`` (not retried) before it touches anything.
    """

    __slots__ = ("_factory", "_pid", "_runtime", "_thread")

    def __init__(self, factory: Callable[[], Runtime]) -> None:
        self._factory = factory
        self._runtime: Runtime | None = None
        self._pid = 0
        self._thread = 0

    def get(self) -> Runtime:
        if self._runtime is None or self._pid != os.getpid():
            self._runtime = self._factory()
            self._pid = os.getpid()
            self._thread = threading.get_ident()
        elif self._thread != threading.get_ident():
            raise ConfigError(
                [
                    (
                        "worker_pool",
                        "the migration's tasks run one at a time per process: start the worker with "
                        "--pool prefork (--concurrency N) or --pool solo, not threads, gevent or eventlet",
                    )
                ]
            )
        return self._runtime


class ShutdownFlag:
    """Whether this worker was asked to shut down, as seen by the process running the task.

    Celery's warm shutdown (SIGTERM to the worker) fires ``worker_shutting_down`` in the main
    process only; a prefork child runs the task and never hears of it, and would run the account
    to its end. So the flag is one byte of anonymous shared memory, made before the pool forks:
    the main process sets it and every child reads it. A prefork child that gets the SIGTERM
    itself (sent to the whole process group, as systemd does) would exit at once (billiard's
    handler): while it runs a task, its first SIGTERM stops the run instead, and a second one ends
    it as before (``sigterm_stops``).
    """

    __slots__ = ("_child", "_local", "_parent_pid", "_shared")

    def __init__(self) -> None:
        self._shared = mmap.mmap(-1, 1)
        self._local = False
        self._child = False
        self._parent_pid = os.getpid()

    def set(self) -> None:
        """Every process of the worker stops its run after the current batch."""
        self._shared[0] = 1

    def is_set(self) -> bool:
        return self._local or self._shared[0] != 0

    def in_pool_child(self) -> None:
        """Called in each prefork child as it starts (``worker_process_init``).

        The solo pool sends the same signal in the worker's main process, where SIGTERM is Celery's
        warm shutdown: taking it over there swallowed the shutdown (the task was handed back, the
        worker took the next task and ran on, and a second SIGTERM was swallowed too). Only a
        process other than the one that made the flag (before any fork) is a pool child.
        """
        self._child = os.getpid() != self._parent_pid

    @contextlib.contextmanager
    def sigterm_stops(self) -> Iterator[None]:
        """In a prefork child, for the task's duration: the first SIGTERM stops the run after its
        batch, the next one gets the handler that was there (billiard's exit). Elsewhere (the solo
        pool's main process, whose SIGTERM is Celery's warm shutdown) nothing changes."""
        if not self._child or threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.getsignal(signal.SIGTERM)
        self._local = False

        def on_term(signum: int, _frame: object) -> None:
            self._local = True
            signal.signal(signum, previous)

        signal.signal(signal.SIGTERM, on_term)
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, previous)


def _checked_company(company_sso_id: object) -> str:
    """The message's account, checked before anything is built: a message is JSON, and a number,
    ``null`` or a list there named no account, yet reached the job store's queries and ended in an
    untyped ``TypeError`` (or a query for a job no account has). ``JobNotFound``, never retried, as
    for a shard that is no integer: no account's job is named."""
    if isinstance(company_sso_id, str) and company_sso_id:
        return company_sso_id
    kind = "an empty string" if company_sso_id == "" else type(company_sso_id).__name__
    raise JobNotFound(f"the task's company_sso_id is {kind}, not a company SSO id (a non-empty string)")


def _checked_verify_options(sample: object, repair: object) -> None:
    """``verify_account``'s keyword arguments, checked before anything is built: ``repair`` a JSON
    boolean (a string ``"false"`` was truthy, and repaired), ``sample`` null or an integer from 0 to
    ``SAMPLE_MAX`` (else a ``TypeError`` or ``ValueError`` deep in the walk; the service's bounds,
    ``verification.check_draw``). ``ConfigError`` naming each
    key, never retried: the sender must change its message."""
    problems: list[tuple[str, str]] = []
    if sample is not None and (type(sample) is not int or not 0 <= sample <= SAMPLE_MAX):
        found = "an integer out of that range" if type(sample) is int else type(sample).__name__
        problems.append(("sample", f"null or an integer from 0 to {SAMPLE_MAX}, not {found}"))
    if not isinstance(repair, bool):
        problems.append(("repair", f"true or false, not {type(repair).__name__}"))
    if problems:
        raise ConfigError(problems, source=f"the {VERIFY_ACCOUNT} message")


_RUN_WAITS: Final = (
    "another worker holds this account's lease: this copy waits on, to take the job over if that lease "
    "expires, and ends when the job no longer runs"
)
_REPAIR_WAITS: Final = (
    "a runner holds this account's job, which verify --repair writes whole: this task waits on until "
    "that lease is handed back or expires, then verifies and repairs"
)


def _wait_for_lease(
    task: Task,
    exc: LeaseHeld,
    countdown: float,
    log: FilteringBoundLogger,
    *,
    why: str = _RUN_WAITS,
    **where: object,
) -> Retry:
    """The retry of a run (or a ``verify --repair``) that met another runner's lease on its account
    (or shard), in ``countdown`` seconds (a lease's length): what the task raises.

    Its first ``MAX_RETRIES`` waits are Celery retries (``task_waits_for_lease``, INFO). Then, where
    a retry would fail the task (``ERROR ... raised unexpected: LeaseHeld``, though the account is
    healthy: a redelivered copy of a task still running, whose worker renews the lease each batch),
    the task is sent again with its retry count at 0 and a WARNING (``task_waits_on_for_lease``)
    says the account's lease is held by another worker. It never gives up: that copy may be the
    job's only message left, and were it dropped, the runner's death would leave the job with none
    (``status --all``: ``runner expired``) while its lease expires. So the copy waits until the job
    no longer runs (it then finds it completed, halted or cancelled, and ends with its status) or
    until the lease expires and it takes the job over from its cursor; the lease keeps exactly one
    runner at a time. The count starts again so that a copy that takes a job over has its full
    ``Unavailable`` retries. ``where`` names the account (and shard) in the log lines, ``why`` says
    in the WARNING what the task waits for.

    ``verify_account`` with ``repair`` waits the same way (``_REPAIR_WAITS``): a repair writes the
    job document whole, so it waits while a runner holds any of its leases. It does not fail with
    that ERROR past its retries, since the account is healthy and only being run: it waits on until
    the run hands the lease back (or dies and the lease expires), then verifies and repairs.
    """
    request = task.request
    if request.retries < MAX_RETRIES:
        log.info("task_waits_for_lease", task_id=request.id, **where)
        retry: Retry = task.retry(exc=exc, countdown=countdown)
        return retry
    log.warning(
        "task_waits_on_for_lease",
        task_id=request.id,
        waits=request.retries,
        why=why,
        **where,
    )
    again = task.signature_from_request(request, countdown=countdown, retries=0)
    if not request.is_eager:
        resend(task, again)
    return Retry(exc=exc, when=countdown, is_eager=request.is_eager, sig=again)


def _hand_back(task: Task) -> Retry:
    """The task sent again at once for the next worker, after its run stopped on a shutdown (the
    run saved its cursor and handed its lease back): what the task raises.

    Its retry count is kept, not counted up: a handback is no failed try. With ``task.retry`` every
    shutdown (a deploy, a scale-in) used one of the ``MAX_RETRIES`` meant for outages, and the one
    past them raised ``MaxRetriesExceededError``: the message was acknowledged with the account
    unfinished and no message left to run it (``status --all``: ``runner none``).
    """
    request = task.request
    again = task.signature_from_request(request, countdown=0, retries=request.retries)
    if not request.is_eager:
        resend(task, again)
    return Retry(when=0, is_eager=request.is_eager, sig=again)


def _noting_not_resent(runtimes: _ProcessRuntime, log: FilteringBoundLogger) -> Callable[[Task], None]:
    """A run task's ``note_not_resent``: its account's job (or the message's shard) marked in the job
    store (``JobStore.note_not_resent``), so that ``status`` tells a job waiting for a message handed
    back (``runner not-resent``) from one whose message is simply gone (``none``).

    Called while the task hands its message back (``resend.resend_refused``): whatever fails here (the
    CDP down as well, a message whose arguments named no account) is logged as a WARNING and
    swallowed, never raised, since an error in place of the ``Reject`` would have Celery acknowledge
    the account's only message.
    """

    def note_not_resent(task: Task) -> None:
        args = list(task.request.args or [])
        company = args[0] if args and isinstance(args[0], str) and args[0] else None
        shard = args[1] if len(args) > 1 and type(args[1]) is int else None
        if company is None:
            return
        try:
            runtimes.get().jobs.note_not_resent(company, shard)
        except Exception as exc:  # any at all (see above): the Reject must be what the task raises
            log.warning(
                "task_not_resent_unrecorded",
                task=task.name,
                company_sso_id=company,
                shard=shard,
                error=type(exc).__name__,
            )

    return note_not_resent


def _owner(task: Task) -> str:
    # Per process, not per task id: a duplicate delivery to a live worker must meet the lease. One
    # process runs one task at a time (_ProcessRuntime refuses a second thread), so no two runs share it.
    return f"{lease_owner()}:celery"


def register_tasks(app: Celery, runtime_factory: Callable[[], Runtime]) -> None:
    """Register the tasks on ``app``; each worker process builds its runtime on first use."""
    runtimes = _ProcessRuntime(runtime_factory)
    stopping = ShutdownFlag()
    log = migration_logger()

    def on_shutdown(**_: object) -> None:
        stopping.set()

    def on_child_start(**_: object) -> None:
        stopping.in_pool_child()

    def on_retry(request: object = None, **_: object) -> None:
        process_metrics().retries.labels(getattr(request, "task", "unknown")).inc()

    worker_shutting_down.connect(on_shutdown, weak=False)
    worker_process_init.connect(on_child_start, weak=False)
    task_retry.connect(on_retry, weak=False)

    noting = _noting_not_resent(runtimes, log)

    @app.task(name=MIGRATE_ACCOUNT, note_not_resent=noting, **_RETRYING)
    def migrate_account(task: Task, company_sso_id: str) -> dict[str, object]:
        company_sso_id = _checked_company(company_sso_id)
        runtime = runtimes.get()
        observer = JobObserver(log)
        job = runtime.service.latest_job(company_sso_id)
        if job is not None:
            observer.started(job)
        try:
            with stopping.sigterm_stops():
                result = run_account(
                    runtime,
                    company_sso_id,
                    owner=_owner(task),
                    should_stop=stopping.is_set,
                    on_progress=observer,
                )
        except LeaseHeld as exc:
            lease = runtime.settings.run.lease_seconds
            raise _wait_for_lease(task, exc, lease, log, company_sso_id=company_sso_id) from exc
        if result.stopped:
            log.info("task_handed_back", company_sso_id=company_sso_id, job_id=result.job.job_id)
            raise _hand_back(task)
        return {"company_sso_id": company_sso_id, "job_id": result.job.job_id, "status": result.job.status}

    @app.task(name=MIGRATE_SHARD, note_not_resent=noting, **_RETRYING)
    def migrate_shard(task: Task, company_sso_id: str, shard: int) -> dict[str, object]:
        company_sso_id = _checked_company(company_sso_id)
        if isinstance(shard, bool) or not isinstance(shard, int):
            # A message is JSON: `true` passed the range check as 1 but named the store's path
            # "shards.True", so its lease never took and the task was retried as LeaseHeld for nothing.
            raise JobNotFound(f"company {company_sso_id}: {shard!r} is no shard number (an integer)")
        runtime = runtimes.get()
        observer = JobObserver(log, shard=shard)
        job = runtime.service.latest_job(company_sso_id)
        if job is not None and 0 <= shard < len(job.shards):
            observer.started(shard_view(job, shard))
        try:
            with stopping.sigterm_stops():
                result = run_account_shard(
                    runtime,
                    company_sso_id,
                    shard,
                    owner=_owner(task),
                    should_stop=stopping.is_set,
                    on_progress=observer,
                )
        except LeaseHeld as exc:
            lease = runtime.settings.run.lease_seconds
            raise _wait_for_lease(task, exc, lease, log, company_sso_id=company_sso_id, shard=shard) from exc
        whole = result.job
        process_metrics().set_job_state(company_sso_id, whole.status)
        if result.stopped:
            log.info("task_handed_back", company_sso_id=company_sso_id, job_id=whole.job_id, shard=shard)
            raise _hand_back(task)
        return {
            "company_sso_id": company_sso_id,
            "job_id": whole.job_id,
            "shard": shard,
            "shard_status": whole.shards[shard].status,
            "status": whole.status,
        }

    @app.task(name=ENRICH_ACCOUNT, **_RETRYING)
    def enrich_account(task: Task, company_sso_id: str) -> dict[str, object]:
        company_sso_id = _checked_company(company_sso_id)
        runtime = runtimes.get()
        report = runtime.service.enrich(company_sso_id)
        log.info("enriched", company_sso_id=company_sso_id, patched=report.patched, keys=report.keys_set)
        return {"company_sso_id": company_sso_id, "patched": report.patched, "keys_set": report.keys_set}

    @app.task(name=VERIFY_ACCOUNT, **_RETRYING)
    def verify_account(
        task: Task, company_sso_id: str, sample: int | None = None, repair: bool = False
    ) -> VerifyReportDocument:
        # Read-only, and a repair is idempotent: a redelivery after a lost worker changes nothing twice.
        company_sso_id = _checked_company(company_sso_id)
        _checked_verify_options(sample, repair)
        runtime = runtimes.get()
        try:
            report = runtime.service.verify(
                company_sso_id,
                sample=sample,
                seed=secrets.randbits(63),
                repair=repair,
                owner=_owner(task),
                require_binding=True,
            )
        except LeaseHeld as exc:  # --repair on a job a run holds: wait for it like a run would
            lease = runtime.settings.run.lease_seconds
            raise _wait_for_lease(
                task, exc, lease, log, why=_REPAIR_WAITS, company_sso_id=company_sso_id
            ) from exc
        log.info(
            "verified",
            company_sso_id=company_sso_id,
            clean=report.clean,
            repaired=report.repaired,
            restored=report.restored,
            restore_refused=report.restore_refused,
            **{f"outstanding_{kind}": n for kind, n in report.outstanding.items()},
        )
        return report.to_json()
