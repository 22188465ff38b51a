"""Ops commands over real systems: indexes, trigger, run, status, rollback, explain, config.

Each command parses its options, calls one method of the application service
(``crm_audit_transform.service.MigrationService``, wired by ``crm_audit_adapters.bootstrap``) and
renders the value it returns; none of them drives a use case itself.
"""

from __future__ import annotations

import datetime as dt
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from types import FrameType

import click

from crm_audit_transform.config import load_config
from crm_audit_transform.domain import Failed, Migrated, Outcome, Skipped
from crm_audit_transform.errors import JobNotFound, JobUnreadable, TenantUnbound
from crm_audit_transform.jobs import CANCELLED, COMPLETED, HALTED, MigrationJob
from crm_audit_transform.numerals import BIGINT_MAX, BIGINT_MIN
from crm_audit_transform.ports import JobStore
from crm_audit_transform.usecases import FRESH, RESUME, MigrationStatus

from ..collector import run_loop_collection
from ..lease_owners import lease_owner
from . import exit_codes
from .confirmation import confirm_or_decline
from .main import cli
from .options import (
    METRICS_PORT,
    company_option,
    date_range_start_option,
    echo_json,
    emit,
    json_option,
    optional_company_option,
    refuse_future_cutoff,
    stored_non_empty,
    workers_option,
)
from .progress import ProgressLine
from .state import CliState
from .status_text import account_lines, show_job, show_status, status_summary


@cli.command()
@click.argument("direction", type=click.Choice(["up", "down", "status"]))
@click.option("--yes", is_flag=True, help="down: do not ask for confirmation (needed without a terminal).")
@json_option
@click.pass_obj
def indexes(state: CliState, direction: str, yes: bool, as_json: bool) -> None:
    """Apply (up), revert (down) or inspect (status) the 035_crm_migration_indexes MongoDB migration.

    Every write path refuses with INDEXES_MISSING (exit 3) until `indexes up` has run. `down` asks
    first (--yes to skip; without a terminal to ask, it needs --yes).
    """
    from ..mongo import applied_version, apply_migration, index_status

    # No lease here, and `up` waits on whole index builds: no socketTimeoutMS of the runner's own.
    with state.runtime(lease_bounded_mongo=False) as runtime:
        # The settings, the URI and the server first: a command that cannot run asks nothing.
        db = runtime.mongo_db
        if direction == "down" and not yes:
            confirm_or_decline(
                "Drop migration 035's indexes? Every write path is refused until `indexes up`",
                command="indexes down",
                act="drop the indexes",
                nothing="nothing was changed",
            )
        steps: tuple[str, ...] = ()
        if direction != "status":
            steps = apply_migration(db, direction, now=runtime.lease_now())  # type: ignore[arg-type]
        reports = index_status(db)
        applied = applied_version(db)

    def human() -> None:
        for line in steps:
            click.echo(line)
        if direction == "status":
            for report in reports:
                click.echo(f"{report.state:<8} {report.qualified}")
        click.echo(f"version: {_version(applied)}")

    doc = {
        "direction": direction,
        "steps": list(steps),
        "indexes": [{"collection": r.collection, "name": r.name, "state": r.state} for r in reports],
        "version": applied[0] if applied else None,
        "dirty": applied[1] if applied else False,
    }
    emit("indexes", doc, as_json, human)
    if direction == "status" and any(r.state != "present" for r in reports):
        raise click.exceptions.Exit(exit_codes.CONFIG)


def _version(applied: tuple[int, bool] | None) -> str:
    if applied is None:
        return "none (migration 035 not applied)"
    version, dirty = applied
    return f"{version:03d}" + (" (dirty: a step failed; run `indexes up` again)" if dirty else "")


@cli.command(name="trigger")
@company_option
@click.option(
    "--tenant", callback=stored_non_empty, help="The CRM tenant schema (default: the account's bound tenant)."
)
@click.option(
    "--allow-unbound-tenant",
    is_flag=True,
    help="Accept --tenant for an account with no binding in CRM_AUDIT_TENANTS (person ids overlap "
    "across tenants: make sure it is the right one).",
)
@click.option(
    "--resume",
    is_flag=True,
    help="After a halt or cancel: put the same job back in progress, keeping what it wrote.",
)
@click.option(
    "--fresh",
    is_flag=True,
    help="After a halt, cancel or completion: roll the account back first, then start a new job.",
)
@date_range_start_option("Cutoff (UTC unless an offset is given); default: the oldest in-scope audit.")
@click.option(
    "--shards",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Split a new job into N id ranges; `run` takes them in turn (`--workers N`: N side by side).",
)
@json_option
@click.pass_obj
def trigger_command(
    state: CliState,
    company: str,
    tenant: str | None,
    allow_unbound_tenant: bool,
    resume: bool,
    fresh: bool,
    date_range_start: dt.datetime | None,
    shards: int,
    as_json: bool,
) -> None:
    """Check the guards and create the account's job (nothing is migrated until `run`)."""
    if resume and fresh:  # opposite choices: --fresh rolls back what --resume would keep
        raise click.UsageError("give at most one of --resume and --fresh")
    restart = RESUME if resume else FRESH if fresh else None
    if restart == RESUME and date_range_start is not None:
        # A resumed job keeps its cutoff: its cursor and counts were made under it.
        raise click.UsageError(
            "--date-range-start cannot be combined with --resume: the resumed job keeps its cutoff "
            "(use --fresh for a new one)"
        )
    with state.runtime() as runtime:
        refuse_future_cutoff(date_range_start, runtime.service.clock)
        try:
            status = runtime.service.trigger(
                company,
                tenant,
                date_range_start=date_range_start,
                allow_unbound_tenant=allow_unbound_tenant,
                restart=restart,
                shards=shards,
            )
        except TenantUnbound as error:  # the library's message names no option: the CLI's override
            given = (
                f"pass --allow-unbound-tenant to use {tenant!r} as given"
                if tenant
                else ("give --tenant SCHEMA --allow-unbound-tenant")
            )
            raise TenantUnbound(f"{error}; or {given}") from None
    show_job("trigger", status, as_json)


@cli.command()
@company_option
@click.option("--progress/--no-progress", default=True, help="Show the progress line on stderr.")
@click.option(
    "--metrics-port", type=METRICS_PORT, help="Serve Prometheus /metrics here and log each batch (JSON)."
)
@workers_option
@json_option
@click.pass_obj
def run(
    state: CliState, company: str, progress: bool, metrics_port: int | None, workers: int, as_json: bool
) -> None:
    """Start or resume the account's job; Ctrl-C finishes the batch, saves the cursor and exits.

    The final summary (stdout; the JSON job document with --json) is printed however the run ends.
    """
    with state.runtime() as runtime:
        job = runtime.jobs.latest(company)
        if job is None:
            raise JobNotFound(f"company {company} has no migration job: run `trigger` first")
        if job.shards:
            # A sharded job's shards run side by side, a process each, no page pool inside them.
            runtime.use_shard_processes(workers)
            _note_shard_workers(job, workers)
        else:
            runtime.use_workers(workers)
        service = runtime.service
        view = ProgressLine(job, sys.stderr) if progress else None
        hook: Callable[[MigrationJob], None] | None = view.update if view else None
        if metrics_port is not None:
            from .observing import observed_run

            service, hook = observed_run(runtime, job, hook, metrics_port)
        with _stop_on_interrupt() as stop, run_loop_collection():
            result = service.run(
                company,
                owner=lease_owner(),
                should_stop=stop.is_set,
                on_progress=hook,
            )
        if view is not None:
            view.finish(result.job)
        status = MigrationStatus.of(result.job)
        emit("run", status.as_dict(), as_json, lambda: click.echo(status_summary(status)))
        if result.stopped:
            raise exit_codes.CliError(
                "INTERRUPTED",
                "stopped on request after the batch in flight; progress saved: run again to resume",
            )
        if result.job.status == HALTED:
            raise exit_codes.CliError(
                "HALTED", f"the run halted: {result.job.halted_reason} (cursor kept; see status and explain)"
            )
        if result.job.status == CANCELLED:
            raise exit_codes.CliError(
                "CANCELLED", "the job was cancelled; trigger --resume or --fresh to go on"
            )
        if result.job.status != COMPLETED:
            raise exit_codes.CliError("JOB_NOT_RUNNABLE", f"job is {result.job.status}: nothing to run")


def _note_shard_workers(job: MigrationJob, workers: int) -> None:
    """One stderr line when ``--workers`` asks for more processes than the job has shards to run."""
    left = sum(shard.status != COMPLETED for shard in job.shards)
    if workers > 1 and left and workers > left:
        click.echo(
            f"note: job {job.job_id} has {left} shard(s) left to run: {left} process(es) run them side by "
            f"side; --workers {workers} adds no page pool inside a shard (docs/runner.md)",
            err=True,
        )


@contextmanager
def _stop_on_interrupt() -> Iterator[threading.Event]:
    """First Ctrl-C asks the loop to stop after its batch; a second one interrupts at once. An
    ignored SIGINT (``SIG_IGN``, inherited by a command a script starts in the background) stays
    ignored: the loop then stops only by itself, a cancel or a signal it does not ignore."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN:  # started ignoring it (``cmd &`` from a script): it stays ignored
        yield stop
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            # Aborting is the handler's before this one: the console script's raises once, and
            # ignores a third Ctrl-C while the run closes what it holds (console.InterruptOnce).
            if callable(previous):
                previous(signum, frame)
                return
            raise KeyboardInterrupt
        stop.set()
        click.echo("\nstopping after the current batch (Ctrl-C again to abort)…", err=True)

    signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


@cli.command()
@optional_company_option
@click.option("--all", "every", is_flag=True, help="One line per account: every account's latest job.")
@json_option
@click.pass_obj
def status(state: CliState, company: str | None, every: bool, as_json: bool) -> None:
    """Show the account's job: status, progress, counts per reason, failure rate, cursor."""
    if every == (company is not None):
        raise click.UsageError("give exactly one of --company-sso-id and --all")
    with state.runtime() as runtime:
        if company is not None:
            show_status(runtime.service.status(company), as_json)
            return
        listed = _latest_per_account(runtime.jobs)
    statuses = [MigrationStatus.of(job) for job in listed if isinstance(job, MigrationJob)]
    unreadable = [job for job in listed if isinstance(job, JobUnreadable)]
    if as_json:
        echo_json([s.as_dict() for s in statuses])
    else:
        for line in account_lines(statuses, dt.datetime.now(dt.UTC)):
            click.echo(line)
    if unreadable:  # the other accounts are listed above; the command still fails, naming the job
        first = unreadable[0]
        if len(unreadable) > 1:
            first.add_note(f"{len(unreadable) - 1} more account(s) with an unreadable job, not listed")
        raise first


def _latest_per_account(jobs: JobStore) -> list[MigrationJob | JobUnreadable]:
    # Not a port method: only the MongoDB store lists accounts (``status --all``).
    listing: Callable[[], Iterable[MigrationJob | JobUnreadable]] | None = getattr(
        jobs, "latest_per_account", None
    )
    if listing is None:
        raise click.UsageError("this job store cannot list accounts")
    return list(listing())


@cli.command(name="cancel")
@company_option
@json_option
@click.pass_obj
def cancel_command(state: CliState, company: str, as_json: bool) -> None:
    """Cancel the account's in-progress job: its cursor is kept; a live runner stops at its next batch."""
    with state.runtime() as runtime:
        status = runtime.service.cancel(company)
    show_job("cancel", status, as_json)


@cli.command(name="rollback")
@company_option
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (needed without a terminal).")
@json_option
@click.pass_obj
def rollback_command(state: CliState, company: str, yes: bool, as_json: bool) -> None:
    """Delete the account's migrated logs (source_tag crm_migration only); native logs stay.

    Asks first (--yes to skip; without a terminal to ask, it needs --yes).
    """
    with state.runtime() as runtime:
        # The settings, the URI and the server first: a rollback that cannot run asks nothing.
        runtime.mongo_db  # noqa: B018
        if not yes:
            confirm_or_decline(
                f"Delete every migrated activity log of company {company}?",
                command="rollback",
                act="delete the account's migrated logs",
                nothing="nothing was deleted",
            )
        result = runtime.service.rollback(company)
    doc = {"company_sso_id": company, "job_id": result.job_id, "deleted": result.deleted}
    emit(
        "rollback",
        doc,
        as_json,
        lambda: click.echo(f"deleted {result.deleted} migrated log(s) of company {company}"),
    )


@cli.command()
@company_option
@click.option(
    "--audit-id",
    required=True,
    # audited's audits.id is a bigint: an id outside it names no row, and AUDIT_NOT_FOUND quoted it whole.
    type=click.IntRange(BIGINT_MIN, BIGINT_MAX),
    help="The audit row to explain (an id of audits.id, a bigint).",
)
@click.option(
    "--tenant", callback=stored_non_empty, help="The CRM tenant schema (default: the account's job's tenant)."
)
@json_option
@click.pass_obj
def explain(state: CliState, company: str, audit_id: int, tenant: str | None, as_json: bool) -> None:
    """Show each stage's decision for one audit row, with the lookups a run would make."""
    with state.runtime() as runtime:
        explanation = runtime.service.explain(company, audit_id, tenant)
    tenant = explanation.tenant
    if explanation.row is None:
        raise exit_codes.CliError("AUDIT_NOT_FOUND", f"tenant {tenant} has no audit {audit_id}")
    stages = [{"stage": s.stage, "verdict": s.verdict, "detail": s.detail} for s in explanation.stages]
    outcome = _outcome(explanation.outcome)
    if as_json:
        doc = {"audit_id": audit_id, "tenant": tenant, "stages": stages, "outcome": outcome}
        emit("explain", doc, as_json)
        return
    row = explanation.row
    click.echo(
        f"audit {tenant}#{audit_id}: {row.auditable_type}#{row.auditable_id} {row.action}"
        f" at {row.created_at or 'NULL created_at'}"
    )
    width = max(len(s["stage"]) for s in stages) if stages else 5
    for s in stages:
        click.echo(f"  {s['stage']:<{width}}  {s['verdict']:<8}  {s['detail']}")
    click.echo(f"outcome: {outcome['kind']}" + (f" ({outcome['reason']})" if outcome.get("reason") else ""))


@cli.command(name="config")
@json_option
@click.pass_obj
def show_config(state: CliState, as_json: bool) -> None:
    """Show the effective settings, secrets redacted: one `key  value` line each (dotted for tables).

    The mapping file is read too, so a mapping that `run` would refuse is refused here (exit 3).
    """
    settings = state.settings.describe()
    if state.settings.mapping_config:
        load_config(state.settings.mapping_config)  # ConfigError: CONFIG_INVALID, exit 3

    def human() -> None:
        lines = list(_flatten(settings))
        width = max(len(key) for key, _ in lines)
        for key, value in lines:
            click.echo(f"{key:<{width}}  {value}")

    emit("config", {"settings": settings}, as_json, human)


def _flatten(doc: dict[str, object], prefix: str = "") -> Iterator[tuple[str, str]]:
    """``{"loader": {"max_bytes": 1}}`` → ``("loader.max_bytes", "1")``; unset values read ``-``."""
    for key, value in doc.items():
        if isinstance(value, dict) and value:
            yield from _flatten(value, f"{prefix}{key}.")
        elif isinstance(value, list):
            yield f"{prefix}{key}", ", ".join(str(v) for v in value) or "-"
        else:
            yield f"{prefix}{key}", "-" if value is None or value in ("", {}) else str(value)


def _outcome(outcome: Outcome | None) -> dict[str, object]:
    if isinstance(outcome, Migrated):
        return {"kind": "migrated", "external_id": outcome.log.external_id}
    if isinstance(outcome, Skipped | Failed):
        kind = "skipped" if isinstance(outcome, Skipped) else "failed"
        return {"kind": kind, "reason": outcome.reason, "detail": outcome.detail}
    return {"kind": "none"}
