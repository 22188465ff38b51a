"""Ports: what the core asks of the outside world. Adapters implement them; the core never imports one.

Every lookup is batched: a step gathers the ids a page of rows needs and asks each port once.
In-memory implementations of every port ship in ``crm_audit_transform.testing``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Generator, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol, TypeAlias, runtime_checkable

from .domain import (
    ActivityLog,
    AuditRow,
    Contact,
    CrmUser,
    EncodedLog,
    EntityRef,
    Outcome,
    ScopeBounds,
    UserId,
    WriteResult,
)
from .enrichment_tally import EnrichmentTally
from .jobs import JobShard, MigrationJob

if TYPE_CHECKING:  # the enrichment package imports these ports: annotations only, no import cycle
    from .enrichment.model import EnrichmentPlan, MatchKey, StoredLog
    from .verification import StoredMigratedLog

__all__ = [
    "ActivityLogStore",
    "ActivityLogWriter",
    "AuditEnds",
    "AuditSource",
    "AuditSplitter",
    "Clock",
    "ContactDirectory",
    "EncodingLogWriter",
    "EnrichmentStore",
    "EntityDirectory",
    "FeatureFlags",
    "IndexState",
    "JobStore",
    "MigratedLogReader",
    "MigratedLogs",
    "PagePipeline",
    "PeopleCounter",
    "RowsSetAside",
    "RunJobStore",
    "SsoDirectory",
    "UserDirectory",
]


class AuditSource(Protocol):
    """The CRM's ``audits`` table of one tenant schema, read by keyset pages (read-only)."""

    def scope_bounds(
        self, tenant: str, scope: Sequence[str], cutoff: dt.datetime | None
    ) -> ScopeBounds | None:
        """Id range and oldest ``created_at`` of in-scope audits at or after ``cutoff``; None if none."""
        ...

    def page(
        self, tenant: str, scope: Sequence[str], *, after_id: int, cutoff: dt.datetime, limit: int
    ) -> Sequence[AuditRow]:
        """``id > after_id AND auditable_type IN scope AND created_at >= cutoff ORDER BY id LIMIT limit``.

        A source may return fewer than ``limit`` rows before its end, to keep a page within a byte
        budget (at least one row, whatever its size); an empty page is the end.
        """
        ...

    def audit_by_id(self, tenant: str, audit_id: int) -> AuditRow | None: ...


@runtime_checkable
class AuditEnds(Protocol):
    """An ``AuditSource`` that can tell its first and last in-scope ids without a pass over the rows."""

    def scope_ends(self, tenant: str, scope: Sequence[str]) -> tuple[int, int] | None:
        """The first and last in-scope ids, whatever their ``created_at``; None when they cannot be
        told cheaply (ask ``scope_bounds``)."""
        ...


# Not in __all__ (the public surface has a budget): ``AuditPageIds`` names it.
SpanReader: TypeAlias = Callable[["PageSpan"], Sequence[AuditRow]]
"""Reads a ``PageSpan``'s rows (``AuditPageIds.span_rows``) in another process, over its own
connection; sent to worker processes, so it must pickle."""


@runtime_checkable
class AuditPageIds(Protocol):
    """An ``AuditSource`` that can tell a page by its ids without reading its rows' text, and read
    those rows later, here or in another process (``usecases.pages.PageSpan``).

    With a ``SpanPipeline`` the run loop reads only each page's ids and the pipeline reads the rows
    where it transforms them, so the loop's process never fetches nor ships the rows' text.
    """

    def page_ids(
        self, tenant: str, scope: Sequence[str], *, after_id: int, cutoff: dt.datetime, limit: int
    ) -> Sequence[int]:
        """The ids of the rows ``page`` returns for the same arguments, in order — the same rows,
        byte budget included — without reading the rows themselves."""
        ...

    def span_rows(self, span: PageSpan) -> Sequence[AuditRow]:
        """The span's rows, in id order: those of its ids still in its scope (``PageSpan``)."""
        ...

    def span_reader(self) -> SpanReader | None:
        """``span_rows`` for another process (it must pickle: no open connection, no secret shown in
        its ``repr``), or None when this source cannot be read from another process."""
        ...


@runtime_checkable
class RowsSetAside(Protocol):
    """An ``AuditSource`` that sets some rows aside as their ``Failed`` outcome instead of handing
    them over: an export's repeated id, a line with an id that cannot become a row.

    The run loop takes them after each ``page`` call and counts them in id order with that page's
    rows (the halt rule, the job's counts, ``on_outcomes``), and verify counts them as failed
    audits, so a file source is counted as a database source whose bad rows fail one by one.
    """

    def take_set_aside(self) -> Sequence[Outcome]:
        """The outcomes of the rows set aside since the last call (each once), ascending by id."""
        ...


@runtime_checkable
class AuditSplitter(Protocol):
    """An ``AuditSource`` that can cut the in-scope ids into parts of equal row counts cheaply."""

    def id_quantiles(
        self, tenant: str, scope: Sequence[str], cutoff: dt.datetime | None, parts: int
    ) -> Sequence[int]:
        """The ids at the 1/parts … (parts-1)/parts quantiles of the in-scope ids, ascending."""
        ...


class UserDirectory(Protocol):
    """CRM users by id, soft-deleted ones included; ids whose row is gone are simply absent."""

    def users_by_ids(self, tenant: str, ids: Collection[UserId]) -> Mapping[UserId, CrmUser]: ...


class SsoDirectory(Protocol):
    """USMAN: SSO user ids by email within a company. Raises ``DirectoryUnavailable`` when down."""

    def sso_ids_by_emails(self, company_sso_id: str, emails: Collection[str]) -> Mapping[str, str]: ...


class ContactDirectory(Protocol):
    """CDP contacts, always scoped by ``company_sso_id`` AND ``crm_data.id`` (never cross-tenant)."""

    def contacts_by_crm_ids(
        self, company_sso_id: str, crm_person_ids: Collection[int]
    ) -> Mapping[int, Contact]: ...


class PeopleCounter(Protocol):
    """The CRM's people of a tenant, for the Phase-A coverage guard."""

    def count_people(self, tenant: str) -> int:
        """``count(*)`` of the tenant's ``crm_people`` (the coverage denominator)."""
        ...

    def person_ids(self, tenant: str, *, after_id: int, limit: int) -> Sequence[int]:
        """A keyset page: the tenant's ``crm_people`` ids above ``after_id``, ascending, ``limit`` at most."""
        ...


class EntityDirectory(Protocol):
    """CRM entities (deal, ticket, task, company, person) by id, for association enrichment."""

    def entities_by_ids(
        self, tenant: str, entity_type: str, ids: Collection[int]
    ) -> Mapping[int, EntityRef]: ...


class ActivityLogWriter(Protocol):
    """Where migrated logs go: the CDP ``activity_logs`` collection, a file, a queue."""

    def insert_batch(self, logs: Sequence[ActivityLog | EncodedLog]) -> Sequence[WriteResult]:
        """Insert unordered; a duplicate ``(company_sso_id, external_id)`` is a ``skipped`` result.

        An ``EncodedLog`` comes only from this writer's own ``log_encoder`` (``EncodingLogWriter``),
        and is written as it is; a writer without one never receives one (``TypeError`` if it does).
        """
        ...


# Not in __all__ (the public surface has a budget): ``EncodingLogWriter`` names it.
LogEncoder: TypeAlias = Callable[[ActivityLog], EncodedLog]
"""A writer's encoder: the log as that writer would write it (``EncodedLog.data``), or why it would
refuse it (``EncodedLog.problem``). Sent to worker processes, so it must pickle (a module-level
function, or an instance of a module-level class)."""


@runtime_checkable
class EncodingLogWriter(ActivityLogWriter, Protocol):
    """A writer that can have its logs encoded ahead, where they are transformed (``--workers``)."""

    def log_encoder(self) -> LogEncoder | None:
        """The encoder whose ``EncodedLog`` this writer writes as it is; None when it has none now
        (a collection that is handed documents, not bytes)."""
        ...


class MigratedLogs(Protocol):
    """The migrated logs of an account, as rollback deletes and counts them."""

    def delete_migrated(self, company_sso_id: str) -> int:
        """Delete this company's ``source_tag = crm_migration`` logs only; return how many."""
        ...

    def count_migrated(self, company_sso_id: str) -> int: ...


class ActivityLogStore(ActivityLogWriter, MigratedLogs, Protocol):
    """A store that is both (MongoDB's ``activity_logs``, the JSONL sink).

    Nothing asks for both at once: ``ServicePorts.logs`` is a writer, ``ServicePorts.migrated`` the
    rollback's ``MigratedLogs``, so a write-only sink implements ``ActivityLogWriter`` alone.
    """


class EnrichmentStore(Protocol):
    """``activity_logs`` (and the contacts' ``crm_data.id``) as enrichment reads and patches them.

    Logs already in the CDP (the live feed's, and ours from before) are enriched in place; see
    docs/enrichment.md.
    """

    def logs_by_external_ids(
        self, company_sso_id: str, external_ids: Collection[str]
    ) -> Mapping[str, StoredLog]:
        """Our logs of the company by ``external_id``; ids it does not hold are absent."""
        ...

    def live_feed_candidates(
        self, keys: Collection[MatchKey], window: dt.timedelta
    ) -> Mapping[MatchKey, Sequence[StoredLog]]:
        """Per key, every log without ``external_id`` that the key matches within ``window``."""
        ...

    def crm_person_ids(self, company_sso_id: str, customer_ids: Collection[str]) -> Mapping[str, int]:
        """The ``crm_data.id`` of the company's contacts by customer id; contacts without one are absent."""
        ...

    def association_logs_lacking(
        self, company_sso_id: str, *, after: str | None, limit: int
    ) -> Sequence[StoredLog]:
        """Association logs of the company missing any enrichment key, by ``doc_id`` after ``after``."""
        ...

    def apply(self, plan: EnrichmentPlan) -> EnrichmentTally:
        """``$set`` each patch's keys on its target, each key only while it is still absent there."""
        ...


class JobStore(Protocol):
    """``crm_activity_log_migration_jobs``: one document per job, at most one in progress per account.

    Lease expiries are computed on the **store's clock** (a database server's ``$$NOW``), never the
    runner's: runners on hosts whose clocks disagree still agree on whether a lease has expired.
    """

    def create(self, job: MigrationJob) -> None:
        """Insert; raises ``JobAlreadyRunning`` when the account already has an in-progress job."""
        ...

    def latest(self, company_sso_id: str) -> MigrationJob | None: ...

    def rollback_under_way(self, company_sso_id: str) -> MigrationJob | None:
        """A job of the account whose rollback has started and not finished (``rolling_back``)."""
        ...

    def save(self, job: MigrationJob) -> None:
        """Replace the job's cursor, counts, status and lease (by ``job_id``)."""
        ...

    def transition(self, job: MigrationJob, expected: Collection[str]) -> MigrationJob | None:
        """Replace the stored job with ``job`` only while its stored status is one of ``expected``.

        Atomic; returns the job as stored, or None (nothing written) when its status was another.
        ``JobAlreadyRunning`` when ``job`` is in progress and the account has another such job.
        When ``expected`` holds ``in_progress``, the stored ``shards`` are kept as they are (live
        shards own their entries while the job runs; a cancel must not undo their progress).
        """
        ...

    def acquire_shard_lease(self, job_id: str, shard: int, owner: str, ttl: dt.timedelta) -> MigrationJob:
        """``acquire_lease`` for one shard of a sharded job: that shard's lease only; the whole job.

        A completed shard's lease is never taken: the job comes back as stored, that lease as it is.
        """
        ...

    def save_shard_progress(
        self, job_id: str, shard: JobShard, owner: str, ttl: dt.timedelta | None
    ) -> MigrationJob:
        """``save_progress`` for one shard: the run's fields of ``shards[shard.shard]`` alone
        (``last_audit_id``, ``status``, ``tally``, ``enrichment``, ``halted_reason``,
        ``finished_at``; its range and ``halt_basis`` stay as stored), lease renewed.

        One atomic write, only while ``owner`` holds that shard's lease and the job is in progress;
        else the stored job when ``owner`` still holds the shard (the job was cancelled, halted or
        completed meanwhile: nothing written but, with ``ttl`` None, the release of that lease),
        ``LeaseHeld`` when another runner took the shard over.
        Returns the whole job as stored.
        """
        ...

    def acquire_lease(self, job_id: str, owner: str, ttl: dt.timedelta) -> MigrationJob:
        """Take the lease if free, expired or already ours, until the store's now + ``ttl``; else
        raise ``LeaseHeld``. Atomic. Only while the job's status is ``jobs.LEASABLE`` (in progress,
        halted, completed): a cancelled, rolling-back or rolled-back job comes back as stored, its
        lease untouched, so no runner takes it up after a cancel or a rollback."""
        ...

    def save_progress(self, job: MigrationJob, owner: str, ttl: dt.timedelta | None) -> MigrationJob:
        """Save the run's fields of ``job``, its lease renewed to ``owner`` until the store's now + ttl.

        The run's fields are what a run changes: ``last_audit_id``, ``tally``, ``enrichment``,
        ``updated_at``, ``status``, ``finished_at`` and ``halted_reason``; the job's identity, scope,
        ``halt_basis`` and shards stay as stored (``trigger``'s, through ``save`` and ``transition``).
        ``ttl=None`` hands the lease back in the same write (a run's finish). One atomic write, only
        while ``owner`` still holds the lease (expired or not) and the stored job is in progress:
        a runner whose lease was taken over — even if since released — gets ``LeaseHeld`` and writes
        nothing; a job cancelled meanwhile is returned as stored (``cancelled``), nothing written;
        a job ended otherwise while the lease was still ``owner``'s (rolled back once it had expired)
        is ``JobNotRunnable``, nothing written. ``JobNotFound`` if the job was never created.
        """
        ...


class RunJobStore(Protocol):
    """What the run loop asks of the job store: a ``JobStore``, or one shard's view of it
    (``usecases.shards.ShardJobs``), whose jobs are that shard's cursor, counts and lease."""

    def latest(self, company_sso_id: str) -> MigrationJob | None: ...

    def rollback_under_way(self, company_sso_id: str) -> MigrationJob | None: ...

    def save(self, job: MigrationJob) -> None: ...

    def acquire_lease(self, job_id: str, owner: str, ttl: dt.timedelta) -> MigrationJob: ...

    def save_progress(self, job: MigrationJob, owner: str, ttl: dt.timedelta | None) -> MigrationJob: ...


class IndexState(Protocol):
    """Whether migration 035's indexes are in place: exactly-once rests on its unique index."""

    def missing_indexes(self) -> Sequence[str]:
        """``collection.index`` of every index that is absent or defined otherwise than 035 says."""
        ...


class FeatureFlags(Protocol):
    """Whether the migration is switched on for an account."""

    def is_enabled(self, company_sso_id: str) -> bool: ...


if TYPE_CHECKING:  # the page types import the lookup ports above: annotations only
    from .transformer import Transformer
    from .usecases.pages import PageLookup, PageSpan, TransformedPage


class PagePipeline(Protocol):
    """Where a run's pages are prepared and transformed: here (``usecases.InProcessPages``) or in workers.

    Given the pages (read lazily, in id order) and the page's batched lookups, it yields one
    ``TransformedPage`` per page in the order given, and calls ``lookup`` once per page in that
    order, from the caller's thread. It may read pages ahead (a bounded number) and must stop its
    work when the generator is closed (the loop halted, stopped or was cancelled).

    ``encoder`` is the run's writer's (``EncodingLogWriter``), or None. A pipeline that transforms
    elsewhere may give migrated logs back as that encoder's ``EncodedLog``, except — when
    ``names_entities`` (the loop names linked entities before writing) — the logs the loop may still
    change (``usecases.pages.encode_ahead`` applies the rule). One that transforms here ignores it.
    """

    def transform_pages(
        self,
        pages: Iterable[Sequence[AuditRow]],
        transformer: Transformer,
        lookup: PageLookup,
        *,
        company_sso_id: str,
        encoder: LogEncoder | None = None,
        names_entities: bool = False,
    ) -> Generator[TransformedPage, None, None]: ...


@runtime_checkable
class SpanPipeline(PagePipeline, Protocol):
    """A ``PagePipeline`` that can also take pages by their ids (``usecases.pages.PageSpan``) and
    read their rows where it transforms them: in this process with ``source.span_rows``, in another
    with ``source.span_reader()`` (``AuditPageIds``).

    ``transform_spans`` keeps ``transform_pages``' contract (order, one ``lookup`` per page in page
    order, from the caller's thread); each ``TransformedPage`` holds the ids of the rows actually
    read, which may be fewer than the span's (a row deleted meanwhile).
    """

    def transform_spans(
        self,
        spans: Iterable[PageSpan],
        source: AuditPageIds,
        transformer: Transformer,
        lookup: PageLookup,
        *,
        company_sso_id: str,
        encoder: LogEncoder | None = None,
        names_entities: bool = False,
    ) -> Generator[TransformedPage, None, None]: ...


class Clock(Protocol):
    """Time comes in as a value: use cases ask this port, the core's rules never read a clock."""

    def now(self) -> dt.datetime: ...


class MigratedLogReader(Protocol):
    """The account's logs read back for verify: by page of external ids, streamed, never all at once."""

    def migrated_logs(
        self, company_sso_id: str, external_ids: Collection[str]
    ) -> Sequence[StoredMigratedLog]:
        """Every log of the company whose ``external_id`` is one of these (each copy of a duplicate).

        Each may be parsed only when verify asks (``StoredMigratedLog.parsed``); a ``MigratedDoc``
        is one already parsed.
        """
        ...

    def migrated_external_ids(self, company_sso_id: str) -> Iterable[str]:
        """Stream the ``external_id`` of every ``crm_migration`` log of the company, one per document."""
        ...

    def content_of(self, log: ActivityLog) -> Mapping[str, object]:
        """``log``'s owned fields in the wire form ``MigratedDoc.content`` holds (same encoder).

        What ``StoredMigratedLog.parsed`` takes as ``expected``. ``ValueError`` (or ``RecursionError``)
        when the store can never hold ``log`` (its writer fails it as ``write_error``): verify counts
        such a row as that failure, not as missing.
        """
        ...

    @property
    def holds_live_feed(self) -> bool:
        """Whether the store may hold live-feed logs (no ``external_id``) for the overlap check.

        False for a dry run's file: verify then makes no match keys and asks for no candidates.
        """
        ...

    def live_feed_candidates(
        self, keys: Collection[MatchKey], window: dt.timedelta
    ) -> Mapping[MatchKey, Sequence[StoredLog]]:
        """Per key, every log without ``external_id`` that the key matches within ``window``."""
        ...
