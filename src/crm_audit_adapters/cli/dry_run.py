"""``dry-run``: the whole pipeline on files, no servers — the embedded default.

The audits, users, contacts and SSO directory come from files; the job lives in memory; the logs
go to ``--out`` (a file, or ``-`` for stdout) as exactly the documents the Mongo adapter would
insert (relaxed Extended JSON lines). The report is ``{processed, migrated, skipped: {reason: n},
failed: {reason: n}}``: to ``--report``, else to stdout (to stderr when the documents take
stdout); ``--outcomes`` lists every row's outcome (``row_outcomes``). ``--loader-max-*`` set the
loader's limits, as the runner's ``[loader]`` settings do. A dry run never halts: it reports every
row, and says on stderr whether a real run would have halted. ``--workers N`` loads and transforms
the pages in N processes (``page_pool``); the documents, the report and the outcomes are the same.
With a JSONL file, this process then decodes no line: it cuts the file into byte ranges at line ends,
each worker (and this process, for the pages it takes) reads, decides and transforms a range's lines,
and this process merges what they told in file order (``files.audit_ranges``); a CSV file's rows
are read here and sent.

The audits are streamed in id order (``FileAuditSource``) and the contacts read through a file
index, so time grows linearly with the rows and memory stays flat. Without ``--out`` the logs are
still encoded and checked (then dropped), so the report is the same as with it. The progress line
and the final line (company, tenant, counts, where the outputs went) go to stderr, so stdout
carries only data. ``--example`` writes its documents to ``EXAMPLE_OUT`` in the current directory
unless ``--out`` says otherwise, and takes no input file. The outputs are checked before the run
(``output_paths``): none may be an input or another output, each directory must exist.

The wiring is ``crm_audit_adapters.bootstrap.dry_run_service``; this command only parses its
options and renders the report. A dry run does not enrich: there is no CDP to patch and no CRM to
name the linked entities, so its service has no enrichment ports and the logs go out exactly as
the transformer built them (``crm-audit-migrate enrich --dry-run`` shows what enrichment would
change in a real CDP).

The tenant follows the runner's bindings (``CRM_AUDIT_TENANTS`` or the settings file's ``[tenants]``),
as ``enrich``, ``explain`` and ``verify`` do: a bound account reads its bound tenant (``--tenant`` may be
left out; another is ``TENANT_MISMATCH``), and an unbound account's ``--tenant`` is ``TENANT_MISMATCH``
when another account is bound to it. An unbound account's own ``--tenant`` is read as given: a dry run
writes nothing to the CDP, so it needs no ``--allow-unbound-tenant``.

``--verify`` checks an existing ``--out`` file against the same inputs instead of writing one:
verify's accounting and content checks over the file (``files.verification``), no repair. A dry run
keeps its job beside its ``--out`` file until it completes (``{out}.unfinished``,
``files.dry_run_progress``); ``--verify`` of the output of one that did not finish verifies it
against that job, so the rows it had not reached are ``pending``, not ``missing``, and says where it
stopped.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import click

from crm_audit_transform.jobs import COMPLETED, MigrationJob
from crm_audit_transform.loading import LoaderLimits
from crm_audit_transform.testing import FixedClock, InMemoryActivityLogStore, InMemoryJobStore
from crm_audit_transform.usecases.safety import bound_tenant
from crm_audit_transform.usecases.status import report_counts

from ..bootstrap import DryRunFiles, dry_run_recipe, dry_run_service
from ..collector import run_loop_collection
from ..settings import load_tenants
from ..strict_json import dumps
from . import exit_codes
from .main import cli
from .options import existing_file, non_empty, regular_file, workers_option
from .output_paths import STDOUT, check_outputs
from .progress import ProgressLine
from .row_outcomes import OutcomeLines
from .state import CliState
from .verify import show

if TYPE_CHECKING:
    from ..files import JsonlActivityLogSink
    from ..files.dry_run_progress import ProgressJobs

EXAMPLE_FILES = ("audits.jsonl", "users.jsonl", "contacts.jsonl", "sso.jsonl")
EXAMPLE_OUT = Path("crm-audit-example-logs.jsonl")
"""Where ``--example`` writes its documents (in the current directory) unless ``--out`` is given."""
_file = regular_file
# The mapping file's own reader refuses a device or a FIFO (CONFIG_INVALID, as the run's settings do).
_mapping_file = existing_file


def _no_dash(_: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """A click callback refusing ``-``: only ``--out`` means stdout, so ``-`` would name a file "-"."""
    if value is not None and str(value) == "-":
        raise click.BadParameter(f"- is not stdout for {param.opts[0]} (only --out - is); name a file")
    return value


@cli.command(name="dry-run")
@click.option("--example", is_flag=True, help="Run on the small sample bundled with the package.")
@click.option(
    "--company-sso-id", "company", callback=non_empty, help="The CDP account the logs are written for."
)
@click.option(
    "--tenant",
    help="The CRM tenant schema whose rows are read (default: the account's binding, CRM_AUDIT_TENANTS).",
)
@click.option("--audits", type=_file, help="Audit rows: JSONL (fixture format) or psql CSV.")
@click.option("--users", type=_file, help="CRM users, JSONL {tenant, id, email, full_name, deleted_at}.")
@click.option(
    "--contacts", type=_file, help="CDP contacts, JSONL {_id, company_sso_id, crm_data: {id}, created_at}."
)
@click.option("--sso-directory", type=_file, help="SSO ids, JSONL {email, sso_id}.")
@click.option(
    "--config", "mapping", type=_mapping_file, help="Mapping configuration YAML (default: the bundled one)."
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    help=f"Where the log documents go: a JSONL file, or - for stdout (--example: {EXAMPLE_OUT}).",
)
@click.option(
    "--report",
    type=click.Path(dir_okay=False, path_type=Path),
    callback=_no_dash,
    help="Report JSON (default: stdout).",
)
@click.option(
    "--outcomes",
    type=click.Path(dir_okay=False, path_type=Path),
    callback=_no_dash,
    help="One JSON line per processed row: {audit_id, tenant, outcome, reason, detail}.",
)
@click.option(
    "--loader-max-bytes",
    type=click.IntRange(1, LoaderLimits.MAXIMA["max_bytes"]),
    help="LoaderLimits.max_bytes (UTF-8 bytes).",
)
@click.option(
    "--loader-max-nodes",
    type=click.IntRange(1, LoaderLimits.MAXIMA["max_nodes"]),
    help="LoaderLimits.max_nodes.",
)
@click.option(
    "--loader-max-depth",
    type=click.IntRange(1, LoaderLimits.MAXIMA["max_depth"]),
    help="LoaderLimits.max_depth.",
)
@click.option(
    "--loader-max-int-digits",
    type=click.IntRange(1, LoaderLimits.MAXIMA["max_int_digits"]),
    help="LoaderLimits.max_int_digits.",
)
@click.option(
    "--verify",
    "verify_out",
    is_flag=True,
    help="Verify the existing --out file against these inputs instead of writing it (docs/verify.md).",
)
@click.option("--progress/--no-progress", default=True, help="Show the progress line on stderr.")
@workers_option
@click.pass_obj
def dry_run(
    state: CliState,
    example: bool,
    company: str | None,
    tenant: str | None,
    audits: Path | None,
    users: Path | None,
    contacts: Path | None,
    sso_directory: Path | None,
    mapping: Path | None,
    out: Path | None,
    report: Path | None,
    outcomes: Path | None,
    loader_max_bytes: int | None,
    loader_max_nodes: int | None,
    loader_max_depth: int | None,
    loader_max_int_digits: int | None,
    verify_out: bool,
    progress: bool,
    workers: int,
) -> None:
    """Migrate from files to a file, with no server at all; print or write the report."""
    # The files adapter, imported by the command that uses it (the process pool and the output's
    # reader below, by the options that use them).
    from ..files import CheckedRows, FileAuditSource
    from ..files.audit_ranges import FileRangeSource
    from ..files.audits import format_of
    from ..files.dry_run_progress import DryRunProgress, ProgressJobs

    given_limits = {
        "max_bytes": loader_max_bytes,
        "max_nodes": loader_max_nodes,
        "max_depth": loader_max_depth,
        "max_int_digits": loader_max_int_digits,
    }
    limits = LoaderLimits(**{name: value for name, value in given_limits.items() if value is not None})
    with ExitStack() as stack:
        if example:
            named = [name for name, value in _input_files(audits, users, contacts, sso_directory) if value]
            if named:
                raise click.UsageError(
                    f"--example runs on the bundled sample: drop {', '.join(named)} (or drop --example)"
                )
            example_files = stack.enter_context(_example_files())
            account = json.loads(example_files["account.json"].read_text(encoding="utf-8"))
            company, tenant = company or account["company_sso_id"], tenant or account["tenant"]
            audits, users, contacts, sso_directory = (example_files[name] for name in EXAMPLE_FILES)
            out = out or EXAMPLE_OUT
        bindings = load_tenants(state.settings_path)
        if company is not None and (tenant is not None or company in bindings):
            # The binding rule of enrich, explain and verify (MigrationService.tenant_for).
            tenant = bound_tenant(company, tenant, bindings, allow_unbound=True)
        given = {
            "--company-sso-id": company,
            "--tenant": tenant,
            **dict(_input_files(audits, users, contacts, sso_directory)),
        }
        missing = [name for name, value in given.items() if value is None]
        if missing:
            raise click.UsageError(f"missing {', '.join(missing)} (or use --example)")
        if format_of(str(audits)) is None:
            raise click.UsageError(
                f"--audits {audits}: cannot tell its format from its name: "
                "use a .jsonl file (JSON lines) or a .csv file (psql CSV)"
            )
        files = DryRunFiles(
            Path(str(audits)), Path(str(users)), Path(str(contacts)), Path(str(sso_directory)), mapping
        )
        check_outputs(
            {
                **dict(_input_files(files.audits, files.users, files.contacts, files.sso_directory)),
                "--config": mapping,
                **({"--out": out} if verify_out else {}),
            },
            {"--report": report, **({} if verify_out else {"--out": out, "--outcomes": outcomes})},
        )
        if verify_out:
            if out is None or out == STDOUT or not out.exists():
                raise click.UsageError("--verify needs --out naming a dry run's existing output file")
            from ..files.verification import JsonlMigratedLogReader

            progress_file = DryRunProgress(out)
            unfinished = progress_file.read()
            if unfinished is not None and (unfinished.company_sso_id, unfinished.tenant) != (company, tenant):
                unfinished = None  # another account's dry run into the same file: not this one's
            # A dry run killed mid-write may have left its last line torn: read as its next run's
            # sink would find the file (which drops it), not refused (files.output_tail).
            reader = JsonlMigratedLogReader(out, torn_tail=unfinished is not None)
            jobs = None
            if unfinished is not None:
                # Verified against where it stopped: rows past its cursor are pending, not missing.
                jobs = InMemoryJobStore(clock=FixedClock())
                jobs.create(unfinished)
            # Repeated ids and unbuildable rows are left out as the dry run left them out.
            verify_source = stack.enter_context(
                FileAuditSource(files.audits, str(tenant), checked=CheckedRows(files.audits))
            )
            verifier = dry_run_service(
                str(company),
                str(tenant),
                files,
                InMemoryActivityLogStore(),
                limits=limits,
                reader=reader,
                source=verify_source,
                jobs=jobs,
            )
            verified = verifier.verify(str(company), str(tenant))
            if unfinished is not None:
                click.echo(_unfinished_line(out, progress_file.path, unfinished, reader.torn_at), err=True)
            if report is not None:
                _write_report(report, dumps(verified.to_json(), indent=2, ensure_ascii=True), to_stderr=False)
            show(verified, as_json=False)
            return
        # With workers, they also encode the lines the sink writes (its log_encoder): it only writes them.
        sink = stack.enter_context(_sink(out))
        # Where the dry run got to, kept beside --out until it completes (files.dry_run_progress).
        journal = DryRunProgress(out) if out is not None and out != STDOUT else None
        jobs = ProgressJobs(journal, clock=FixedClock()) if journal is not None else None
        checked = CheckedRows(files.audits)
        # With workers, a JSONL file is cut into byte ranges: each is read, decided and transformed
        # where it is taken, and this process merges what their readers told (files.audit_ranges).
        by_range = workers > 1 and format_of(str(files.audits)) == "jsonl"
        source_type = FileRangeSource if by_range else FileAuditSource
        source = stack.enter_context(source_type(files.audits, str(tenant), checked=checked))
        pipeline = None
        if workers > 1:
            from ..fork_server import sigint_blocked
            from ..page_pool import ProcessPagePipeline

            # Its worker started now, in the background, as run --workers N starts it: its fork
            # overlaps the reads of the users, the SSO directory and the contacts' index below
            # instead of the run's first pages (ProcessPagePipeline.started).
            with sigint_blocked():  # the fork server it starts inherits the block (fork_server)
                pool = ProcessPagePipeline.started(workers, dry_run_recipe(files, limits))
            pipeline = stack.enter_context(pool)
        service = dry_run_service(
            str(company),
            str(tenant),
            files,
            sink,
            limits=limits,
            checked=checked,
            source=source,
            pipeline=pipeline,
            jobs=jobs,
        )
        lines = stack.enter_context(OutcomeLines(outcomes, str(tenant)))
        view: list[ProgressLine] = []
        kept_before = sink.count_migrated(str(company))

        def on_progress(job: MigrationJob) -> None:
            if not view:
                view.append(ProgressLine(job, sys.stderr))
            view[0].update(job)

        try:
            with run_loop_collection():
                result = service.dry_run(
                    str(company),
                    str(tenant),
                    on_outcomes=lines,
                    on_progress=on_progress if progress else None,
                )
        except BaseException as error:
            if jobs is not None:
                _keep_progress(jobs, str(company))
            if isinstance(error, Exception):
                _note_partial_output(error, out, sink.count_migrated(str(company)) - kept_before)
            raise
        if journal is not None and result.job.status == COMPLETED:
            journal.remove()
        if view:
            view[0].finish(result.job)
        # The rows the file itself disqualified (a repeat, an unbuildable row) are failed rows of the
        # run, counted in id order with the others (ports.RowsSetAside): in the report, the
        # outcome lines and the halt rule alike.
        counts = dict(report_counts(result.job.tally))
        # The real run's halt rule, only observed: every row is processed, and the report says
        # where (and why) a real run would halt.
        halt = result.would_halt
        counts["would_halt"] = None if halt is None else {"audit_id": halt.audit_id, "reason": halt.reason}
        if not counts["processed"]:
            _no_row_processed(files.audits, str(tenant))
        lines.finish()
    text = dumps(counts, indent=2, ensure_ascii=True)
    processed, failed = counts["processed"], sum(counts["failed"].values())
    _write_report(report, text, to_stderr=out == STDOUT)
    if halt is not None:
        click.echo(f"warning: a real run would halt at audit id {halt.audit_id}: {halt.reason}", err=True)
    skipped = sum(counts["skipped"].values())
    logs = "stdout" if out == STDOUT else str(out.absolute()) if out else "not kept (no --out)"
    where = str(report.absolute()) if report else "stderr" if out == STDOUT else "stdout"
    click.echo(
        f"company {company}, tenant {tenant}: processed {processed}, migrated {counts['migrated']}, "
        f"skipped {skipped}, failed {failed}; logs: {logs}; report: {where}",
        err=True,
    )


def _keep_progress(jobs: ProgressJobs, company: str) -> None:
    """The job as last saved into the progress file of a dry run that stopped (an error, a Ctrl-C),
    written since its last timed write perhaps; a failure to write it is not the error to tell."""
    with suppress(Exception):
        job = jobs.latest(company)
        if job is not None:
            jobs.progress.write(job)


def _unfinished_line(out: Path, progress: Path, job: MigrationJob, torn_at: int | None) -> str:
    """What ``--verify`` says of an output whose dry run did not finish (stderr); ``torn_at``: the
    offset of a torn last line verify left out."""
    torn = (
        ""
        if torn_at is None
        else f" Its last line, cut off mid-write at byte {torn_at}, is left out: the next run drops it."
    )
    return (
        f"note: the dry run that wrote {out} did not finish: it stopped after audit id {job.last_audit_id}, "
        f"{job.tally.processed} rows processed ({progress.name} says so; a dry run that completes "
        f"removes it).{torn} The rows past it are pending, not missing: run the dry run again with the "
        "same --out to finish it, then verify again"
    )


def _note_partial_output(error: Exception, out: Path | None, written: int) -> None:
    """Say, with the error that stopped a dry run partway, how many logs went to ``--out`` before it.

    They are kept, not removed: each was whole and flushed when written, so the file is what a run
    interrupted at that point leaves (a crash leaves the same), and a run again with the same
    ``--out`` appends only the logs not yet there. Throwing them away would make the re-run redo
    them, for a file it reads back anyway. Not so when the file changed under the run
    (``FileChangedWhileRead``): those logs are the old file's. No page read after the change is
    written (``FileAuditSource._page``), but the change may have cut or rewritten the rows already
    written, which only a digest of every byte read could rule out, so the note asks for a new
    ``--out`` (docs/files.md, "Why a new `--out` all the same").
    """
    if out is None or written <= 0:
        return
    logs = "1 log was" if written == 1 else f"{written} logs were"
    if out == STDOUT:
        error.add_note(f"{logs} written to stdout before this error")
        return
    from ..files.errors import FileChangedWhileRead  # with the files adapter, as the sink is

    if isinstance(error, FileChangedWhileRead):
        # Built from the file as it was: a run again into the same --out would keep them beside
        # the new file's logs, since it adds only the keys not yet there.
        error.add_note(
            f"{logs} written to {out} before this error, from the file as it was before it "
            "changed: run again with a new --out"
        )
        return
    error.add_note(
        f"{logs} written to {out} before this error and are kept: run again with the same --out, "
        "and only the logs not yet there are added"
    )


def _write_report(report: Path | None, text: str, *, to_stderr: bool) -> None:
    """The report to ``--report``, else to stdout (stderr when the documents take stdout).

    A failed write is ``FILE_ERROR`` naming where the report was going: the ``OSError`` of a full
    disk names no file. A reader that left stdout stays a broken pipe (the command's quiet exit).
    """
    try:
        if report is not None:
            from ..files.sink import open_locked_for_writing  # the sink's lock; imported with the sink

            with open_locked_for_writing(str(report)) as file:
                file.write(text + "\n")
        else:
            click.echo(text, err=to_stderr)
    except BrokenPipeError:
        raise
    except OSError as exc:
        where = (
            f"--report {report}"
            if report is not None
            else f"the report to {'stderr' if to_stderr else 'stdout'}"
        )
        raise exit_codes.CliError("FILE_ERROR", f"cannot write {where}: {exc.strerror or exc}") from exc


def _input_files(*paths: Path | None) -> list[tuple[str, Path | None]]:
    """The four input options with their values, in order."""
    return list(zip(("--audits", "--users", "--contacts", "--sso-directory"), paths, strict=True))


def _no_row_processed(audits: Path, tenant: str) -> None:
    """A dry run that processed no row: ``UNKNOWN_TENANT`` when the file's rows name other tenants
    only (a mistyped ``--tenant``, as the run refuses a schema the CRM lacks), else a warning."""
    from ..files.audits import file_tenants

    tenants = file_tenants(audits)
    if tenants and tenant not in tenants:
        named = sorted(tenants)
        listed = ", ".join(named[:5]) + (f" and {len(named) - 5} more" if len(named) > 5 else "")
        raise exit_codes.CliError(
            "UNKNOWN_TENANT", f"no row of tenant {tenant!r} in {audits}; its rows are of {listed}"
        )
    click.echo(
        f"warning: no row of tenant {tenant!r} in {audits} is in the mapping's scope: nothing to migrate",
        err=True,
    )


def _sink(out: Path | None) -> JsonlActivityLogSink:
    from ..files import JsonlActivityLogSink

    if out is None:
        return JsonlActivityLogSink.over_stream(None, "<nowhere>")
    if out == STDOUT:
        return JsonlActivityLogSink.over_stream(sys.stdout.buffer, "<stdout>")
    # A dry run's output can be made again; flushing per batch covers a crash of the process.
    return JsonlActivityLogSink(out, fsync="close")


@contextmanager
def _example_files() -> Iterator[dict[str, Path]]:
    root = resources.files("crm_audit_adapters") / "data" / "example"
    with ExitStack() as stack:
        yield {
            name: stack.enter_context(resources.as_file(root / name))
            for name in (*EXAMPLE_FILES, "account.json")
        }
