"""``verify``: prove an account's migration complete (docs/verify.md); ``--repair`` writes what is missing.

The command is a thin shell over ``MigrationService.verify`` (``usecases.verify_account``): it prints the
human summary (or ``--json``, the report as ``VerifyReport.to_json`` shapes it) and exits 0 when
the account verifies clean, ``NOT_VERIFIED`` (10) otherwise: rows still ``pending`` (past the cursor
of a job not completed) are not lost, but the account is not proven complete while its run is not done.
"""

from __future__ import annotations

from collections.abc import Iterator

import click

from crm_audit_transform.usecases.verify import DEFAULT_KEEP
from crm_audit_transform.verification import FINDING_KINDS, SAMPLE_MAX, SEED_MAX, SEED_MIN, VerifyReport

from ..lease_owners import lease_owner
from . import exit_codes
from .main import cli
from .options import emit, json_flag, printable, shown_word, stored_non_empty
from .state import CliState

SHOWN = 10
"""Ids shown per kind in the human summary (``--json`` lists every id the report keeps)."""


@cli.command(name="verify")
@click.option(
    "--company-sso-id",
    "company",
    required=True,
    callback=stored_non_empty,
    help="The CDP account (company SSO id).",
)
@click.option(
    "--tenant",
    callback=stored_non_empty,
    help="The CRM tenant schema (default, and required to match: the job's).",
)
@click.option(
    "--sample",
    type=click.IntRange(0, SAMPLE_MAX),
    help="Compare the content of N random logs per page.",
)
@click.option(
    "--seed",
    type=click.IntRange(SEED_MIN, SEED_MAX),
    help="Seed of the --sample draw (reproducible samples): a 64-bit integer.",
)
@click.option(
    "--repair",
    is_flag=True,
    help="Write the missing rows, count them into the job, and set drifted logs back.",
)
@json_flag(
    f"Print the report as JSON: the first {DEFAULT_KEEP:,} ids of each kind and missing ranges"
    f" (the summary shows {SHOWN}); every count exact."
)
@click.pass_obj
def verify_command(
    state: CliState,
    company: str,
    tenant: str | None,
    sample: int | None,
    seed: int | None,
    repair: bool,
    as_json: bool,
) -> None:
    """Recompute every in-scope audit and compare it with the CDP: accounting, content, seam, job."""
    with state.runtime() as runtime:
        report = runtime.service.verify(
            company,
            tenant,
            sample=sample,
            seed=_random_seed() if seed is None else seed,
            repair=repair,
            owner=f"verify:{lease_owner()}",
        )
    show(report, as_json)


def show(report: VerifyReport, as_json: bool) -> None:
    """Print the report and exit with its code: 0 when clean, ``NOT_VERIFIED`` otherwise."""
    emit("verify", report.to_json(), as_json, lambda: _echo_lines(summary_lines(report)))
    if not report.clean:
        raise click.exceptions.Exit(exit_codes.NOT_VERIFIED)


def _echo_lines(lines: Iterator[str]) -> None:
    for line in lines:
        click.echo(line)


def summary_lines(report: VerifyReport, shown: int = SHOWN) -> Iterator[str]:
    """One line of figures, one per non-empty kind with its first ids, repair, and the job."""
    verdict = "clean" if report.clean else "NOT verified"
    sample = f" (content sampled, {report.sample} per page)" if report.sample is not None else ""
    yield (
        f"verify {_shown(report.company_sso_id)} ({_shown(report.tenant)}): {verdict} — "
        f"{report.audits} audits, "
        f"{report.migrated} migrated, {sum(report.skipped.values())} skipped, "
        f"{sum(report.failed.values())} failed; {report.content_checked} contents compared{sample}"
    )
    if report.over_halt_threshold:
        yield (
            f"  failures: {sum(report.failed.values())} of {report.audits} audits fail "
            f"({report.failure_rate:.1%}), over the halt threshold ({report.halt_threshold:.1%}): "
            "the rows are counted by reason, none is lost; fix them before calling the account done"
        )
    if report.actors_unchecked:
        yield (
            f"  actors unchecked: {report.actors_unchecked} — USMAN was unavailable, so their stored actor "
            "could not be compared with the recomputed one (nor a missing one repaired): verify again "
            "once USMAN answers"
        )
    for kind in FINDING_KINDS:
        found = report.findings.get(kind)
        if found is None or not found.count:
            continue
        refs = [
            str(f.audit_id) if f.audit_id is not None else _shown(f.external_id) for f in found.items[:shown]
        ]
        more = f" … and {found.count - len(refs)} more" if found.count > len(refs) else ""
        yield f"  {kind}: {found.count} — {', '.join(refs)}{more}"
        if kind == "missing":
            yield _ranges_line(report, shown)
    pending = report.pending
    if pending.count:
        refs = [str(f.audit_id) for f in pending.items[:shown]]
        more = f" … and {pending.count - len(refs)} more" if pending.count > len(refs) else ""
        status = report.job.status if report.job is not None else "unfinished"
        yield (
            f"  pending: {pending.count} — {', '.join(refs)}{more} (past the cursor of the {status} job: "
            "not lost, the run has not reached them yet; run or resume it, then verify again)"
        )
    if report.repaired or report.restored or report.restore_refused:
        yield (
            f"  repaired: {report.repaired} written, {report.repaired_in_job} added to the job's counts"
            + (f", {report.restored} drifted set back" if report.restored else "")
            + (
                f", {report.restore_refused} drifted refused by the store (past its document limit)"
                if report.restore_refused
                else ""
            )
        )
    job = report.job
    if job is None:
        yield "  job: none"
        return
    job_id = _shown(job.job_id)
    if job.consistent:
        yield f"  job {job_id} ({job.status}): consistent"
    else:
        if job.moved:
            yield (
                f"  job {job_id} ({job.status}): written while verify read the account (a run, or a "
                "trigger, was live): its figures moved under the walk; verify again when no run writes it"
            )
        for m in job.mismatches:
            if m.figure == "outcomes":  # the job against itself: its outcomes against its processed
                yield (
                    f"  job {job_id} ({job.status}): migrated + skipped + failed is {m.job} "
                    f"for {m.found} processed"
                )
                continue
            yield f"  job {job_id} ({job.status}): {m.figure} is {m.job}, verify found {m.found}"


def _shown(text: str) -> str:
    """The database's text (an external id, a job id, a tenant) as the summary shows it: cut when long
    (``shown_word``: an id of 200,000 characters shows as its first 200 and its length, not as a line
    of its own size) and escaped where it does not print (``printable``). ``--json`` keeps it whole."""
    return printable(shown_word(text))


def _ranges_line(report: VerifyReport, shown: int) -> str:
    """The missing rows as ranges of audit ids (``first–last (rows)``), the first ``shown`` of them."""
    ranges = report.missing_ranges[:shown]
    refs = [f"{a} ({n})" if a == b else f"{a}–{b} ({n})" for a, b, n in ranges]
    count = report.missing_range_count
    more = f" … and {count - len(refs)} more" if count > len(refs) else ""
    plural = "range" if count == 1 else "ranges"
    return f"  missing in {count} {plural} of audit ids, no log between (rows): {', '.join(refs)}{more}"


def _random_seed() -> int:
    """A sample's seed when none is given (``secrets`` and the OpenSSL it loads, imported only here)."""
    import secrets

    return secrets.randbits(63)
