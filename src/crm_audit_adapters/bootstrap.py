"""The one composition root: adapters wired into the ``MigrationService`` from a ``Settings``.

Every entrypoint gets its service here: the ops runner (``build_runtime(settings).service``), the
HTTP app (``build_http_app``, with its BasicAuth password and session secret from the same
``Settings``) and the dry run (``dry_run_service``: files in, a JSONL sink out, the job in memory).

Nothing connects here or at import: each adapter is built on first use, and the PostgreSQL
session, the MongoDB client and the USMAN client are opened by their first query. ``close()``
releases whatever was opened. Tests and embedding services override any part by keyword
(``mongo_client=mongomock.MongoClient()``, ``sso=...``, ``clock=...``, ``notice=`` a callable that
receives progress notes such as "connecting to MongoDB at …", ``rule_chain=`` a callable that
turns the mapping config into the service's ``RuleChain``, to plug in rules of one's own); the URI
``mongomock://`` builds an in-process mongomock client (one per runtime, so its data lives as long
as it does). A real MongoDB
is pinged once when first used, so an unreachable server costs one ``serverSelectionTimeoutMS``
(the URI's, else 10 s) and a refused login is reported as configuration.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attrs import frozen

from crm_audit_transform.chain import RuleChain
from crm_audit_transform.config import MappingConfig, load_config, load_default_config
from crm_audit_transform.errors import ConfigError, DependencyMissing, StoreUnavailable
from crm_audit_transform.loading import LoaderLimits
from crm_audit_transform.ports import (
    ActivityLogStore,
    ActivityLogWriter,
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
    PagePipeline,
    PeopleCounter,
    SsoDirectory,
    UserDirectory,
)
from crm_audit_transform.service import MigrationService, ServicePorts
from crm_audit_transform.testing import (
    FixedClock,
    InMemoryIndexState,
    InMemoryJobStore,
    InMemoryPeopleCounter,
    InMemorySsoDirectory,
    InMemoryUserDirectory,
)
from crm_audit_transform.transformer import Transformer

from .flags import ConfiguredFeatureFlags
from .redaction import ScrubbingFilter, scrub
from .settings import Settings

# Each adapter's module (and its driver: psycopg, pymongo, httpx) is imported where the adapter is
# built, so a command loads only the drivers it uses: `dry-run` neither pymongo nor psycopg.
if TYPE_CHECKING:
    from pymongo import MongoClient
    from starlette.applications import Starlette

    from .crm_postgres import ReadOnlySession
    from .files import CheckedRows
    from .mongo.documents_types import Document, MongoDatabase
    from .page_pool import ProcessPagePipeline, TransformerRecipe
    from .shard_processes import ProcessShardLauncher

MONGOMOCK_URI = "mongomock://"


class SystemClock:
    """``ports.Clock`` on the wall clock, in UTC."""

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)


def _missing(setting: str, env: str) -> ConfigError:
    return ConfigError(
        [(setting, f"not set: give {env} or `{setting}` in the settings file")],
        source="the runner's settings",
    )


class Runtime:
    """Every port of the migration, built lazily from ``Settings`` (a ``ServicePorts``), and the service."""

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
    ) -> None:
        self.settings = settings
        self._notice = notice
        self._rule_chain = rule_chain
        self._mongo_client = mongo_client
        self._sso_override = sso
        self._injected = mongo_client is not None or sso is not None
        self._clock = clock or SystemClock()
        self._flags = flags
        self._closers: list[Callable[[], None]] = []
        self._pipeline: ProcessPagePipeline | None = None
        self._shards: ProcessShardLauncher | None = None

    # -- the CRM (PostgreSQL, read-only) ---------------------------------------------------------
    @functools.cached_property
    def _pg(self) -> ReadOnlySession:
        from .crm_postgres import ReadOnlySession

        if not self.settings.database_url:
            raise _missing("database_url", "CRM_AUDIT_DATABASE_URL")
        session = ReadOnlySession.from_dsn(self.settings.database_url)
        self._closers.append(session.close)
        return session

    @functools.cached_property
    def source(self) -> AuditSource:
        from .crm_postgres import PostgresAuditSource

        return PostgresAuditSource(self._pg, page_bytes=self.settings.page_bytes)

    @functools.cached_property
    def users(self) -> UserDirectory:
        from .crm_postgres import PostgresUserDirectory

        return PostgresUserDirectory(self._pg)

    @functools.cached_property
    def people(self) -> PeopleCounter:
        from .crm_postgres import PostgresPeopleCounter

        return PostgresPeopleCounter(self._pg)

    @functools.cached_property
    def entities(self) -> EntityDirectory:
        from .crm_postgres import PostgresEntityDirectory

        return PostgresEntityDirectory(self._pg)

    # -- the CDP (MongoDB) -----------------------------------------------------------------------
    @functools.cached_property
    def mongo_db(self) -> MongoDatabase:
        from pymongo import MongoClient

        if self._mongo_client is None:
            self._mongo_client = _mongo_client(self.settings.mongo_uri)
            self._closers.append(self._mongo_client.close)  # before the ping, which may fail
            if isinstance(self._mongo_client, MongoClient) and self.settings.mongo_uri:
                wait_for_mongo(self._mongo_client, self.settings.mongo_uri, self._notice)
        return self._mongo_client[self.settings.mongo_database]

    @functools.cached_property
    def logs(self) -> ActivityLogStore:
        from .mongo import MongoActivityLogStore

        return MongoActivityLogStore.in_database(self.mongo_db)

    @property
    def migrated(self) -> MigratedLogs:
        """The same ``activity_logs`` store: rollback deletes what the run wrote."""
        return self.logs

    @functools.cached_property
    def contacts(self) -> ContactDirectory:
        from .mongo import MongoContactDirectory

        return MongoContactDirectory.in_database(self.mongo_db)

    @functools.cached_property
    def jobs(self) -> JobStore:
        from .mongo import MongoJobStore

        # Lease expiries on the server's clock ($$NOW); mongomock cannot evaluate $$NOW, so an
        # in-process mongomock client gets them on this runtime's clock (docs/mongodb.md).
        clock = self._clock if _is_mongomock(self.mongo_db) else None
        return MongoJobStore.in_database(self.mongo_db, clock=clock)

    def lease_now(self) -> dt.datetime | None:
        """When leases are compared outside the job store (``indexes down``): None, the server's
        ``$$NOW``; this runtime's clock for an in-process mongomock client, as ``jobs``."""
        return self._clock.now() if _is_mongomock(self.mongo_db) else None

    @functools.cached_property
    def indexes(self) -> IndexState:
        from .mongo import MongoIndexState

        return MongoIndexState(self.mongo_db)

    @functools.cached_property
    def reader(self) -> MigratedLogReader:
        from .mongo.verification import MongoMigratedLogReader

        return MongoMigratedLogReader.in_database(self.mongo_db)

    @functools.cached_property
    def enrichment(self) -> EnrichmentStore:
        from .mongo.enrichment import MongoEnrichmentStore

        return MongoEnrichmentStore.in_database(self.mongo_db)

    # -- USMAN, flags, clock, rules --------------------------------------------------------------
    @functools.cached_property
    def sso(self) -> SsoDirectory:
        if self._sso_override is not None:
            return self._sso_override
        if self.settings.usman is None:
            raise _missing("usman.base_url", "CRM_AUDIT_USMAN_BASE_URL")
        from .usman import UsmanClient

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
        """The rules from the mapping config; ``rule_chain`` (given the config) may change them."""
        chain = self._rule_chain(self.mapping) if self._rule_chain is not None else None
        return Transformer(self.mapping, limits=self.settings.loader, chain=chain)

    @property
    def recipe(self) -> TransformerRecipe:
        """How a worker process builds the same rules as ``transformer`` (``use_workers``)."""
        from .page_pool import TransformerRecipe

        return TransformerRecipe(self.mapping, self.settings.loader, self._rule_chain)

    def use_workers(self, workers: int) -> None:
        """Have the service's runs load and transform their pages in ``workers`` processes.

        1 means this process alone (the default); N is this one and N - 1 worker processes, this one
        transforming pages too whenever it would wait. The workers start with the first run and are
        stopped when the runtime closes. Call before the first use of ``service``.
        """
        if "service" in self.__dict__:
            raise RuntimeError("use_workers must be called before the service is built")
        if workers > 1:
            from .page_pool import ProcessPagePipeline

            self._pipeline = ProcessPagePipeline(workers, self.recipe)
            self._closers.append(self._pipeline.close)

    def use_shard_processes(self, workers: int) -> None:
        """Have the service's ``run`` take a sharded job's shards side by side, up to ``workers``
        at once, each in a process of its own that builds its clients from these settings
        (``shard_processes``). 1 keeps them one after another. ``ConfigError`` for a runtime with
        injected parts (a client, an ``sso``, ``mongomock://``): another process cannot rebuild
        them. Call before the first use of ``service``.
        """
        if "service" in self.__dict__:
            raise RuntimeError("use_shard_processes must be called before the service is built")
        if workers <= 1:
            return
        if self._injected or (self.settings.mongo_uri or "").startswith(MONGOMOCK_URI):
            why = "shard processes build their clients from the settings: injected ones cannot cross"
            raise ConfigError([("workers", why)])
        from .shard_processes import ProcessShardLauncher, SettingsShardRun

        self._shards = ProcessShardLauncher(workers, SettingsShardRun(self.settings))
        self._closers.append(self._shards.close)

    # -- the application service ---------------------------------------------------------------
    @functools.cached_property
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
        while self._closers:
            closer = self._closers.pop()
            with contextlib.suppress(Exception):  # closing is best effort; nothing to report
                closer()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


DEFAULT_SERVER_SELECTION_TIMEOUT_MS = 10_000
"""Used only when the URI does not set ``serverSelectionTimeoutMS`` itself (pymongo's own is 30 s)."""
_NOTICE_AFTER_S = 1.0  # a reachable server answers well within this; say what we wait for after it


def _mongo_client(uri: str | None) -> MongoClient[Document]:
    """A client for ``uri``; the URI's own options win over the runner's defaults.

    ``ConfigError`` for a URI pymongo refuses, ``DependencyMissing`` for ``mongomock://`` without
    mongomock installed. Nothing connects here (pymongo connects in the background).
    """
    from pymongo import MongoClient
    from pymongo.errors import PyMongoError

    if not uri:
        raise _missing("mongo_uri", "CRM_AUDIT_MONGO_URI")
    if uri.startswith(MONGOMOCK_URI):
        try:
            import mongomock  # a test dependency: only imported when asked for
        except ImportError:
            raise DependencyMissing(
                [
                    (
                        "mongo_uri",
                        "mongomock:// needs mongomock: pip install mongomock (the [dev] extra has it)",
                    )
                ]
            ) from None
        # mongomock ships no types: its client stands in for pymongo's, which it mimics.
        return mongomock.MongoClient(tz_aware=True)
    options: dict[str, Any] = {}
    if not _SELECTION_TIMEOUT_OPTION.search(uri):
        options["serverSelectionTimeoutMS"] = DEFAULT_SERVER_SELECTION_TIMEOUT_MS
    try:
        return MongoClient(uri, tz_aware=True, **options)
    except PyMongoError as exc:
        # pymongo's message may quote the URI: scrubbed, never raw.
        raise ConfigError([("mongo_uri", f"pymongo refused the URI: {scrub(str(exc), [uri])}")]) from None


_SELECTION_TIMEOUT_OPTION = re.compile(r"[?&;]serverSelectionTimeoutMS=", re.IGNORECASE)


def wait_for_mongo(client: MongoClient[Document], uri: str, notice: Callable[[str], None] | None) -> None:
    """Ping the server once, saying "connecting to MongoDB at …" if that takes over a second.

    The wait is bounded by the client's ``serverSelectionTimeoutMS``; then ``StoreUnavailable``
    (exit 6). A refused login is ``ConnectionRejected`` (exit 3).
    """
    from pymongo.errors import PyMongoError

    from .mongo.retry import rejected_login

    seeds = client.topology_description.server_descriptions()  # the URI's hosts until discovery
    hosts = ", ".join(f"{host}:{port}" for host, port in seeds) or "?"
    timeout_s = client.options.server_selection_timeout
    timer = None
    if notice is not None:
        timer = threading.Timer(
            _NOTICE_AFTER_S, notice, [f"connecting to MongoDB at {hosts} (giving up after {timeout_s:g} s)…"]
        )
        timer.daemon = True
        timer.start()
    try:
        client.admin.command("ping")
    except PyMongoError as exc:
        rejected = rejected_login(exc)
        if rejected is not None:
            raise rejected from None
        # pymongo appends its whole topology description: the first clause says what went wrong.
        cause = re.split(r" \(configured timeouts|, Timeout: ", str(exc))[0]
        raise StoreUnavailable(
            f"MongoDB at {hosts} unreachable after {timeout_s:g} s (serverSelectionTimeoutMS): "
            f"{scrub(cause, [uri])}"
        ) from None
    finally:
        if timer is not None:
            timer.cancel()


def _is_mongomock(db: object) -> bool:
    return type(db).__module__.startswith("mongomock")


def build_runtime(settings: Settings, **overrides: Any) -> Runtime:
    """The runtime for ``settings``; ``overrides`` replace parts (see ``Runtime``)."""
    return Runtime(settings, **overrides)


def build_http_app(settings: Settings, **overrides: Any) -> Starlette:
    """The HTTP surface over ``build_runtime(settings).service``; the runtime closes with the app.

    ``ConfigError`` naming ``CRM_AUDIT_HTTP_PASSWORD`` / ``CRM_AUDIT_SESSION_SECRET`` when either
    is unset: the surface never starts with a default secret.
    """
    needed = {
        "CRM_AUDIT_HTTP_PASSWORD": settings.http_password,
        "CRM_AUDIT_SESSION_SECRET": settings.session_secret,
    }
    missing = [(name, "not set") for name, value in needed.items() if not value]
    if missing:
        raise ConfigError(missing)
    from .http import BasicAuthCredentials, SignedSessionResolver, create_app  # the optional [http] extra
    from .http.errors import log as errors_log

    # The 503 causes it logs are secret-free at their source; the filter is the second line.
    for old in [f for f in errors_log.filters if isinstance(f, ScrubbingFilter)]:
        errors_log.removeFilter(old)  # one app per process; a rebuilt app replaces its filter
    errors_log.addFilter(ScrubbingFilter(settings.secrets()))
    runtime = build_runtime(settings, **overrides)
    return create_app(
        runtime.service,
        basic_auth=BasicAuthCredentials(settings.http_user, str(settings.http_password)),
        sessions=SignedSessionResolver(
            secret=str(settings.session_secret).encode(), max_age=settings.session_max_age
        ),
        max_json_depth=settings.loader.max_depth,
        on_close=runtime.close,
    )


@frozen
class DryRunFiles:
    """The dry run's inputs: audits (JSONL or psql CSV), users, contacts and SSO ids (JSONL)."""

    audits: Path
    users: Path
    contacts: Path
    sso_directory: Path
    mapping: Path | None = None


@frozen
class _DryRunPorts:
    """``ServicePorts`` over files and in-memory stores: no server, and no CDP to enrich."""

    source: AuditSource
    users: UserDirectory
    sso: SsoDirectory
    contacts: ContactDirectory
    logs: ActivityLogWriter
    jobs: JobStore
    clock: Clock
    flags: FeatureFlags
    people: PeopleCounter
    indexes: IndexState
    migrated: MigratedLogs | None = None
    entities: EntityDirectory | None = None
    enrichment: EnrichmentStore | None = None
    reader: MigratedLogReader | None = None


def dry_run_service(
    company_sso_id: str,
    tenant: str,
    files: DryRunFiles,
    sink: ActivityLogWriter,
    *,
    limits: LoaderLimits | None = None,
    checked: CheckedRows | None = None,
    reader: MigratedLogReader | None = None,
    source: AuditSource | None = None,
    pipeline: PagePipeline | None = None,
) -> MigrationService:
    """A service whose ``dry_run`` reads ``files`` and writes the logs to ``sink``, the job in memory.

    The audits are streamed from their id-ordered file (``FileAuditSource``, or ``source`` when
    given — the CLI passes one it closes); the contacts through a file index. With ``reader`` (a
    dry run's output, ``files.verification.JsonlMigratedLogReader``) its ``verify`` checks that
    output against the same files; there is no job to check or repair.

    The clock is fixed so that two dry runs over the same files write the same documents.
    ``limits`` are the loader's; ``checked`` collects the audits file's own failures (repeated ids,
    unbuildable rows with an id) as outcomes, as the run reads them. ``pipeline`` transforms the
    pages (``dry_run_recipe`` gives a pool the same rules); default: in this process.
    """
    from .files import CheckedRows, FileAuditSource, JsonlContactDirectory, read_sso_directory, read_users

    mapping = load_config(files.mapping) if files.mapping else load_default_config()
    checked = checked or CheckedRows(files.audits)
    clock = FixedClock()
    ports = _DryRunPorts(
        source=source if source is not None else FileAuditSource(files.audits, tenant, checked=checked),
        users=InMemoryUserDirectory({tenant: read_users(files.users, tenant).values()}),
        sso=InMemorySsoDirectory(read_sso_directory(files.sso_directory, company_sso_id)),
        contacts=JsonlContactDirectory(files.contacts),
        logs=sink,
        jobs=InMemoryJobStore(clock=clock),
        clock=clock,
        flags=ConfiguredFeatureFlags.parse("*"),
        people=InMemoryPeopleCounter(),
        # The sink refuses a second line with the same external id itself: it needs no index.
        indexes=InMemoryIndexState(),
        reader=reader,
    )
    return MigrationService(ports, Transformer(mapping, limits=limits), pipeline=pipeline)


def dry_run_recipe(files: DryRunFiles, limits: LoaderLimits | None = None) -> TransformerRecipe:
    """The rules ``dry_run_service`` builds, as a recipe for worker processes."""
    from .page_pool import TransformerRecipe

    return TransformerRecipe(load_config(files.mapping) if files.mapping else load_default_config(), limits)
