"""``Runtime``: every port of the migration built lazily from ``Settings``, and the service over them."""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from crm_audit_transform.chain import RuleChain
from crm_audit_transform.config import MappingConfig, load_config, load_default_config
from crm_audit_transform.errors import ConfigError
from crm_audit_transform.ports import (
    ActivityLogStore,
    AuditSource,
    Clock,
    ContactDirectory,
    EnrichmentStore,
    EntityDirectory,
    FeatureFlags,
    IndexState,
    JobStore,
    MigratedLogReader,
    MigratedLogs,
    PeopleCounter,
    SsoDirectory,
    UserDirectory,
)
from crm_audit_transform.service import MigrationService, ServicePorts
from crm_audit_transform.transformer import Transformer

from ..built_once import built_once
from ..flags import ConfiguredFeatureFlags
from ..settings import Settings
from ..settings.unset import setting_not_set
from .mongo_client import MONGOMOCK_URI, is_mongomock, mongo_client_for, wait_for_mongo

# Each adapter's module (and its driver: psycopg, pymongo, httpx) is imported where the adapter is
# built, so a command loads only the drivers it uses: `dry-run` neither pymongo nor psycopg.
if TYPE_CHECKING:
    from pymongo import MongoClient

    from ..crm_postgres import ReadOnlySession
    from ..mongo.documents_types import Document, MongoDatabase
    from ..page_pool import ProcessPagePipeline, TransformerRecipe
    from ..shard_processes import ProcessShardLauncher


class SystemClock:
    """``ports.Clock`` on the wall clock, in UTC."""

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    def monotonic(self) -> float:
        return time.monotonic()


class Runtime:
    """Every port of the migration, built lazily from ``Settings`` (a ``ServicePorts``), and the service.

    ``lease_bounded_mongo``: the MongoDB client it builds sets ``socketTimeoutMS`` from the lease
    (``mongo_client_for``) unless the URI sets it; False sets none, for a command that holds no lease
    and waits on one long call (``indexes up``: an index build over a large collection).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        mongo_client: MongoClient[Document] | None = None,
        sso: SsoDirectory | None = None,
        clock: Clock | None = None,
        flags: FeatureFlags | None = None,
        notice: Callable[[str], None] | None = None,
        rule_chain: Callable[[MappingConfig], RuleChain] | None = None,
        lease_bounded_mongo: bool = True,
    ) -> None:
        self.settings = settings
        self._lease_bounded_mongo = lease_bounded_mongo
        self._notice = notice
        self._rule_chain = rule_chain
        self._mongo_client = mongo_client
        self._mongo_given = mongo_client is not None
        self._sso_override = sso
        self._injected = mongo_client is not None or sso is not None
        self._own_clock_or_flags = clock is not None or flags is not None
        self._clock = clock or SystemClock()
        self._flags = flags
        self._closers: list[Callable[[], None]] = []
        self._pipeline: ProcessPagePipeline | None = None
        self._shards: ProcessShardLauncher | None = None

    # -- the CRM (PostgreSQL, read-only) ---------------------------------------------------------
    @built_once
    def _pg(self) -> ReadOnlySession:
        from ..crm_postgres import ReadOnlySession

        if not self.settings.database_url:
            raise setting_not_set("database_url", "CRM_AUDIT_DATABASE_URL")
        session = ReadOnlySession.from_dsn(self.settings.database_url)
        self._closers.append(session.close)
        return session

    @built_once
    def source(self) -> AuditSource:
        from ..crm_postgres import PostgresAuditSource

        # The loader's own limit: a value it refuses stays on the server (its size comes instead).
        return PostgresAuditSource(
            self._pg, page_bytes=self.settings.page_bytes, max_changes_bytes=self.settings.loader.max_bytes
        )

    @built_once
    def users(self) -> UserDirectory:
        from ..crm_postgres import PostgresUserDirectory

        return PostgresUserDirectory(self._pg)

    @built_once
    def people(self) -> PeopleCounter:
        from ..crm_postgres import PostgresPeopleCounter

        return PostgresPeopleCounter(self._pg)

    @built_once
    def entities(self) -> EntityDirectory:
        from ..crm_postgres import PostgresEntityDirectory

        return PostgresEntityDirectory(self._pg)

    # -- the CDP (MongoDB) -----------------------------------------------------------------------
    @built_once
    def mongo_db(self) -> MongoDatabase:
        from pymongo import MongoClient

        if self._mongo_client is None:
            # `indexes` holds no lease, and one of its calls waits on a whole index build.
            lease = self.settings.run.lease_seconds if self._lease_bounded_mongo else None
            self._mongo_client = mongo_client_for(self.settings.mongo_uri, lease_seconds=lease)
            self._closers.append(self._mongo_client.close)  # before the ping, which may fail
            if isinstance(self._mongo_client, MongoClient) and self.settings.mongo_uri:
                wait_for_mongo(self._mongo_client, self.settings.mongo_uri, self._notice)
        return self._mongo_client[self.settings.mongo_database]

    @built_once
    def logs(self) -> ActivityLogStore:
        from ..mongo import MongoActivityLogStore

        return MongoActivityLogStore.in_database(self.mongo_db)

    @property
    def migrated(self) -> MigratedLogs:
        """The same ``activity_logs`` store: rollback deletes what the run wrote."""
        return self.logs

    @built_once
    def contacts(self) -> ContactDirectory:
        from ..mongo import MongoContactDirectory

        db = self.mongo_db
        # A client of its own in a page pool's worker (``worker_copy``): only from the settings' URI,
        # never for a client given to this runtime (mongomock's data lives in this process).
        sendable = not self._mongo_given and not is_mongomock(db)
        return MongoContactDirectory.in_database(db, uri=self.settings.mongo_uri if sendable else None)

    @built_once
    def jobs(self) -> JobStore:
        from ..mongo import MongoJobStore

        # Lease expiries on the server's clock ($$NOW); mongomock cannot evaluate $$NOW, so an
        # in-process mongomock client gets them on this runtime's clock (docs/mongodb.md).
        clock = self._clock if is_mongomock(self.mongo_db) else None
        return MongoJobStore.in_database(self.mongo_db, clock=clock)

    def lease_now(self) -> dt.datetime | None:
        """When leases are compared outside the job store (``indexes down``): None, the server's
        ``$$NOW``; this runtime's clock for an in-process mongomock client, as ``jobs``."""
        return self._clock.now() if is_mongomock(self.mongo_db) else None

    @built_once
    def indexes(self) -> IndexState:
        from ..mongo import MongoIndexState

        return MongoIndexState(self.mongo_db)

    @built_once
    def reader(self) -> MigratedLogReader:
        from ..mongo.verification import MongoMigratedLogReader

        return MongoMigratedLogReader.in_database(self.mongo_db)

    @built_once
    def enrichment(self) -> EnrichmentStore:
        from ..mongo.enrichment import MongoEnrichmentStore

        return MongoEnrichmentStore.in_database(self.mongo_db)

    # -- USMAN, flags, clock, rules --------------------------------------------------------------
    @built_once
    def sso(self) -> SsoDirectory:
        if self._sso_override is not None:
            return self._sso_override
        if self.settings.usman is None:
            raise setting_not_set("usman.base_url", "CRM_AUDIT_USMAN_BASE_URL")
        from ..usman import UsmanClient

        # A page's lookups end within the half of the lease its renewal leaves (usman_config.LEASE_SHARE).
        client = UsmanClient(self.settings.usman.within_lease(self.settings.run.lease_seconds))
        self._closers.append(client.close)
        return client

    @property
    def flags(self) -> FeatureFlags:
        return self._flags or ConfiguredFeatureFlags.parse(self.settings.enabled_companies)

    @property
    def clock(self) -> Clock:
        return self._clock

    @built_once
    def mapping(self) -> MappingConfig:
        path = self.settings.mapping_config
        return load_config(path) if path else load_default_config()

    @built_once
    def transformer(self) -> Transformer:
        """The rules from the mapping config; ``rule_chain`` (given the config) may change them."""
        chain = self._rule_chain(self.mapping) if self._rule_chain is not None else None
        return Transformer(self.mapping, limits=self.settings.loader, chain=chain)

    @property
    def recipe(self) -> TransformerRecipe:
        """How a worker process builds the same rules as ``transformer`` (``use_workers``)."""
        from ..page_pool import TransformerRecipe

        return TransformerRecipe(self.mapping, self.settings.loader, self._rule_chain)

    def use_workers(self, workers: int) -> None:
        """Have the service's runs load and transform their pages in ``workers`` processes.

        1 means this process alone (the default); N is this one and N - 1 worker processes, this one
        transforming pages too whenever it would wait. The workers start at once, in the background
        (``ProcessPagePipeline.started``): their fork and start overlap what the run does before its
        first page (its lease, its checks, its first pages' ids), so they take pages from the first
        one on instead of joining the run a few pages in. They are stopped when the runtime closes.
        Call before the first use of ``service``.
        """
        if "service" in self.__dict__:
            raise RuntimeError("use_workers must be called before the service is built")
        if workers > 1:
            from ..fork_server import RUNNER_PORTS, sigint_blocked
            from ..page_pool import ProcessPagePipeline

            with sigint_blocked():  # the fork server it starts inherits the block (fork_server)
                # Its workers look their pages up over clients of their own: their drivers too.
                self._pipeline = ProcessPagePipeline.started(workers, self.recipe, preload=RUNNER_PORTS)
            self._closers.append(self._pipeline.close)

    def use_shard_processes(self, workers: int) -> None:
        """Have the service's ``run`` take a sharded job's shards side by side, up to ``workers``
        at once, each in a process of its own that builds its clients from these settings
        (``shard_processes``), with this runtime's ``rule_chain``. 1 keeps them one after another.
        ``ConfigError`` for a runtime with injected parts (a client, an ``sso``, ``mongomock://``,
        a ``clock`` or ``flags``): another process cannot rebuild them, and a shard run without
        them would run by other rules than this runtime. Call before the first use of ``service``.
        """
        if "service" in self.__dict__:
            raise RuntimeError("use_shard_processes must be called before the service is built")
        if workers <= 1:
            return
        if self._injected or (self.settings.mongo_uri or "").startswith(MONGOMOCK_URI):
            why = "shard processes build their clients from the settings: injected ones cannot cross"
            raise ConfigError([("workers", why)])
        if self._own_clock_or_flags:
            why = "shard processes take their clock and feature flags from the settings: yours cannot cross"
            raise ConfigError([("workers", why)])
        from ..shard_processes import ProcessShardLauncher, SettingsShardRun

        self._shards = ProcessShardLauncher(workers, SettingsShardRun(self.settings, self._rule_chain))
        self._closers.append(self._shards.close)

    # -- the application service ---------------------------------------------------------------
    @built_once
    def service(self) -> MigrationService:
        """The one application service over these adapters (each built when an operation needs it)."""
        return self.service_over(self)

    def service_over(self, ports: ServicePorts) -> MigrationService:
        """The service with this runtime's rules and settings over ``ports`` (e.g. these, observed).

        The account → tenant bindings come from ``Settings.tenants``.
        """
        return MigrationService(
            ports,
            self.transformer,
            settings=self.settings.run,
            coverage_threshold=self.settings.coverage_threshold,
            tenants=self.settings.tenants,
            pipeline=self._pipeline,
            shards=self._shards,
        )

    def close(self) -> None:
        """Close what the runtime opened, the last opened first; best effort, nothing to report.

        A Ctrl-C (``KeyboardInterrupt``) during one closer — a client's socket, a session, a wait —
        ends that closer, not the close: the others are still closed and ``close`` returns, so a
        command whose work was done ends as it did (a completed run as completed, not exit 130), as
        the page pool's own close does with its waits. A command that a Ctrl-C interrupted still
        ends interrupted: that ``KeyboardInterrupt`` is the one ``__exit__`` was given, and it goes on.
        """
        while self._closers:
            closer = self._closers.pop()
            with contextlib.suppress(Exception, KeyboardInterrupt):
                closer()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is not None and self._pipeline is not None:
            # Left by an exception (a second Ctrl-C, a typed error): the page workers are not
            # waited for, or one that never answers would hold the exit (ProcessPagePipeline.close).
            self._pipeline.close(wait=False)
        self.close()


def build_runtime(settings: Settings, **overrides: Any) -> Runtime:
    """The runtime for ``settings``; ``overrides`` replace parts (see ``Runtime``)."""
    return Runtime(settings, **overrides)
