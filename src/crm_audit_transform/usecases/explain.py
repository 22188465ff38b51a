"""Explain: every stage's decision for one audit row, with the same lookups a run would make."""

from __future__ import annotations

from attrs import frozen

from .. import reasons
from ..domain import ActivityLog, AuditRow, Failed, Migrated, Outcome
from ..lookup import LookupPorts, fetch_lookups
from ..ports import AuditSource, ContactDirectory, MigratedLogReader, SsoDirectory, UserDirectory
from ..transformer import StageDecision, Transformer


@frozen
class ExplainPorts:
    """``reader``: the migrated-log store's reader, whose ``content_of`` refuses a log the store can
    never hold (``verify`` asks it the same); None explains the transform alone."""

    source: AuditSource
    users: UserDirectory
    sso: SsoDirectory
    contacts: ContactDirectory
    reader: MigratedLogReader | None = None


@frozen
class Explanation:
    """``row`` is None when the tenant has no audit with that id; then there is nothing to explain."""

    audit_id: int
    tenant: str
    row: AuditRow | None
    stages: tuple[StageDecision, ...] = ()
    outcome: Outcome | None = None


def explain_audit(
    audit_id: int,
    *,
    company_sso_id: str,
    tenant: str,
    ports: ExplainPorts,
    transformer: Transformer,
) -> Explanation:
    """Load the row, look up what it needs, and return each stage's decision and the final outcome.

    A migrated log the store can never hold (``ports.reader.content_of`` raises: a document past
    MongoDB's 16 MiB, a value it cannot encode) ends in a ``write`` stage that failed and the
    ``write_error`` the run counts for that row, as ``verify`` counts it.
    """
    row = ports.source.audit_by_id(tenant, audit_id)
    if row is None:
        return Explanation(audit_id, tenant, None)
    prepared = transformer.prepare((row,))
    ctx = fetch_lookups(
        transformer.plan(prepared),
        company_sso_id=company_sso_id,
        tenant=tenant,
        ports=LookupPorts(ports.users, ports.sso, ports.contacts),
    )
    stages = tuple(transformer.explain(row, ctx, company_sso_id=company_sso_id))
    outcomes = transformer.transform(prepared, ctx, company_sso_id=company_sso_id).outcomes
    outcome = outcomes[0] if outcomes else None
    reader = ports.reader
    if reader is not None and isinstance(outcome, Migrated) and isinstance(outcome.log, ActivityLog):
        try:
            reader.content_of(outcome.log)
        except (ValueError, RecursionError) as error:
            stages = (*stages, StageDecision("write", "failed", str(error)))
            outcome = Failed(outcome.audit_id, reasons.WRITE_ERROR, str(error))
    return Explanation(audit_id, tenant, row, stages, outcome)
