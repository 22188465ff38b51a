"""Preconditions every write path checks first: migration 035's indexes, and the account's tenant.

* **Indexes.** Exactly-once rests on the partial unique index ``uniq_company_external_id`` (a
  duplicate is refused by the database, never found by a query first), and "one job in progress
  per account" on ``idx_company_status``. Without them a replayed batch is inserted twice, so
  ``run``, ``trigger``, the HTTP ``migrate`` and ``enrich`` refuse with ``IndexesMissing`` until
  ``indexes up`` has run.
* **Tenant binding.** Person ids overlap across CRM tenants and contacts match on the bare
  ``crm_data.id``, so an account migrated from another tenant's schema would put one customer's
  history on another's contacts. An account is bound to one tenant by configuration
  (``company_sso_id → schema``); a different tenant is refused with ``TenantMismatch``. An
  account with no binding is refused with ``TenantUnbound`` unless the caller explicitly accepts
  an unbound tenant (the CLI's ``--allow-unbound-tenant``): the safe default is to refuse. A
  tenant bound to another account is ``TenantMismatch`` for every override: ``trigger``'s and
  the reading commands' (``enrich``, ``explain``, ``verify``, through
  ``MigrationService.tenant_for``), which take an unbound account's tenant as given. The HTTP
  ``migrate`` applies it to the tenant each record's ``external_id`` names
  (``tenant_of_external_id``), with no unbound override.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import IndexesMissing, TenantMismatch, TenantUnbound
from ..ports import IndexState
from ..transformer import parse_external_id


def require_indexes(indexes: IndexState) -> None:
    """Return quietly when 035's indexes are in place; else raise ``IndexesMissing`` naming them."""
    missing = indexes.missing_indexes()
    if missing:
        raise IndexesMissing(missing)


def tenant_of_external_id(company_sso_id: str, ext_id: str) -> str:
    """The CRM tenant ``ext_id`` names when it is ``crm:{tenant}:audit:{id}`` spelled as a run writes
    it (``transformer.external_id``: a canonical integer id, ``…:audit:026`` is not); else
    ``TenantMismatch`` — a log no run of any tenant writes, which verify would report a stray."""
    parsed = parse_external_id(ext_id)
    if parsed is None:
        raise TenantMismatch(
            f"external_id {ext_id[:200]!r} of company {company_sso_id} is not a CRM audit's "
            "(crm:{tenant}:audit:{id}): nothing was written"
        )
    return parsed[0]


def bound_tenant(
    company_sso_id: str,
    requested: str | None,
    bindings: Mapping[str, str],
    *,
    allow_unbound: bool = False,
) -> str:
    """The CRM tenant ``company_sso_id`` may be migrated from.

    With a binding: the bound tenant (``requested`` may be None or must equal it, else
    ``TenantMismatch``). Without one: ``TenantMismatch`` when ``requested`` is bound to another
    company (even with ``allow_unbound``); else ``requested`` when ``allow_unbound`` is set, else
    ``TenantUnbound`` (also when nothing was requested at all).
    """
    bound = bindings.get(company_sso_id)
    if bound is not None:
        if requested is not None and requested != bound:
            raise TenantMismatch(
                f"company {company_sso_id} is bound to CRM tenant {bound!r}, not {requested!r}: "
                "nothing was written"
            )
        return bound
    # The messages name no override: every surface reads them (the CLI, HTTP, a Celery task), and only
    # the CLI has one, which it adds itself (``--allow-unbound-tenant``). The fix is the binding.
    unbound = f"company {company_sso_id} has no tenant binding"
    fix = "add it to CRM_AUDIT_TENANTS (company_sso_id=schema)"
    if requested is None:
        raise TenantUnbound(f"{unbound}: {fix}")
    owners = sorted(company for company, tenant in bindings.items() if tenant == requested)
    if owners:
        # The override is for accounts nobody bound, never for a tenant bound to another account.
        raise TenantMismatch(
            f"CRM tenant {requested!r} is bound to company {owners[0]}, not {company_sso_id}: "
            "nothing was written"
        )
    if not allow_unbound:
        raise TenantUnbound(f"{unbound}, so CRM tenant {requested!r} is not used for it: {fix}")
    return requested
