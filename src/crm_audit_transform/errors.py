"""The one exception tree of crm-audit-transform.

Record-level problems are values (``Skipped`` / ``Failed``), not exceptions; these are for input
that a caller handed us directly, for configuration, for guards a use case refuses on, and for
infrastructure that is down. Driver errors are translated at the adapter boundary
(``raise StoreUnavailable(...) from exc``)::

    CrmAuditError
    ├── AuditedChangesError          an audited_changes value cannot be loaded
    │   ├── MalformedYaml            .line / .column (1-based) where the parser gave up
    │   ├── UnsupportedTag           .tag: a YAML tag outside the permitted classes
    │   ├── LimitExceeded            .limit / .actual: payload bytes, alias expansion or depth
    │   ├── NotAMapping              the document is not a hash of column → value
    │   └── BadEncoding              bytes that are not UTF-8, or characters YAML forbids
    ├── ConfigError                  CONFIG_INVALID .problems: every (path, message), .source
    │   ├── ConnectionRejected       CONNECTION_REJECTED: a server refused the configured login,
    │   │                            database or URI (never retried)
    │   └── DependencyMissing        DEPENDENCY_MISSING: an optional package is not installed
    ├── BatchTooLarge                code BATCH_TOO_LARGE: more records than a batch may hold
    ├── VerifyOptionInvalid          INVALID_SAMPLE / INVALID_SEED .option: verify's sample or seed
    │                                outside its range (verification.check_draw)
    ├── GuardError                   .code / .http_status: a use case refused to start or act
    │   ├── FlagDisabled             FLAG_DISABLED (403)
    │   ├── ContactsNotMigrated      contacts_not_migrated (422): Phase-A coverage too low
    │   ├── JobAlreadyRunning        JOB_ALREADY_RUNNING (409)
    │   ├── AlreadyCompleted         ALREADY_COMPLETED (409)
    │   ├── ResumeOrFresh            RESUME_OR_FRESH (409): re-trigger after a halt/cancel needs a choice
    │   ├── JobNotFound              JOB_NOT_FOUND (404)
    │   ├── TenantMismatch           TENANT_MISMATCH (409): --tenant is not the account's bound tenant
    │   └── TenantUnbound            TENANT_UNBOUND (422): no tenant binding and no explicit override
    ├── LeaseHeld                    LEASE_HELD: another runner holds the job's lease
    │   └── RollbackHoldLost         .taken: a rollback's hold was taken over before it ended the job
    ├── UnknownTenant                UNKNOWN_TENANT .tenant: not a tenant schema of the CRM (never queried)
    ├── IndexConflict                INDEX_CONFLICT .collection / .index: clashes with the database
    ├── IndexesMissing               INDEXES_MISSING (503): migration 035's indexes are not in place
    ├── JobUnreadable                JOB_UNREADABLE .job_id: a stored job document cannot be read
    ├── RestoreRefused               RESTORE_REFUSED .external_id / .reason: the CDP refused to set one
    │                                drifted log back (the document past its limit); counted by repair
    ├── SourceChanged                BAD_INPUT .audit_id / .counted / .found / .reason: a resume met
    │                                fewer rows of its cursor's id than the job counted, or a source
    │                                that is not the one its job was made over (a file rewritten)
    ├── SourceQueryFailed            BAD_INPUT .sqlstate: the CRM database refused a query in a way a
    │                                retry cannot change (a data exception, an undefined object…)
    │   └── UntranslatableCharacter  .table / .encoding (sqlstate 22P05): a looked-up text holds a byte
    │                                its database's encoding has no character for, found decoding it here
    ├── DirectoryRefused             DIRECTORY_REFUSED: USMAN refused us (401/403): configuration
    └── Unavailable                  UNAVAILABLE: a dependency is down; retrying later is safe
        ├── DirectoryUnavailable     DIRECTORY_UNAVAILABLE .answered / .unanswered: the SSO user
        │                            directory (USMAN), or the emails of its answer it gave no usable id for
        ├── SourceUnavailable        SOURCE_UNAVAILABLE: the CRM database
        ├── StoreUnavailable         STORE_UNAVAILABLE: the CDP database
        └── WorkerLost               WORKER_LOST: a worker process transforming pages died
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any


class CrmAuditError(Exception):
    """Base of every error this library raises on purpose.

    Every error pickles to an equal one (same type, message and attributes): ``--workers`` page
    processes raise them across a process boundary (``concurrent.futures`` pickles a worker's
    exception). Python's default rebuilds an exception by calling ``cls(*args)`` with its one
    formatted message, which fails for the ``__init__``s below that take other arguments, and a
    result that cannot be unpickled breaks the whole pool (read as ``WorkerLost``).
    """

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuilt, (type(self), self.args, dict(self.__dict__)))


class AuditedChangesError(CrmAuditError):
    """An ``audited_changes`` value cannot be loaded; ``reason`` names the kind for reports."""

    reason = "audited_changes_error"


class MalformedYaml(AuditedChangesError):
    """The text is not well-formed YAML (or repeats a key); ``line``/``column`` say where."""

    reason = "malformed_yaml"

    def __init__(self, message: str, line: int | None = None, column: int | None = None) -> None:
        where = f" at line {line}, column {column}" if line is not None else ""
        super().__init__(f"malformed YAML{where}: {message}")
        self.line = line
        self.column = column


class UnsupportedTag(AuditedChangesError):
    """A tag outside the permitted Ruby classes: refused, never constructed.

    ``tag`` is the whole tag; the message shows its first ``SHOWN_TAG_CHARS`` (100) characters and
    the length past that, as the tag comes from the row (a long one can carry a value) and the
    message reaches logs and ``--outcomes``."""

    reason = "unsupported_tag"
    SHOWN_TAG_CHARS = 100

    def __init__(self, tag: str) -> None:
        shown = repr(tag[: self.SHOWN_TAG_CHARS])
        if len(tag) > self.SHOWN_TAG_CHARS:
            shown = f"{shown}… ({len(tag)} characters)"
        super().__init__(f"unsupported YAML tag {shown}: only the permitted Ruby classes are loaded")
        self.tag = tag


class LimitExceeded(AuditedChangesError):
    """Payload bytes, nodes built (aliases expanded) or nesting depth passed a ``LoaderLimits`` bound."""

    reason = "limit_exceeded"

    def __init__(self, limit: str, maximum: int, actual: int | None = None) -> None:
        seen = f" (saw {actual})" if actual is not None else ""
        super().__init__(f"{limit} exceeds the limit of {maximum}{seen}")
        self.limit = limit
        self.maximum = maximum
        self.actual = actual


class NotAMapping(AuditedChangesError):
    """The document is not a hash of column → value (e.g. NULL, a string, a list)."""

    reason = "not_a_mapping"

    def __init__(self, found: str) -> None:
        super().__init__(f"audited_changes must be a mapping of column to value, found {found}")
        self.found = found


class BadEncoding(AuditedChangesError):
    """Bytes that are not UTF-8, or characters (NUL) that YAML and PostgreSQL text forbid."""

    reason = "bad_encoding"


class ConfigError(CrmAuditError):
    """Configuration is invalid; every problem is listed with the path of its key.

    ``source`` names where the keys live ("mapping file m.yaml", "settings"); each problem's path
    may name its own source too (``environment variable CRM_AUDIT_PAGE_SIZE``). Retrying never
    helps: the operator has to change the configuration.
    """

    code = "CONFIG_INVALID"

    def __init__(self, problems: Sequence[tuple[str, str]], *, source: str = "") -> None:
        self.problems = tuple(problems)
        self.source = source
        lines = "\n".join(f"  {path}: {message}" for path, message in self.problems)
        where = f" in {source}" if source else ""
        super().__init__(f"invalid configuration{where}:\n{lines}")


class MappingChanged(ConfigError):
    """The rules are built from another mapping than the one the job was triggered under
    (``MigrationJob.mapping_mark``): a worker, a shard process or a resume after a deploy with
    another ``CRM_AUDIT_MAPPING_CONFIG`` (or the bundled default where the trigger had a file).
    Raised by each run, shard run and verify before anything is written; the job keeps its cursor
    and counts, and a lease taken is handed back. Code ``CONFIG_INVALID`` (exit 3, never retried
    by Celery): give every worker the job's mapping, or ``trigger --fresh`` under the new one. The
    message names the two marks (digests) only, never either mapping's content or path."""

    def __init__(self, job_id: str, job_mark: str, mark: str) -> None:
        why = (
            f"job {job_id} was triggered under mapping {job_mark}; this process's mapping is {mark}: "
            "one account's logs are written under one mapping (and one rule chain, where one is "
            "passed in code). Run it with the job's mapping, or trigger --fresh to migrate the "
            "account again under this one"
        )
        super().__init__([("mapping_config", why)], source="the job's mapping")
        self.job_mark = job_mark
        self.mark = mark


class ConnectionRejected(ConfigError):
    """A server refused what the configuration says: the login, the database name or the URI.

    Wrong passwords, unknown users or databases and malformed connection strings are never
    retried: they stay wrong until the configuration changes.
    """

    code = "CONNECTION_REJECTED"


class DependencyMissing(ConfigError):
    """A setting needs an optional package that is not installed (``mongomock://`` needs mongomock)."""

    code = "DEPENDENCY_MISSING"


class BatchTooLarge(CrmAuditError):
    """More records than one MigrateBatch may hold (20)."""

    code = "BATCH_TOO_LARGE"
    http_status = 400

    def __init__(self, size: int, maximum: int) -> None:
        super().__init__(f"a batch holds at most {maximum} records, got {size}")
        self.size = size
        self.maximum = maximum


class VerifyOptionInvalid(CrmAuditError):
    """``verify``'s ``sample`` or ``seed`` (``.option``) is not an integer of its range
    (``verification.check_draw``): code ``INVALID_SAMPLE`` or ``INVALID_SEED``, HTTP 400. The caller's
    argument, never retried; the runner's ``--sample`` and ``--seed`` refuse the same values as usage."""

    http_status = 400

    def __init__(self, option: str, message: str) -> None:
        super().__init__(message)
        self.option = option
        self.code = "INVALID_SEED" if option == "seed" else "INVALID_SAMPLE"


class GuardError(CrmAuditError):
    """A use case refused to start or act; ``code`` and ``http_status`` say why."""

    code = "GUARD"
    http_status = 409


class FlagDisabled(GuardError):
    """The migration is switched off for the account."""

    code = "FLAG_DISABLED"
    http_status = 403


class ContactsNotMigrated(GuardError):
    """Phase-A coverage (contacts with a CRM id / CRM people) is below the threshold; no job row."""

    code = "contacts_not_migrated"
    http_status = 422


class JobAlreadyRunning(GuardError):
    """The account already has an in-progress job (the database refuses a second one)."""

    code = "JOB_ALREADY_RUNNING"
    http_status = 409


class AlreadyCompleted(GuardError):
    """The account was already migrated; roll back first to migrate again."""

    code = "ALREADY_COMPLETED"
    http_status = 409


class ResumeOrFresh(GuardError):
    """A halted or cancelled job exists: re-triggering must say ``resume`` or ``fresh``."""

    code = "RESUME_OR_FRESH"
    http_status = 409


class JobNotFound(GuardError):
    """There is no job to run or act on for the account."""

    code = "JOB_NOT_FOUND"
    http_status = 404


class JobNotRunnable(JobNotFound):
    """The account's latest job cannot be acted on in its state (cancelled, rolled back): one exists,
    so it is no ``JOB_NOT_FOUND``; a ``JobNotFound`` all the same, so callers catching that still do."""

    code = "JOB_NOT_RUNNABLE"
    http_status = 409


class TenantMismatch(GuardError):
    """The account is bound to another CRM tenant than the one asked for (person ids overlap)."""

    code = "TENANT_MISMATCH"
    http_status = 409


class TenantUnbound(GuardError):
    """The account has no tenant binding and the caller gave no explicit override."""

    code = "TENANT_UNBOUND"
    http_status = 422


class LeaseHeld(CrmAuditError):
    """Another runner holds the job's lease; this one must not run it.

    ``by_rollback``: the holder is a rollback (its ``rollback:<token>`` hold, ``usecases.rollback``),
    not a runner: what an answer that hides the holder's name (HTTP 409) says instead.
    """

    code = "LEASE_HELD"

    def __init__(self, message: str, *, by_rollback: bool = False) -> None:
        super().__init__(message)
        self.by_rollback = by_rollback

    @classmethod
    def lost(cls, what: str, owner: str, holder: str | None, until: object) -> LeaseHeld:
        """``what`` (a job, a shard) is no longer ``owner``'s: who holds it now, or that another
        runner took it over and has released it since (no "held by None until None")."""
        now = f"held by {holder} until {until}" if holder is not None else "another runner took it over"
        return cls(f"{what} is no longer leased to {owner}: {now}")


class RollbackHoldLost(LeaseHeld):
    """A rollback's hold on its job was taken over (its lease had expired) before it ended the job:
    its deleted logs are counted, but the job is not ``rolled_back`` by it (``JobStore.finish_rollback``
    ends a job only under the finishing rollback's own hold).

    ``taken``: another rollback holds the job now and ends it; otherwise nobody does (the one that
    took over let go after an error), the job stays ``rolling_back`` and ``rollback`` run again
    ends it. Always ``by_rollback``.
    """

    def __init__(self, message: str, *, taken: bool) -> None:
        super().__init__(message, by_rollback=True)
        self.taken = taken


class UnknownTenant(CrmAuditError):
    """A tenant name that is not a CRM tenant schema (none of that name, or one without the CRM's
    tables, such as ``public``); nothing is read for it. ``reason`` says which."""

    code = "UNKNOWN_TENANT"

    def __init__(self, tenant: str, reason: str = "no such schema") -> None:
        super().__init__(f"unknown CRM tenant {tenant!r}: {reason}")
        self.tenant = tenant


class IndexConflict(CrmAuditError):
    """An index migration step clashes with what the database holds (other options, duplicate data)."""

    code = "INDEX_CONFLICT"

    def __init__(self, collection: str, index: str, message: str) -> None:
        super().__init__(f"index {index!r} on {collection!r}: {message}")
        self.collection = collection
        self.index = index


class IndexesMissing(CrmAuditError):
    """Exactly-once rests on migration 035's unique index: no write path runs without it.

    ``missing`` lists ``collection.index`` of each absent (or differently defined) index.
    """

    code = "INDEXES_MISSING"
    http_status = 503

    def __init__(self, missing: Sequence[str]) -> None:
        self.missing = tuple(missing)
        super().__init__(
            f"migration 035's indexes are not in place ({', '.join(self.missing)}): "
            "run `crm-audit-migrate indexes up` first; nothing was written"
        )


class JobUnreadable(CrmAuditError):
    """A stored job document that cannot be read as a ``MigrationJob`` (a field missing or of
    another type, a ``status`` outside ``jobs.JOB_STATUSES``): edited by hand or left by another
    version. ``job_id`` (the document's ``_id``) and ``company_sso_id`` (None if it has none) name it;
    ``problem`` says what is wrong. Configuration-like: it stays wrong until the document is fixed
    or removed, and nothing is done to that account meanwhile; other accounts are unaffected.
    """

    code = "JOB_UNREADABLE"

    def __init__(self, job_id: str, company_sso_id: str | None, problem: str) -> None:
        account = f" of account {company_sso_id}" if company_sso_id is not None else ""
        super().__init__(f"job {job_id}{account} cannot be read: {problem}; fix or remove that job document")
        self.job_id = job_id
        self.company_sso_id = company_sso_id
        self.problem = problem


class RestoreRefused(CrmAuditError):
    """The CDP refused to set one drifted log back (``verify --repair``,
    ``ports.log_stores.MigratedLogsRestore``): the document the update would make is past the
    store's limit (MongoDB's 16 MiB, with the metadata keys of other writers that a restore keeps),
    or a value of it cannot be sent. A fact of that one log, not an outage: a repair counts it
    (``VerifyReport.restore_refused``) and goes on with the others; the log stays ``drifted``.
    ``external_id`` names the log, ``reason`` the store's words (no document content).

    Code ``RESTORE_REFUSED`` (exit 7, as ``BAD_INPUT``: no retry changes the log's size; docs/runner.md's
    table). ``verify --repair`` counts it and never raises it; a library caller of
    ``restore_migrated`` / ``restore_migrated_many`` meets it typed, and a caller that lets it out of
    a command gets that code, not a guard's ``REFUSED`` (exit 4)."""

    code = "RESTORE_REFUSED"

    def __init__(self, external_id: str, reason: str) -> None:
        super().__init__(f"the log {external_id} cannot be set back: {reason}")
        self.external_id = external_id
        self.reason = reason


class DirectoryRefused(CrmAuditError):
    """USMAN refused the request itself (401, 403, or another answer a retry cannot change).

    A configuration error, not an outage: degrading every actor would write a whole account's
    history as ``[Deleted CRM User]``, so the run stops before writing anything.
    """

    code = "DIRECTORY_REFUSED"

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class SourceChanged(CrmAuditError):
    """The audits source is not the one the job's cursor and counts were made over: it changed
    between runs (a file rewritten, cut or replaced).

    Two checks raise it, before the run counts anything. A job over a source that can mark what it
    holds (``ports.SourceMarks``: an export file) keeps that mark (``MigrationJob.source_mark``),
    and each run checks it first (``usecases._source_check.check_source``): ``reason`` says what
    differs (the file holds fewer bytes, or other bytes before the size it had), ``counted`` and
    ``found`` are None. And a file may repeat an id, and a run may stop among that id's rows: the
    job keeps how many it counted (``MigrationJob.rows_at_cursor``), and a resume reads the id again
    and passes over that many; passing over fewer would count rows twice or not at all: ``counted``
    is the rows the job counted of it, ``found`` those the source holds now, ``reason`` None. Either
    way the job keeps its cursor and counts, and its lease is handed back. ``audit_id`` is the
    cursor's id.
    Code ``BAD_INPUT``, as a file changed while it was read (``files.FileFormatError``): run the
    source as it is now as a new job. The message holds ids, counts and byte counts, never the
    source's text nor its path (an HTTP answer carries it).
    """

    code = "BAD_INPUT"

    def __init__(
        self, audit_id: int, counted: int | None, found: int | None, *, reason: str | None = None
    ) -> None:
        what = (
            f"the audits source is not the one this job was made over ({reason})"
            if reason is not None
            else f"the audits source holds {found} rows of audit id {audit_id}, where the job counted "
            f"{counted} before this run"
        )
        super().__init__(
            f"{what}: it changed since (a file rewritten between runs); the job keeps its cursor "
            f"(audit id {audit_id}) and counts: trigger a fresh job over the source as it is now"
        )
        self.audit_id = audit_id
        self.counted = counted
        self.found = found
        self.reason = reason

    @classmethod
    def rewritten(cls, audit_id: int, reason: str) -> SourceChanged:
        """The source's mark differs (``ports.SourceMarks.mark_changed``'s ``reason``)."""
        return cls(audit_id, None, None, reason=reason)


class SourceQueryFailed(CrmAuditError):
    """The CRM database refused a query with an error no retry changes: SQLSTATE class 22 (data
    exception: a value the query cannot convert or compute), 42 (syntax error or access rule
    violation: a column, table or function that is not there — met again after one rebuilt try,
    the tenant's table checked again for a deploy's DDL; a missing grant is ``ConnectionRejected``),
    0A (feature not supported, after the session's retries on new connections), 21 (cardinality),
    2F, 38, 39 (a routine's exception) or 54 (program limit exceeded — for an audit query, met again
    by the query that measures jsonb without rendering it). PostgreSQL's error codes appendix lists
    them; the source of the rule is ``crm_audit_adapters.crm_postgres.query_errors``.

    Not ``Unavailable``: a Celery task fails at once instead of retrying for an hour, and the
    runner exits 7 (``BAD_INPUT``: the source cannot be read as it is). ``sqlstate`` is the
    five-character code; the message names it and its class, never the server's text, which may
    quote a value of a row. The job keeps its cursor; the database's log has the statement.
    """

    code = "BAD_INPUT"

    def __init__(self, sqlstate: str, what: str) -> None:
        super().__init__(
            f"the CRM database refused a query with SQLSTATE {sqlstate} (class {sqlstate[:2]}: {what}); "
            "a retry fails the same way: the job keeps its cursor, the database's log has the statement"
        )
        self.sqlstate = sqlstate


class UntranslatableCharacter(SourceQueryFailed):
    """A looked-up text — a ``users`` row's ``email`` or ``full_name``, an entity's name — holds a
    byte its single-byte database's ``encoding`` has no character for (0x81 in ``WIN1252``), found
    where the driver decoded the query's answer on this host: the server ran the query and sent the
    value, and its log has nothing of it. ``table`` is the table read.

    A ``SourceQueryFailed`` with ``sqlstate`` ``22P05`` (PostgreSQL's ``untranslatable_character``,
    what the server answers when asked to convert such a value), so whoever handles that handles
    this alike: the runner exits 7 (``BAD_INPUT``), a Celery task fails at once, the job keeps its
    cursor. Unlike a row's own such value, which fails that row alone, a looked-up value may stand
    behind many rows: the run halts until the value is fixed. The message names the table and
    encoding, never the value (nor the decoder's error, which quotes its bytes).
    """

    def __init__(self, table: str, encoding: str) -> None:
        CrmAuditError.__init__(
            self,
            f"a text read from the CRM table {table} holds a byte with no character in the database's "
            f"encoding {encoding} (SQLSTATE 22P05, untranslatable character), found decoding it here: "
            "a retry fails the same way; the job keeps its cursor: fix the value in the CRM and run again",
        )
        self.sqlstate = "22P05"
        self.table = table
        self.encoding = encoding


class Unavailable(CrmAuditError):
    """A dependency is down or timed out; the operation can be retried."""

    code = "UNAVAILABLE"


class DirectoryUnavailable(Unavailable):
    """USMAN could not answer; actors degrade to ``[Deleted CRM User]``, records are never dropped.

    By default no email of the call is answered (``unanswered`` is None). An answer sound as a whole
    with an entry that is no answer (an ``sso_id`` that is no id) leaves only some emails unanswered:
    ``unanswered`` holds them (as the caller spelt them) and ``answered`` the SSO id of every other
    email found ({email: sso_id}; an email asked and in neither is one the directory does not know).
    ``fetch_lookups`` then degrades only the unanswered emails' actors (docs/usman.md)."""

    code = "DIRECTORY_UNAVAILABLE"

    def __init__(
        self,
        message: str,
        *,
        answered: Mapping[str, str] | None = None,
        unanswered: Collection[str] | None = None,
    ) -> None:
        super().__init__(message)
        self.answered: dict[str, str] = dict(answered or {})
        self.unanswered: frozenset[str] | None = None if unanswered is None else frozenset(unanswered)


class SourceUnavailable(Unavailable):
    """The CRM database could not answer after retries; the job keeps its cursor."""

    code = "SOURCE_UNAVAILABLE"


class StoreUnavailable(Unavailable):
    """The CDP database could not answer after retries; the job keeps its cursor."""

    code = "STORE_UNAVAILABLE"


class WorkerLost(Unavailable):
    """A worker process died (killed, out of memory) mid-run: a page pipeline's worker, or the
    process running one of a sharded job's shards side by side.

    The job keeps its cursor (a shard's, for a shard process), and a rerun resumes it. A page
    worker's pages were not written; a shard process may have died inside a batch's insert, which
    the rerun replays, each log counted once (the unique index).
    """

    code = "WORKER_LOST"


def _rebuilt(cls: type[CrmAuditError], args: tuple[Any, ...], state: dict[str, Any]) -> CrmAuditError:
    """``cls``'s instance with ``args`` and attributes ``state``, without calling its ``__init__``."""
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error
