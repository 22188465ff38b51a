"""``enrich``: fill the referent keys of association logs already in the CDP (docs/enrichment.md).

``run`` enriches what it migrates as it goes; this command is for logs that were already there —
the live feed's, or ours from before enrichment was wired. It walks the company's association logs
lacking a key, page by page, plans each page and applies it; ``--dry-run`` prints each page's plan
(``EnrichmentPlan.describe()``) and changes nothing. Running it twice patches nothing the second time.
"""

from __future__ import annotations

import click

from crm_audit_transform.enrichment import EnrichmentPlan
from crm_audit_transform.enrichment_tally import EnrichmentTally

from .main import cli
from .options import company_option, emit, json_flag, stored_non_empty
from .state import CliState


@cli.command()
@company_option
@click.option(
    "--tenant", callback=stored_non_empty, help="The CRM tenant schema (default: the account's job's tenant)."
)
@click.option("--dry-run", is_flag=True, help="Print the plan of every page; change nothing.")
@json_flag("Print JSON (the plans too with --dry-run).")
@click.pass_obj
def enrich(state: CliState, company: str, tenant: str | None, dry_run: bool, as_json: bool) -> None:
    """Fill missing referents (person, linked entity id and name) of the account's association logs."""
    plans: list[dict[str, object]] = []

    def show(plan: EnrichmentPlan) -> None:
        if as_json:
            plans.append(plan.to_json())
        else:
            click.echo(plan.describe())

    with state.runtime() as runtime:
        service = runtime.service
        tenant = service.tenant_for(company, tenant)
        report = service.enrich(company, tenant, dry_run=dry_run, on_plan=show if dry_run else None)
    if as_json:
        doc: dict[str, object] = {"company_sso_id": company, "tenant": tenant, "dry_run": dry_run}
        doc["report"] = _report(report)
        if dry_run:
            doc["plans"] = plans
        emit("enrich", doc, as_json)
        return
    click.echo(_summary(report, dry_run))


def _report(report: EnrichmentTally) -> dict[str, object]:
    return {
        "logs": report.logs,
        "complete": report.complete,
        "skipped": dict(report.skipped),
        "planned_patches": report.planned_patches,
        "planned_keys": report.planned_keys,
        "patched_docs": report.patched,
        "keys_set": report.keys_set,
        "keys_left_alone": report.keys_left_alone,
        "keys_too_large": report.keys_too_large,
        "keys_refused": dict(report.keys_refused),
    }


def _summary(report: EnrichmentTally, dry_run: bool) -> str:
    skipped = ", ".join(f"{reason} {count}" for reason, count in report.skipped.items()) or "none"
    seen = f"{report.logs} association log(s) lacking a key"
    if dry_run:
        return (
            f"dry run: {seen}; would patch {report.planned_patches} ({report.planned_keys} keys); "
            f"skipped: {skipped}; nothing changed"
        )
    refused = "".join(f", {count} refused ({name})" for name, count in report.keys_refused.items())
    return (
        f"{seen}; patched {report.patched} ({report.keys_set} keys, {report.keys_left_alone} "
        f"already set by another writer, {report.keys_too_large} too large for MongoDB's document limit"
        f"{refused}); nothing to add {report.complete}; skipped: {skipped}"
    )
