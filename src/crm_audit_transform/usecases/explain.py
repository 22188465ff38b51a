"""Explain: every stage's decision for one audit row, with the same lookups a run would make."""

from __future__ import annotations

from attrs import frozen

from ..domain import AuditRow, Outcome
from ..lookup import LookupPorts, fetch_lookups
from ..ports import AuditSource, ContactDirectory, SsoDirectory, UserDirectory
from ..transformer import StageDecision, Transformer


@frozen
class ExplainPorts:
    source: AuditSource
    users: UserDirectory
    sso: SsoDirectory
    contacts: ContactDirectory


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
    """Load the row, look up what it needs, and return each stage's decision and the final outcome."""
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
    return Explanation(audit_id, tenant, row, stages, outcomes[0] if outcomes else None)
