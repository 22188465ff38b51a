"""The one composition root: real adapters wired to the use cases from a ``Settings``.

Nothing connects here or at import: each adapter is built on first use, and the PostgreSQL
session, the MongoDB client and the USMAN client are opened by their first query. ``close()``
releases whatever was opened. Tests and embedding services override any part by keyword
(``mongo_client=mongomock.MongoClient()``, ``sso=...``, ``clock=...``); the URI ``mongomock://``
builds an in-process mongomock client (one per runtime, so its data lives as long as it does).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pymongo import MongoClient

from crm_audit_transform import usecases
from crm_audit_transform.config import MappingConfig, load_config, load_default_config
from crm_audit_transform.domain import ActivityLog, BatchResult
from crm_audit_transform.enrichment import EnrichmentStore
from crm_audit_transform.errors import ConfigError, JobNotFound
from crm_audit_transform.ports import (
    ActivityLogStore,
    AuditSource,
    Clock,
    ContactDirectory,
    EntityDirectory,
    FeatureFlags,
    IndexState,
    JobStore,
    PeopleCounter,
    SsoDirectory,
    UserDirectory,
)
from crm_audit_transform.transformer import Transformer
from crm_audit_transform.usecases import ExplainPorts, MigrateBatch, RunPorts, TriggerPorts
from crm_audit_transform.usecases.safety import bound_tenant, require_indexes

from .crm_postgres import (
    PostgresAuditSource,
    PostgresEntityDirectory,
    PostgresPeopleCounter,
    PostgresUserDirectory,
    ReadOnlySession,
)
from .flags import ConfiguredFeatureFlags
from .mongo import MongoActivityLogStore, MongoContactDirectory, MongoIndexState, MongoJobStore
from .mongo.enrichment import MongoEnrichmentStore
from .settings import Settings
from .usman import UsmanClient

MONGOMOCK_URI = "mongomock://"


class SystemClock:
    """``ports.Clock`` on the wall clock, in UTC."""

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)


def _missing(setting: str, env: str) -> ConfigError:
    return ConfigError([(setting, f"not set: give {env} or `{setting}` in the configuration file")])


class Runtime:
    """Every port of the migration, built lazily; also the service the HTTP surface calls."""

    def __init__(
        self,
        settings: Settings,
        *,
        mongo_client: Any | None = None,
        sso: SsoDirectory | None = None,
        clock: Clock | None = None,
        flags: FeatureFlags | None = None,
    ) -> None:
        self.settings = settings
        self._mongo_client = mongo_client
        self._owns_mongo = mongo_client is None
        self._sso_override = sso
        self._clock = clock or SystemClock()
        self._flags = flags
        self._closers: list[Callable[[], None]] = []

    # -- the CRM (PostgreSQL, read-only) ---------------------------------------------------------
    @functools.cached_property
    def _pg(self) -> ReadOnlySession:
        if not self.settings.database_url:
            raise _missing("database_url", "CRM_AUDIT_DATABASE_URL")
        session = ReadOnlySession.from_dsn(self.settings.database_url)
        self._closers.append(session.close)
        return session

    @functools.cached_property
    def source(self) -> AuditSource:
        return PostgresAuditSource(self._pg)

    @functools.cached_property
    def users(self) -> UserDirectory:
        return PostgresUserDirectory(self._pg)

    @functools.cached_property
    def people(self) -> PeopleCounter:
        return PostgresPeopleCounter(self._pg)

    @functools.cached_property
    def entities(self) -> EntityDirectory:
        return PostgresEntityDirectory(self._pg)

    # -- the CDP (MongoDB) -----------------------------------------------------------------------
    @functools.cached_property
    def mongo_db(self) -> Any:
        if self._mongo_client is None:
            self._mongo_client = _mongo_client(self.settings.mongo_uri)
        if self._owns_mongo:
            self._closers.append(self._mongo_client.close)
        return self._mongo_client[self.settings.mongo_database]

    @functools.cached_property
    def logs(self) -> ActivityLogStore:
        return MongoActivityLogStore.in_database(self.mongo_db)

    @functools.cached_property
    def contacts(self) -> ContactDirectory:
        return MongoContactDirectory.in_database(self.mongo_db)

    @functools.cached_property
    def jobs(self) -> JobStore:
        return MongoJobStore.in_database(self.mongo_db)

    @functools.cached_property
    def indexes(self) -> IndexState:
        return MongoIndexState(self.mongo_db)

    @functools.cached_property
    def enrichment(self) -> EnrichmentStore:
        return MongoEnrichmentStore.in_database(self.mongo_db)

    # -- USMAN, flags, clock, rules --------------------------------------------------------------
    @functools.cached_property
    def sso(self) -> SsoDirectory:
        if self._sso_override is not None:
            return self._sso_override
        if self.settings.usman is None:
            raise _missing("usman.base_url", "CRM_AUDIT_USMAN_BASE_URL")
        client = UsmanClient(self.settings.usman)
        self._closers.append(client.close)
        return client

    @property
    def flags(self) -> FeatureFlags:
        return self._flags or ConfiguredFeatureFlags.parse(self.settings.enabled_companies)

    @property
    def clock(self) -> Clock:
        return self._clock

    @functools.cached_property
    def mapping(self) -> MappingConfig:
        path = self.settings.mapping_config
        return load_config(path) if path else load_default_config()

    @functools.cached_property
    def transformer(self) -> Transformer:
        return Transformer(self.mapping)

    # -- ports bundles for the use cases ---------------------------------------------------------
    def trigger_ports(self) -> TriggerPorts:
        return TriggerPorts(
            self.flags, self.contacts, self.people, self.jobs, self.source, self.clock, self.indexes
        )

    def run_ports(self) -> RunPorts:
        """The run's ports, association enrichment included (CRM entity names, in-place patches)."""
        return RunPorts(
            self.source,
            self.users,
            self.sso,
            self.contacts,
            self.logs,
            self.jobs,
            self.clock,
            entities=self.entities,
            enrichment=self.enrichment,
            indexes=self.indexes,
        )

    def explain_ports(self) -> ExplainPorts:
        return ExplainPorts(self.source, self.users, self.sso, self.contacts)

    def tenant_for(self, company_sso_id: str, tenant: str | None) -> str:
        """The bound tenant (``TenantMismatch`` if ``tenant`` differs); unbound: ``tenant`` when given,
        else the tenant of the account's latest job."""
        if company_sso_id in self.settings.tenants:
            return bound_tenant(company_sso_id, tenant, self.settings.tenants)
        if tenant is not None:
            return tenant
        job = self.jobs.latest(company_sso_id)
        if job is None:
            raise JobNotFound(f"company {company_sso_id} has no job to take the tenant from: pass --tenant")
        return job.tenant

    # -- the service the HTTP surface calls ------------------------------------------------------
    def migrate(self, records: Sequence[ActivityLog]) -> BatchResult:
        require_indexes(self.indexes)
        return MigrateBatch(self.logs)(records)

    def trigger(
        self,
        company_sso_id: str,
        tenant: str | None,
        date_range_start: dt.datetime | None,
        *,
        allow_unbound_tenant: bool = False,
    ) -> Mapping[str, Any]:
        """Bind the tenant (``TenantMismatch`` / ``TenantUnbound``), then the trigger's guards."""
        usecases.trigger(
            company_sso_id,
            bound_tenant(company_sso_id, tenant, self.settings.tenants, allow_unbound=allow_unbound_tenant),
            self.trigger_ports(),
            scope=self.transformer.scope,
            date_range_start=date_range_start,
            coverage_threshold=self.settings.coverage_threshold,
        )
        return self.status(company_sso_id)

    def status(self, company_sso_id: str) -> Mapping[str, Any]:
        return usecases.migration_status(company_sso_id, self.jobs).as_dict()

    def rollback(self, company_sso_id: str) -> int:
        return usecases.rollback(company_sso_id, jobs=self.jobs, logs=self.logs, clock=self.clock).deleted

    def close(self) -> None:
        while self._closers:
            closer = self._closers.pop()
            with contextlib.suppress(Exception):  # closing is best effort; nothing to report
                closer()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _mongo_client(uri: str | None) -> Any:
    if not uri:
        raise _missing("mongo_uri", "CRM_AUDIT_MONGO_URI")
    if uri.startswith(MONGOMOCK_URI):
        import mongomock  # a test dependency: only imported when asked for

        return mongomock.MongoClient(tz_aware=True)
    return MongoClient(uri, tz_aware=True, serverSelectionTimeoutMS=10_000)


def build_runtime(settings: Settings, **overrides: Any) -> Runtime:
    """The runtime for ``settings``; ``overrides`` replace parts (see ``Runtime``)."""
    return Runtime(settings, **overrides)
