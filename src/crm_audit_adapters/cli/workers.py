"""``worker`` and ``enqueue``: the migration on Celery workers (extra: ``crm-audit-transform[celery]``).

    crm-audit-migrate worker [--metrics-port 9108] [celery worker options: --pool, -c, -n, -Q, …]
    crm-audit-migrate enqueue --company-sso-id ID [--tenant SCHEMA] [--shards N]
                                                                         trigger (same guards) + send
    crm-audit-migrate enqueue --all-enabled                              every bound account the flag enables

Celery is imported only by these commands, so the runner works without the extra.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
from typing import Any

import click

from crm_audit_transform.errors import (
    ConfigError,
    ConnectionRejected,
    CrmAuditError,
    FlagDisabled,
    JobAlreadyRunning,
    TenantMismatch,
    Unavailable,
)
from crm_audit_transform.jobs import COMPLETED, IN_PROGRESS, MigrationJob

from ..bootstrap import Runtime
from ..redaction import redact, scrub
from . import exit_codes
from .main import cli
from .options import (
    METRICS_PORT,
    date_range_start_option,
    emit,
    json_option,
    keep_for_error,
    refuse_future_cutoff,
    stored_non_empty,
)
from .state import CliState

MAX_SHARDS = 64
"""More shards than workers only queue; 64 is far past what one account's PostgreSQL reads bear."""
_PROCESS_POOLS = frozenset({"prefork", "processes", "solo"})
"""Pools that run one task at a time per process: the only ones the tasks accept (docs/scale-out.md)."""


def _pool(args: list[str]) -> str:
    for index, arg in enumerate(args):
        if arg in ("-P", "--pool") and index + 1 < len(args):
            return args[index + 1]
        if arg.startswith("--pool="):
            return arg.split("=", 1)[1]
        if arg.startswith("-P") and len(arg) > 2:
            return arg[2:]
    return "prefork"


def _prepare_multiprocess_metrics() -> str | None:
    """Set ``PROMETHEUS_MULTIPROC_DIR``; return the directory when this made it (a temporary one).

    prometheus_client picks per-process or file-backed values when it is imported: the directory is
    set first, so every prefork child writes where the exporter reads.
    """
    import tempfile

    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    directory = given or tempfile.mkdtemp(prefix="crm-audit-metrics-")
    os.makedirs(directory, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    return None if given else directory


def _celery_app(state: CliState) -> Any:
    try:
        from ..celery import make_app
    except ImportError as exc:  # the optional extra is missing
        raise ConfigError([("celery", "not installed: pip install 'crm-audit-transform[celery]'")]) from exc
    return make_app(state.settings, runtime_factory=state.runtime)


def _require_broker(app: Any, state: CliState) -> None:
    """Build the result backend and connect to the broker once, before any trigger: a backend Celery
    cannot build (``ConfigError``), a broker refusing the login (``ConnectionRejected``) or a dead
    broker (``UNAVAILABLE``) leaves no job row behind."""
    from kombu.exceptions import OperationalError

    settings = state.settings
    if settings.result_backend:
        try:
            app.backend  # noqa: B018 -- built here, where its errors are configuration, not later
        except Exception as exc:  # Celery's own checks: ImproperlyConfigured, ValueError, ImportError
            why = scrub(" ".join(str(exc).split()) or type(exc).__name__, settings.secrets())
            raise ConfigError([("result_backend", f"Celery cannot use it: {why}")]) from None
    try:
        _connect_once(app, settings.broker_url, "nothing was enqueued")
    except (OperationalError, OSError) as exc:
        where = redact(settings.broker_url)
        message = f"the broker at {where} did not answer ({type(exc).__name__}): nothing was enqueued"
        raise exit_codes.CliError("UNAVAILABLE", message) from None


BROKER_ANSWER_TIMEOUT_S = 10.0
"""How long the one check of the broker (``_connect_once``) waits for a connection and for each
answer. Without it, a broker that took the connection and never answered (a port that is not
Redis's, a proxy or firewall holding the connection) held ``enqueue``, and ``worker`` before Celery
started, for ever: redis-py reads its answer with no timeout. Only this check's connection has it:
the worker's own keep Celery's options (a consumer's blocking read must not time out)."""


def _connect_once(app: Any, broker_url: str | None, consequence: str) -> None:
    """One connection to the broker; ``ConnectionRejected`` when it refuses the login, else the
    driver's error (kombu's ``OperationalError``, or a timeout after ``BROKER_ANSWER_TIMEOUT_S``)
    for the caller to judge."""
    from kombu.exceptions import OperationalError

    bounded = {"socket_timeout": BROKER_ANSWER_TIMEOUT_S, "socket_connect_timeout": BROKER_ANSWER_TIMEOUT_S}
    try:
        with app.connection_for_write(transport_options=bounded) as connection:
            connection.ensure_connection(max_retries=1, interval_start=0)
    except (OperationalError, OSError) as exc:
        refused = _login_refused(exc)
        if refused is not None:
            message = f"the broker at {redact(broker_url)} refused the login ({refused}): {consequence}"
            raise ConnectionRejected([("broker_url", message)]) from None
        raise


def _login_refused(error: BaseException) -> str | None:
    """The name of the broker driver's authentication error in ``error``'s chain, if there is one.

    kombu wraps it in ``OperationalError`` and counts it among the errors worth retrying; a wrong
    password stays wrong, so it is configuration (exit 3), never an outage.
    """
    refusals: list[type[BaseException]] = []
    with contextlib.suppress(ImportError):
        from redis.exceptions import AuthenticationError

        refusals.append(AuthenticationError)  # wrong password, unknown user, NOAUTH
    with contextlib.suppress(ImportError):
        from amqp.exceptions import AccessRefused  # type: ignore[import-untyped]

        refusals.append(AccessRefused)
    seen: BaseException | None = error
    for _ in range(16):  # a chain, not a cycle
        if seen is None:
            return None
        if isinstance(seen, tuple(refusals)):
            return type(seen).__name__
        seen = seen.__cause__ or seen.__context__
    return None


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option(
    "--metrics-port", type=METRICS_PORT, help="Serve Prometheus /metrics on this port (all pool processes)."
)
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def worker(state: CliState, metrics_port: int | None, celery_args: tuple[str, ...]) -> None:
    """Start a Celery worker with the migration's tasks; options after it go to `celery worker`."""
    args = list(celery_args)
    pool = _pool(args)
    if pool not in _PROCESS_POOLS:
        # A run's lease owner is its process, and a process's CRM connection and lookup caches serve
        # one task at a time: tasks running side by side in one process would share both.
        raise click.UsageError(
            f"--pool {pool} is not supported: the migration runs one task per process at a time; "
            "use --pool prefork (the default, with --concurrency N) or --pool solo"
        )
    made = _prepare_multiprocess_metrics() if metrics_port is not None and pool != "solo" else None
    try:
        _start_worker(state, metrics_port, args)
    finally:
        # The worker's own temporary directory of metric values: each start left one behind, and a
        # directory given in PROMETHEUS_MULTIPROC_DIR is the caller's to keep or wipe.
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)


def _start_worker(state: CliState, metrics_port: int | None, args: list[str]) -> None:
    """The worker's checks, its exporter, then Celery's worker until it ends (``_run_worker``)."""
    app = _celery_app(state)
    from kombu.exceptions import OperationalError

    from ..celery.app import require_redis_transport

    require_redis_transport(app)  # before it connects: a broker whose requeue the tasks do not rely on
    # A refused login stays refused: exit 3 now, not a worker retrying it for ever. A broker that is
    # down is left to Celery, which waits for it (broker_connection_retry_on_startup).
    with contextlib.suppress(OperationalError, OSError):
        _connect_once(app, state.settings.broker_url, "the worker did not start")
    _require_cdp_indexes(state)
    from ..observability import configure_logging

    configure_logging()
    if metrics_port is not None:
        from celery.signals import worker_process_shutdown

        from ..observability.exporter import serve_metrics

        def forget_process(pid: int | None = None, **_: object) -> None:
            if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
                from prometheus_client import multiprocess

                multiprocess.mark_process_dead(pid or os.getpid())  # type: ignore[no-untyped-call]

        worker_process_shutdown.connect(forget_process, weak=False)
        serve_metrics(metrics_port)
    _run_worker(app, args)


def _run_worker(app: Any, args: list[str]) -> None:
    """``celery worker`` with ``args``; ``CliError`` (``INTERNAL``, exit 1) when it stopped on an error.

    ``worker_main`` drops the worker's exit status: a worker that Celery stopped on an unrecoverable
    error (``CRITICAL … Unrecoverable error``, ``celery worker``'s exit 1) — a pidfile it cannot
    write, or kombu failing to reconnect after the broker restarted while a task was held — would
    exit 0, as if shut down, so a supervisor that restarts a failed process (systemd's
    ``Restart=on-failure``) would leave it stopped and the queue without that worker.

    A shutdown asked for by a signal (``worker_shutting_down``) ends with exit 0, a Ctrl-C's too:
    Celery gives SIGINT's warm shutdown (and the cold one of a second Ctrl-C) exit status 1, which
    ended here as that error line, "its CRITICAL line above says which", with no such line.
    """
    from celery.signals import worker_init, worker_shutting_down

    started: list[Any] = []  # each WorkController Celery builds: the last one ran
    asked: list[object] = []  # the signal of each shutdown asked for (Celery's name: "SIGINT", …)

    def keep(sender: Any, **_: object) -> None:
        started.append(sender)

    def shutting_down(sig: object = None, **_: object) -> None:
        asked.append(sig)

    worker_init.connect(keep, weak=False)
    worker_shutting_down.connect(shutting_down, weak=False)
    try:
        app.worker_main(["worker", *args])
    finally:
        worker_init.disconnect(keep)
        worker_shutting_down.disconnect(shutting_down)
    status = started[-1].exitcode if started else None
    if status and not asked:
        raise exit_codes.CliError(
            "INTERNAL",
            f"the Celery worker stopped on an error (its exit status {status}; its CRITICAL line above "
            "says which): start it again",
        )


def _require_cdp_indexes(state: CliState) -> None:
    """Before the worker starts: its CDP database holds migration 035's indexes, else ``ConfigError``.

    A worker whose ``CRM_AUDIT_MONGO_DATABASE`` names another database (a typo) would take tasks, find
    no job there and fail each at once (``JOB_NOT_FOUND``, not retried): the messages acknowledged,
    and the jobs in the CDP's database left in progress with nothing to run them. Every database the
    migration writes to has had ``indexes up``, so one without the indexes is refused here (exit 3),
    naming it. A CDP that does not answer is left to the tasks, which
    retry an outage, as a broker that is down is left to Celery. The check's client is closed
    before Celery forks its pool (each process builds its own on its first task).
    """
    settings = state.settings
    try:
        with state.runtime() as runtime:
            missing = runtime.indexes.missing_indexes()
    except Unavailable:
        return
    if missing:
        why = (
            f"database {settings.mongo_database!r} lacks migration 035's indexes ({', '.join(missing)}): "
            "every task there would find no job and fail; check CRM_AUDIT_MONGO_DATABASE, or run "
            "`crm-audit-migrate indexes up` first if this is the CDP's database"
        )
        raise ConfigError([("mongo_database", why)], source="the worker's CDP")


@cli.command()
@click.option(
    "--company-sso-id", "company", callback=stored_non_empty, help="The account to trigger and send."
)
@click.option(
    "--tenant",
    callback=stored_non_empty,
    help="The CRM tenant schema (default: the account's binding, CRM_AUDIT_TENANTS).",
)
@date_range_start_option(
    "Cutoff (UTC unless an offset is given) for a new job; default: the oldest in-scope audit."
)
@click.option("--all-enabled", is_flag=True, help="Every account bound to a tenant that the flag enables.")
@click.option(
    "--shards",
    type=click.IntRange(1, MAX_SHARDS),
    default=1,
    show_default=True,
    help="Split a new job into N id ranges, one migrate_shard task each (docs/scale-out.md).",
)
@json_option
@click.pass_obj
def enqueue(
    state: CliState,
    company: str | None,
    tenant: str | None,
    date_range_start: dt.datetime | None,
    all_enabled: bool,
    shards: int,
    as_json: bool,
) -> None:
    """Trigger each account (the same guards as `trigger`) and send its tasks.

    One migrate_account task per account, or with a sharded job one migrate_shard task per shard
    not yet completed. An account whose job is already in progress is sent again (a resume, with
    the shards it was triggered with); one line per task (with --json, one document listing the
    tasks sent and the accounts refused). Exit 4 when any account was refused.
    """
    if all_enabled == (company is not None):
        raise click.UsageError("give exactly one of --company-sso-id and --all-enabled")
    cutoff = date_range_start  # in UTC already (the option's callback)
    sent: list[dict[str, object]] = []
    refused: list[dict[str, str]] = []
    exits: list[int] = []
    try:
        _enqueue(state, company, tenant, cutoff, all_enabled, shards, as_json, sent, refused, exits)
    except BaseException:
        # The error document then lists what was sent before the step that failed.
        keep_for_error({"sent": sent, "refused": refused})
        raise
    if as_json:
        emit("enqueue", {"sent": sent, "refused": refused}, as_json)
    if exits:
        # A guard's refusal is exit 4; an account that failed otherwise (a CRM outage: 6, its
        # configuration: 3) gives its own exit code, the first such account's.
        raise click.exceptions.Exit(next((e for e in exits if e != exit_codes.REFUSED), exit_codes.REFUSED))


def _enqueue(
    state: CliState,
    company: str | None,
    tenant: str | None,
    cutoff: dt.datetime | None,
    all_enabled: bool,
    shards: int,
    as_json: bool,
    sent: list[dict[str, object]],
    refused: list[dict[str, str]],
    exits: list[int],
) -> None:
    """Trigger and send each account, appending to ``sent`` and ``refused`` as it goes.

    An account that fails with one of the library's errors (a guard, an unknown tenant, a CRM
    outage on its reads) is listed under ``refused`` with its code, and the next one is tried.
    """
    app = _celery_app(state)
    _require_broker(app, state)
    from kombu.exceptions import OperationalError

    from ..celery import MIGRATE_ACCOUNT, MIGRATE_SHARD
    from ..observability.logs import logging_to_stderr

    # A publish that waits for the broker logs a WARNING line (``broker_publish_waits``): on stderr,
    # as the worker's, where structlog's default wrote it to stdout, into --json's document.
    with state.runtime() as runtime, logging_to_stderr():
        refuse_future_cutoff(cutoff, runtime.service.clock)
        if all_enabled:
            _note_flag_off(runtime)
        for account in _accounts(runtime, company, all_enabled):
            try:
                before = runtime.service.latest_job(account) if shards > 1 else None
                job = _trigger_or_resume(runtime, account, tenant, cutoff, shards)
            except CrmAuditError as error:
                code, line = exit_codes.error_code(error), exit_codes.one_line(error)
                line = scrub(line, runtime.settings.secrets())
                message = line.removeprefix(f"{code}: ")
                refused.append({"company_sso_id": account, "code": code, "message": message})
                exits.append(exit_codes.exit_code_for(error))
                click.echo(f"refused {account}: {line}", err=True)
                continue
            if before is not None and job is not None and job.job_id == before.job_id:
                _note_shards_kept(job, shards)
            targets: list[tuple[str, list[str | int], int | None]] = (
                [(MIGRATE_ACCOUNT, [account], None)]
                if job is None or not job.shards
                else [
                    (MIGRATE_SHARD, [account, shard.shard], shard.shard)
                    for shard in job.shards
                    if shard.status != COMPLETED
                ]
            )
            for name, args, shard_number in targets:
                try:
                    task = app.send_task(name, args=args)
                except (OperationalError, OSError) as exc:
                    raise _not_sent(state, job, name, args, sent, exc, all_enabled) from None
                sent.append(
                    {"company_sso_id": account, "task": name, "shard": shard_number, "task_id": str(task.id)}
                )
                if not as_json:
                    where = "" if shard_number is None else f" shard {shard_number}"
                    click.echo(f"sent {name} {account}{where} task {task.id}")


def _not_sent(
    state: CliState,
    job: MigrationJob | None,
    name: str,
    args: list[str | int],
    sent: list[dict[str, object]],
    error: BaseException,
    all_enabled: bool,
) -> exit_codes.CliError:
    """``UNAVAILABLE`` (exit 6) for a task the broker did not take after the check had reached it
    (``_require_broker``): it went down in between, and Celery's publish retries
    (``resend.PUBLISH_RETRY_POLICY``, about a minute) are spent.

    The account's job stays in progress as triggered, with none (or only some, of a sharded job)
    of its tasks sent: the message names the broker (its password redacted), the job and what to run
    once the broker answers. The accounts after it are not tried: each would wait out the same retries.
    """
    account = str(args[0])
    where = "" if len(args) < 2 else f" shard {args[1]}"
    mine = sum(1 for task in sent if task["company_sso_id"] == account)
    job_part = (
        "nothing was triggered"
        if job is None
        else f"its job {job.job_id} stays in progress with {mine} task(s) of it sent"
    )
    again = "enqueue --all-enabled" if all_enabled else f"enqueue --company-sso-id {account}"
    message = (
        f"the broker at {redact(state.settings.broker_url)} did not take {name} for company {account}{where} "
        f"({type(error).__name__}, after Celery's publish retries): {job_part}; once the broker answers, "
        f"`crm-audit-migrate {again}` sends it again (the job resumes from its cursor)"
    )
    if all_enabled:
        message += "; the accounts after it were not tried"
    return exit_codes.CliError("UNAVAILABLE", message)


def _note_shards_kept(job: MigrationJob, shards: int) -> None:
    """One stderr line when ``--shards`` cannot apply: the job was already in progress, split its own way."""
    kept = len(job.shards) or 1
    if kept != shards:
        click.echo(
            f"note: {job.company_sso_id}'s job {job.job_id} was already in progress with {kept} shard(s): "
            f"--shards {shards} applies to a new job (cancel it and trigger --fresh to split it anew); "
            "its tasks are sent as it is",
            err=True,
        )


def _accounts(runtime: Runtime, company: str | None, all_enabled: bool) -> list[str]:
    """The one account asked for, or every bound account (``tenants``) that the flag enables."""
    if not all_enabled:
        return [company] if company else []
    return sorted(a for a in runtime.settings.tenants if runtime.flags.is_enabled(a))


def _note_flag_off(runtime: Runtime) -> None:
    """One stderr line for bound accounts left out because their flag is off while a job is in progress."""
    off = sorted(a for a in runtime.settings.tenants if not runtime.flags.is_enabled(a))
    held = [
        a for a in off if (job := runtime.service.latest_job(a)) is not None and job.status == IN_PROGRESS
    ]
    if held:
        click.echo(
            f"skipped {len(held)} account(s) whose flag is off, their in-progress job not sent: "
            + ", ".join(held),
            err=True,
        )


def _trigger_or_resume(
    runtime: Runtime, company: str, tenant: str | None, cutoff: dt.datetime | None, shards: int
) -> MigrationJob | None:
    """The account's in-progress job: the one already running, or a new one (guards first).

    The flag is checked first, as ``trigger`` does: an account switched off after its job was
    triggered is refused (``FLAG_DISABLED``), its job left as it is, nothing sent. So is a
    ``--tenant`` other than the one the job in progress reads (``TENANT_MISMATCH``, as ``trigger``
    refuses it): it is not sent as if the tenant had been given right.
    """
    if not runtime.flags.is_enabled(company):
        raise FlagDisabled(
            f"the CRM audit migration is not enabled for company {company}: nothing sent "
            "(an in-progress job stays as it is; cancel it, or enable the flag and enqueue again)"
        )
    latest = runtime.service.latest_job(company)
    if latest is not None and latest.status == IN_PROGRESS:
        # tenant_for refuses a tenant other than a bound account's binding; an unbound account's job
        # reads the tenant it was triggered with.
        if tenant is not None and runtime.service.tenant_for(company, tenant) != latest.tenant:
            raise TenantMismatch(
                f"company {company}'s job {latest.job_id} in progress reads CRM tenant {latest.tenant!r}, "
                f"not {tenant!r}: nothing sent"
            )
        return latest
    with contextlib.suppress(JobAlreadyRunning):  # a concurrent trigger won: its job is the one to run
        runtime.service.trigger(company, tenant, date_range_start=cutoff, shards=shards)
    return runtime.service.latest_job(company)
