"""What every ``MigrationService`` operation shares: its ports, rules and settings, the tenant guard
of every tenant override (``tenant_for``) and the run's ports (``service``).
"""

from __future__ import annotations

from collections.abc import Mapping

from .._arguments import refuse_wrong_types
from ..errors import JobNotFound
from ..ports import Clock, PagePipeline, ShardLauncher
from ..transformer import Transformer
from ..usecases import DEFAULT_COVERAGE_THRESHOLD, RunSettings
from ..usecases.run import RunPorts
from ..usecases.safety import bound_tenant
from ._ports import ServicePorts


class ServiceBase:
    """The service's state and the helpers its operations share (``MigrationService`` documents it)."""

    __slots__ = (
        "_coverage_threshold",
        "_pipeline",
        "_ports",
        "_settings",
        "_shard_launcher",
        "_tenants",
        "_transformer",
    )

    def __init__(
        self,
        ports: ServicePorts,
        transformer: Transformer,
        *,
        settings: RunSettings | None = None,
        coverage_threshold: float = DEFAULT_COVERAGE_THRESHOLD,
        tenants: Mapping[str, str] | None = None,
        pipeline: PagePipeline | None = None,
        shards: ShardLauncher | None = None,
    ) -> None:
        refuse_wrong_types(
            "MigrationService",
            (
                ("transformer", transformer, Transformer, False),
                ("settings", settings, RunSettings, True),
                ("tenants", tenants, Mapping, True),
                ("coverage_threshold", coverage_threshold, (int, float), False),
            ),
        )
        self._ports = ports
        self._pipeline = pipeline
        self._shard_launcher = shards
        self._tenants = dict(tenants or {})
        self._transformer = transformer
        self._settings = settings or RunSettings()
        self._coverage_threshold = coverage_threshold

    @property
    def transformer(self) -> Transformer:
        return self._transformer

    @property
    def settings(self) -> RunSettings:
        return self._settings

    @property
    def clock(self) -> Clock:
        """The ports' clock: the time the guards read (a trigger's ``date_range_start`` may not be
        after its ``now()``), for a caller that checks a value first (the HTTP route's 400)."""
        return self._ports.clock

    def tenant_for(self, company_sso_id: str, tenant: str | None) -> str:
        """The tenant an operation on the account reads: the one guard of every tenant override
        (``enrich``, ``explain``, ``verify``; ``trigger`` applies the same ``bound_tenant``).

        A bound account: its bound tenant (``TenantMismatch`` if ``tenant`` names another). Unbound:
        ``tenant`` when given, else the tenant of the account's latest job (``JobNotFound`` if
        none) — and either is ``TenantMismatch`` when another account is bound to it, as
        ``trigger --allow-unbound-tenant`` refuses it: person ids overlap across tenants, so
        reading another account's tenant would put its CRM data on this account's logs.
        """
        if tenant is None and company_sso_id not in self._tenants:
            job = self._ports.jobs.latest(company_sso_id)
            if job is None:
                raise JobNotFound(
                    f"company {company_sso_id} has no job to take the tenant from: pass --tenant"
                )
            tenant = job.tenant
        return bound_tenant(company_sso_id, tenant, self._tenants, allow_unbound=True)

    def _run_ports(self) -> RunPorts:
        p = self._ports
        return RunPorts(
            p.source,
            p.users,
            p.sso,
            p.contacts,
            p.logs,
            p.jobs,
            p.clock,
            entities=p.entities,
            indexes=p.indexes,
        )
