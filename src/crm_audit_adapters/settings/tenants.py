"""The tenant bindings: ``[tenants]`` overlaid by ``CRM_AUDIT_TENANTS``."""

from __future__ import annotations

from typing import Any

from .keys import ENV_PREFIX


def read_tenants(
    table: Any, env: str | None, problems: list[tuple[str, str]], in_file: str
) -> dict[str, str]:
    """``[tenants]`` (company_sso_id = "schema") overlaid by ``CRM_AUDIT_TENANTS="id=schema,…"``.

    A company named twice in the variable is a problem: the later pair would silently win, and an
    account is bound to one CRM tenant. A tenant bound to several companies (after the overlay) is one
    too: a tenant's data belongs to one account (mission: no cross-tenant data), and ``bound_tenant``
    would let each of them migrate it.
    """
    bindings: dict[str, str] = {}
    named: set[str] = set()
    if table is not None:
        if not isinstance(table, dict) or not all(isinstance(v, str) and v for v in table.values()):
            problems.append((f"{in_file}: tenants", 'expected a table of company_sso_id = "schema"'))
        else:
            bindings.update({str(k): v for k, v in table.items()})
    for part in (env or "").split(","):
        if not part.strip():
            continue
        company, sep, schema = part.partition("=")
        if not sep or not company.strip() or not schema.strip():
            problems.append(
                (
                    f"environment variable {ENV_PREFIX}TENANTS",
                    "expected company_sso_id=schema pairs separated by commas",
                )
            )
            break
        if company.strip() in named:
            # The later pair would silently win: one of the two is a mistake.
            problems.append(
                (f"environment variable {ENV_PREFIX}TENANTS", f"company {company.strip()} is named twice")
            )
        named.add(company.strip())
        bindings[company.strip()] = schema.strip()
    owners: dict[str, list[str]] = {}
    for company, schema in bindings.items():
        owners.setdefault(schema, []).append(company)
    for schema, companies in sorted(owners.items()):
        if len(companies) > 1:
            sources = sorted(
                {
                    f"environment variable {ENV_PREFIX}TENANTS" if c in named else f"{in_file}: tenants"
                    for c in companies
                }
            )
            problems.append(
                (
                    " and ".join(sources),
                    f"tenant {schema} is bound to {len(companies)} companies "
                    f"({', '.join(sorted(companies))}): a tenant's data belongs to one account",
                )
            )
    return bindings
