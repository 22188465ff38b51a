"""The application service: every operation on an account's migration, over ports.

The CLI, the HTTP app and a task-queue worker all call one ``MigrationService``; none of them
orchestrates. Each method is one use case (``usecases/``) fed from the service's ports and
settings, so an entrypoint only parses its input, calls one method and renders the value back.

The service reads its ports from a ``ServicePorts`` bundle *on every call*, never at
construction: a composition root that builds adapters lazily (``crm_audit_adapters.bootstrap``)
then opens only what an operation needs — ``status`` never connects to the CRM, ``trigger`` never
to USMAN — and nothing connects at import. Any object with these attributes will do (an attrs
class of in-memory adapters from ``crm_audit_transform.testing`` in tests).

    service = MigrationService(ports, transformer, settings=RunSettings())
    service.trigger("company-1", "acme")          → MigrationStatus
    service.run("company-1", owner="host:pid")    → RunResult
    service.run_shard("company-1", 0, owner=…)     → RunResult (one shard of a sharded job)
    service.status("company-1")                   → MigrationStatus

The class is one module a concern: ``_runs`` (trigger, run, run_shard, dry_run),
``_ops`` (status, latest_job, cancel, rollback, explain), ``_cdp_logs`` (enrich,
verify, migrate), on ``_base`` (the state, ``tenant_for``); ``ServicePorts`` is in
``_ports``.
"""

from __future__ import annotations

from ._cdp_logs import CdpLogOperations
from ._ops import OperatorCalls
from ._ports import ServicePorts
from ._runs import FLAG_DISABLED_REASON as FLAG_DISABLED_REASON
from ._runs import NOT_RUNNABLE as NOT_RUNNABLE
from ._runs import RunOperations

__all__ = ["MigrationService", "ServicePorts"]


class MigrationService(RunOperations, OperatorCalls, CdpLogOperations):
    """trigger · run · status · cancel · rollback · enrich · explain · dry_run · verify · migrate.

    ``transformer`` holds the rules (built from a ``MappingConfig``); ``settings`` the run's
    tunables; ``coverage_threshold`` the Phase-A share of people with a CDP contact a trigger needs;
    ``tenants`` binds accounts to their one CRM tenant (company_sso_id → schema, see
    ``usecases.safety``); ``pipeline`` prepares and transforms the pages of ``run``, ``run_shard``
    and ``dry_run`` (default: in this process; ``crm_audit_adapters.page_pool`` for workers);
    ``shards`` runs a sharded job's shards side by side in ``run`` (default: one after another;
    ``crm_audit_adapters.shard_processes`` for processes).
    Every write path first checks migration 035's indexes (``IndexesMissing``).
    Errors are the core's (``crm_audit_transform.errors``): guards refuse with their typed error,
    infrastructure that is down raises its ``*Unavailable``.
    """

    __slots__ = ()
