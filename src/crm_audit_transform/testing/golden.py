"""Golden testing kit: run a mapping configuration over the real audited 5.8.0 rows and snapshot it.

The package ships the corpus (rows written by the real ``audited`` gem 5.8.0, five tenants, text and
jsonb columns) with derived CRM users, SSO ids and CDP contacts, so a team can pin what its own
configuration makes of every row::

    result = transform_corpus(my_config, "acme")
    assert snapshot == snapshot_of(result)        # syrupy; see docs/golden-testing.md

Everything is read from the package data; nothing touches a network, a database or the clock.
"""

from __future__ import annotations

from collections.abc import Mapping

from attrs import frozen

from ..chain import RuleChain
from ..config import MappingConfig
from ..domain import AuditRow, Contact, CrmUser
from ..lookup import LookupPorts, fetch_lookups
from ..lookup_cache import LookupCache
from ..tally import Tally
from ..transformer import PageResult, Transformer
from . import _corpus_data
from ._snapshot import log_snapshot, outcome_snapshot, snapshot_of
from .lookups import InMemoryContactDirectory, InMemorySsoDirectory, InMemoryUserDirectory

__all__ = [
    "CorpusTenant",
    "corpus_tenant",
    "corpus_tenants",
    "log_snapshot",
    "outcome_snapshot",
    "snapshot_of",
    "transform_corpus",
]

PAGE_SIZE = 500  # the run loop's page size, so lookups are batched as in a real run


@frozen
class CorpusTenant:
    """One tenant of the corpus: its rows in id order and the CRM/CDP data its lookups answer from.

    The ``*_directory`` methods build fresh in-memory ports (their call logs start empty), so a test
    may also drive :func:`~crm_audit_transform.lookup.fetch_lookups` or a whole run itself.
    """

    name: str
    company_sso_id: str
    rows: tuple[AuditRow, ...]
    users: tuple[CrmUser, ...]
    sso_ids: Mapping[str, str]
    contacts: tuple[Contact, ...]

    def user_directory(self) -> InMemoryUserDirectory:
        return InMemoryUserDirectory({self.name: self.users})

    def sso_directory(self, *, failing: bool = False) -> InMemorySsoDirectory:
        """SSO ids by email; ``failing=True`` makes every lookup raise ``DirectoryUnavailable``."""
        return InMemorySsoDirectory(self.sso_ids, failing=failing)

    def contact_directory(self) -> InMemoryContactDirectory:
        return InMemoryContactDirectory(self.contacts)


def corpus_tenants() -> tuple[str, ...]:
    """The corpus tenant names, sorted: three with a text column, two (``*_jsonb``) with jsonb."""
    return tuple(sorted(_corpus_data.companies()))


def corpus_tenant(name: str) -> CorpusTenant:
    """Read one tenant of the corpus; an unknown name raises ``ValueError`` listing the known ones."""
    companies = _corpus_data.companies()
    if name not in companies:
        raise ValueError(f"no corpus tenant {name!r}; known: {', '.join(sorted(companies))}")
    company = companies[name]
    rows = _corpus_data.audit_rows(name, jsonb=name in _corpus_data.jsonb_tenants())
    return CorpusTenant(
        name=name,
        company_sso_id=company,
        rows=rows,
        users=_corpus_data.users(name),
        sso_ids=_corpus_data.sso_ids(),
        contacts=_corpus_data.contacts(company),
    )


def transform_corpus(
    config: MappingConfig,
    tenant: str | CorpusTenant,
    *,
    page_size: int = PAGE_SIZE,
    chain: RuleChain | None = None,
) -> PageResult:
    """Every row of a corpus tenant through ``config``, computed page by page like a run.

    Each page is prepared, planned, looked up (one call per port per page; users and SSO ids are
    cached for the whole call, as a run does) and transformed; the pages' results are joined.

    Unlike a run, rows outside the configuration's scope are not filtered out at the source: they
    come back as ``unmapped_action_type`` skips, so the result has exactly one outcome per corpus row,
    in row order, and a snapshot shows what a configuration leaves out too.

    ``chain`` runs a rule chain of your own (default: ``RuleChain.from_config(config)``), so a team
    can snapshot its own stages over the corpus too.
    """
    if isinstance(page_size, bool) or not isinstance(page_size, int):
        raise TypeError(f"page_size must be an int, got {type(page_size).__name__}")
    if page_size < 1:
        raise ValueError(f"page_size must be at least 1, got {page_size}")
    if not isinstance(tenant, str | CorpusTenant):
        # It was an AttributeError from inside (``None.user_directory``).
        raise TypeError(
            f"tenant must be a corpus tenant's name or a CorpusTenant, got {type(tenant).__name__}"
        )
    data = corpus_tenant(tenant) if isinstance(tenant, str) else tenant
    transformer = Transformer(config, chain=chain)
    users, sso, contacts = data.user_directory(), data.sso_directory(), data.contact_directory()
    cache = LookupCache()
    pages: list[PageResult] = []
    for start in range(0, len(data.rows), page_size):
        prepared = transformer.prepare(data.rows[start : start + page_size])
        ctx = fetch_lookups(
            transformer.plan(prepared),
            company_sso_id=data.company_sso_id,
            tenant=data.name,
            ports=LookupPorts(users, sso, contacts),
            cache=cache,
        )
        pages.append(transformer.transform(prepared, ctx, company_sso_id=data.company_sso_id))
    return PageResult(
        tuple(o for page in pages for o in page.outcomes),
        sum((page.tally for page in pages), Tally()),
        tuple(flag for page in pages for flag in page.fell_through),
        tuple(flag for page in pages for flag in page.degraded),
    )
