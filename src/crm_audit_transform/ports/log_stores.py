"""Where migrated logs go, and how rollback and verify read them back."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol, TypeAlias, runtime_checkable

from attrs import frozen

from ..domain import ActivityLog, EncodedLog, WriteResult
from ..errors import RestoreRefused

if TYPE_CHECKING:  # the enrichment package imports these ports: annotations only, no import cycle
    from ..enrichment.model import MatchKey, StoredLog
    from ..packed import PackedOutcomes
    from ..verification import StoredMigratedLog


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


@runtime_checkable
class PackedLogWriter(EncodingLogWriter, Protocol):
    """A writer that writes a step of a worker's packed page from its arrays (``packed``): the run
    loop then builds no ``Migrated``, ``EncodedLog`` nor ``WriteResult`` for it."""

    def insert_packed(self, outcomes: PackedOutcomes) -> Sequence[WriteResult] | None:
        """Write the logs of ``outcomes`` (a view whose every log is ``PACKED``: ``plain``, encoded
        by this writer's ``log_encoder``) as ``insert_batch`` writes them.

        None when every one was inserted; else one ``WriteResult`` per log, in order, exactly
        ``insert_batch``'s for the same logs. Raises what ``insert_batch`` raises (nothing written).
        """
        ...


class MigratedLogs(Protocol):
    """The migrated logs of an account, as rollback deletes and counts them."""

    def delete_migrated(self, company_sso_id: str) -> int:
        """Delete this company's ``source_tag = crm_migration`` logs only; return how many."""
        ...

    def count_migrated(self, company_sso_id: str) -> int: ...


@runtime_checkable
class MigratedLogsById(Protocol):
    """A migrated-log store that deletes chosen logs of an account: ``/migrate`` undoing its own
    batch when it met a rollback (``usecases.migrate_hold``), never the account's other logs."""

    def delete_migrated_ids(self, company_sso_id: str, external_ids: Collection[str]) -> int:
        """Delete this company's ``source_tag = crm_migration`` logs whose ``external_id`` is one of
        these, and no other; return how many."""
        ...


@runtime_checkable
class MigratedLogsRestore(Protocol):
    """A migrated-log store that sets a stored log back to what the run writes: ``verify --repair``
    restoring a ``drifted`` log (``usecases._verify_repair``). A store without it leaves drift reported."""

    def restore_migrated(self, log: ActivityLog, run_keys: Collection[str]) -> bool:
        """Set every field the run writes of each stored ``crm_migration`` log of ``log``'s company
        and ``external_id`` to ``log``'s, as ``insert_batch`` would write it: the top-level fields,
        and of ``metadata`` each of ``run_keys`` (the keys the run writes) — set when ``log`` has it,
        removed when not; other keys (enrichment's, another writer's) are kept. A log of another
        ``source_tag`` is not touched (not ours: ``insert_batch`` fails its key). Idempotent.
        Whether a stored log was there to set back. ``RestoreRefused`` when the store refuses the
        document it would make (MongoDB: past 16 MiB with the other keys kept), nothing changed."""
        ...


@frozen
class RestoreResult:
    """What ``restore_migrated_many`` did: ``restored`` logs had a stored log set back; ``refused``
    holds one ``RestoreRefused`` a log the store refused (its ``external_id`` and why)."""

    restored: int = 0
    refused: tuple[RestoreRefused, ...] = ()


@runtime_checkable
class MigratedLogsRestoreMany(MigratedLogsRestore, Protocol):
    """A ``MigratedLogsRestore`` that sets a batch of drifted logs back in one request (MongoDB:
    one unordered ``bulk_write``), where ``restore_migrated`` sends one a log."""

    def restore_migrated_many(self, logs: Sequence[ActivityLog], run_keys: Collection[str]) -> RestoreResult:
        """``restore_migrated`` of each of ``logs`` (distinct external ids): how many had a stored log
        to set back, and each one the store refused (``RestoreRefused``: the document it would
        make is past the store's limit), the others set back all the same. Raises what
        ``restore_migrated`` raises for a store that is down (``StoreUnavailable``); idempotent, so
        a rerun completes what a failure left."""
        ...


@runtime_checkable
class MigratedLogsInChunks(Protocol):
    """A migrated-log store that rollback deletes chunk by chunk (``usecases.rollback``): a bounded
    delete at a time, its hold renewed before each, so no delete is sent once another rollback has
    taken the hold over. A store without it is deleted in one ``delete_migrated``, which a process
    paused past its hold may send late: such a store keeps other writers of the account out while
    it is open (the JSONL sink: its file lock). With it, rollback never sends ``delete_migrated``
    for a held job (a job-less account's rollback does)."""

    def migrated_chunk(self, company_sso_id: str, limit: int) -> Sequence[object]:
        """The store's ids (MongoDB's ``_id``) of at most ``limit`` of this company's
        ``source_tag = crm_migration`` logs; empty when none is left. Opaque to the caller, which
        hands them back to ``delete_migrated_chunk`` unchanged, and records them as its chunk in
        flight (``JobStore.renew_rollback``): values a job store can keep (MongoDB: BSON values
        that come back equal). Ids that name the stored documents, as ``_id`` does, make a chunk's
        delete sent late (a rollback frozen past its hold) miss every log written since."""
        ...

    def delete_migrated_chunk(self, company_sso_id: str, chunk: Sequence[object]) -> int:
        """Delete the logs of ``chunk`` that are still this company's ``crm_migration`` logs, and no
        other; return how many went — exact when a retry was needed (a lost acknowledgement)."""
        ...


@runtime_checkable
class MigratedChunkDeleteOnce(Protocol):
    """A chunked store (``MigratedLogsInChunks``) whose chunk delete can be sent in one attempt, for
    a rollback stopped by Ctrl-C (``usecases._rollback_delete.let_go``): it sends its chunk in
    flight once more on the way out, and the operator is waiting. A store that retries (MongoDB:
    four attempts, each up to the client's socket timeout, with backoff between) would make a hung
    store hold the stopped rollback through every retry; a store that does not retry needs it not
    (its ``delete_migrated_chunk`` is one attempt already)."""

    def delete_migrated_chunk_once(self, company_sso_id: str, chunk: Sequence[object]) -> int:
        """``delete_migrated_chunk`` in one attempt, no retry: bounded by the store's own timeout.
        Its error as that method's (MongoDB: ``StoreUnavailable``) when that attempt fails."""
        ...


class ActivityLogStore(ActivityLogWriter, MigratedLogs, Protocol):
    """A store that is both (MongoDB's ``activity_logs``, the JSONL sink).

    Nothing asks for both at once: ``ServicePorts.logs`` is a writer, ``ServicePorts.migrated`` the
    rollback's ``MigratedLogs``, so a write-only sink implements ``ActivityLogWriter`` alone.
    """


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
        """Stream the ``external_id`` of every ``crm_migration`` log of the company, one per document
        (each copy of a duplicate). A reader that is ``NonStringExternalIds`` streams here only the
        ids that are strings, and the others there: never one text for two values."""
        ...

    def content_of(self, log: ActivityLog) -> Mapping[str, object]:
        """``log``'s document, field by field, in the wire form ``MigratedDoc.content`` holds (same
        encoder; a ``metadata`` key as ``metadata.<key>``).

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


@runtime_checkable
class TaggedExternalIds(Protocol):
    """A ``MigratedLogReader`` whose stray stream also reads the logs of another ``source_tag`` under
    an external id of ours: an id collision verify reports (``stray``) instead of passing over."""

    def tagged_external_ids(self, company_sso_id: str, prefix: str) -> Iterable[tuple[str, str]]:
        """``(external_id, source_tag)`` of every ``crm_migration`` log of the company (as
        ``migrated_external_ids``: one per document, each copy of a duplicate), and of every log of
        the company whose ``external_id`` is a string that starts with ``prefix``
        (``crm:{tenant}:audit:``) and whose ``source_tag`` is another (``""`` for none, or one that
        is not a string)."""
        ...


@runtime_checkable
class NonStringExternalIds(Protocol):
    """A ``MigratedLogReader`` that streams apart the ``crm_migration`` logs whose ``external_id`` is
    there but not a string (``7``, ``null``): never one the run writes (docs/activity-log.md), yet
    ``rollback`` deletes such a log on MongoDB. Apart, so verify reports each as what it is, and
    never takes the number ``5`` and the string ``"5"`` for two copies of one id (a false
    ``duplicate``: both are stored, the unique index holding string ids alone)."""

    def non_string_external_ids(self, company_sso_id: str) -> Iterable[str]:
        """The relaxed Extended JSON text of each such log's ``external_id`` (``bson.json_util``'s
        ``dumps``: ``7``, ``null``, ``2.5``, ``[1, 2]``), one per log (each copy of a duplicate)."""
        ...
