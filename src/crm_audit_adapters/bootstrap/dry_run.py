"""The dry run's wiring: audits, users, contacts and SSO ids from files, a sink out, the job in memory."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from attrs import frozen

from crm_audit_transform.config import load_config, load_default_config
from crm_audit_transform.loading import LoaderLimits
from crm_audit_transform.ports import (
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
from crm_audit_transform.service import MigrationService
from crm_audit_transform.testing import (
    FixedClock,
    InMemoryIndexState,
    InMemoryJobStore,
    InMemoryPeopleCounter,
    InMemorySsoDirectory,
    InMemoryUserDirectory,
)
from crm_audit_transform.transformer import Transformer

from ..flags import ConfiguredFeatureFlags

# The file adapters are imported where the service is built, as the runtime's are.
if TYPE_CHECKING:
    from ..files import CheckedRows
    from ..page_pool import TransformerRecipe


@frozen
class DryRunFiles:
    """The dry run's inputs: audits (JSONL or psql CSV), users, contacts and SSO ids (JSONL)."""

    audits: Path
    users: Path
    contacts: Path
    sso_directory: Path
    mapping: Path | None = None


class FileUsers(InMemoryUserDirectory):
    """The users file's rows, held in memory; a page pool's worker gets a copy (``ports.WorkerCopy``),
    so with ``--workers`` each page is looked up where it is transformed: one trip a page."""

    def worker_copy(self) -> FileUsers:
        return self  # pickled whole: a dict of the tenant's users, no connection


class FileSsoDirectory(InMemorySsoDirectory):
    """The SSO directory file's ids, held in memory; a worker gets a copy, as ``FileUsers``."""

    def worker_copy(self) -> FileSsoDirectory:
        return self


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
    jobs: JobStore | None = None,
) -> MigrationService:
    """A service whose ``dry_run`` reads ``files`` and writes the logs to ``sink``, the job in memory.

    The audits are streamed from their id-ordered file (``FileAuditSource``, or ``source`` when
    given — the CLI passes one it closes); the contacts through a file index. Every lookup port can
    be copied to a page pool's workers, so with one each worker looks its own pages up. With ``reader`` (a
    dry run's output, ``files.verification.JsonlMigratedLogReader``) its ``verify`` checks that
    output against the same files; nothing is repaired.

    The clock is fixed so that two dry runs over the same files write the same documents.
    ``limits`` are the loader's; ``checked`` collects the audits file's own failures (repeated ids,
    unbuildable rows with an id) as outcomes, as the run reads them. ``pipeline`` transforms the
    pages (``dry_run_recipe`` gives a pool the same rules); default: in this process. ``jobs`` is
    the job store (default: a new one in memory): the ``dry-run`` command's keeps the job beside
    ``--out`` (``files.dry_run_progress.ProgressJobs``), and gives ``verify`` the job of a dry run
    that did not finish.
    """
    from ..files import CheckedRows, FileAuditSource, JsonlContactDirectory, read_sso_directory, read_users

    mapping = load_config(files.mapping) if files.mapping else load_default_config()
    checked = checked or CheckedRows(files.audits)
    clock = FixedClock()
    ports = _DryRunPorts(
        source=source if source is not None else FileAuditSource(files.audits, tenant, checked=checked),
        users=FileUsers({tenant: read_users(files.users, tenant).values()}),
        sso=FileSsoDirectory(read_sso_directory(files.sso_directory, company_sso_id)),
        contacts=JsonlContactDirectory(files.contacts),
        logs=sink,
        jobs=jobs if jobs is not None else InMemoryJobStore(clock=clock),
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
    from ..page_pool import TransformerRecipe

    return TransformerRecipe(load_config(files.mapping) if files.mapping else load_default_config(), limits)
