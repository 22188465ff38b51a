"""A file dry run in one process and with a page pool, for tests that compare what each writes."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from crm_audit_adapters.bootstrap import DryRunFiles, dry_run_service
from crm_audit_adapters.files import CheckedRows, FileAuditSource
from crm_audit_adapters.files.sink import JsonlActivityLogSink
from crm_audit_transform.domain import Migrated, Outcome
from crm_audit_transform.tally import Tally
from support.corpus_account import company_sso_id, contact_docs, dump_jsonl, sso_docs
from support.corpus_world import CORPUS
from support.page_workers import page_pool

Written = tuple[list[object], Tally, bytes]
"""A dry run's outcomes in order (a migrated one as ``("migrated", id)``), its job's counts, and the
bytes it wrote."""


def dry_runs(
    tmp_path: Path,
    audits: Path,
    tenant: str,
    source: Callable[[int, CheckedRows], FileAuditSource],
    *,
    workers: Iterable[int] = (1, 2),
    checked: Callable[[Path], CheckedRows] = CheckedRows,
) -> dict[int, Written]:
    """A dry run of ``tenant`` over ``audits`` (the corpus's users, the tenant's contacts and SSO
    ids) for each count of ``workers``: ``source(workers, its CheckedRows)`` reads the file, and a
    page pool of that many processes transforms it when there are more than one."""
    contacts, sso = tmp_path / "contacts.jsonl", tmp_path / "sso.jsonl"
    contacts.write_text(dump_jsonl(contact_docs(tenant)), encoding="utf-8")
    sso.write_text(dump_jsonl(sso_docs(tenant)), encoding="utf-8")
    files = DryRunFiles(audits, CORPUS / "users.jsonl", contacts, sso, None)
    company = company_sso_id(tenant)
    results = {}
    for count in workers:
        out = tmp_path / f"logs{count}.jsonl"
        rows = checked(audits)
        outcomes: list[Outcome] = []
        with JsonlActivityLogSink(out) as sink, source(count, rows) as read:
            pool = page_pool(count) if count > 1 else None
            try:
                service = dry_run_service(
                    company, tenant, files, sink, checked=rows, source=read, pipeline=pool
                )
                result = service.dry_run(company, tenant, on_outcomes=outcomes.extend)
            finally:
                if pool is not None:
                    pool.close()
        # A worker's migrated log comes encoded (the bytes written are compared whole).
        listed = [("migrated", o.audit_id) if isinstance(o, Migrated) else o for o in outcomes]
        results[count] = (listed, result.job.tally, out.read_bytes())
    return results
