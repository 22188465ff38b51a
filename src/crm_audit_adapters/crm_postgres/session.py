"""Read-only access to the CRM database: a connection factory and a session that retries.

Every unit of work runs in its own ``BEGIN ISOLATION LEVEL READ COMMITTED READ ONLY`` transaction
(whatever the server's default: a hot standby refuses a serializable one) with a local statement timeout,
``TimeZone = UTC`` and custom plans (``SET LOCAL`` semantics, so it also holds behind a
transaction-pooling PgBouncer). When the connection drops or a statement times out
(``psycopg.OperationalError``) the session discards the connection, waits with exponential backoff,
reconnects and runs the same work again; a keyset page query is a pure function of its cursor, so
a retry can neither skip nor repeat rows. After the last attempt the driver error is raised as
``SourceUnavailable``. A driver error no retry can change is raised at once: a permission denied
as ``ConnectionRejected``, a data exception, an undefined object or another class of
``query_errors.PERMANENT_CLASSES`` as ``SourceQueryFailed`` (exit 7, never retried by Celery); any
other as ``SourceUnavailable``. A query built from a tenant's checks (``run_checked``) that meets
a class 42 error is built and run once more after those checks run again: a deploy's DDL.

A server that refuses the login itself — a wrong password, an unknown user or database, no
``pg_hba.conf`` entry —, a DSN libpq cannot parse, and one whose settings rule the connection out
(a service not defined, ``sslmode=require`` against a server without TLS, a ``require_auth`` or
``channel_binding`` the server does not meet, a certificate that cannot be read or verified) are
configuration, not an outage: the factory raises ``ConnectionRejected`` / ``ConfigError`` (exit 3 in
the runner) and nothing is retried.
Driver messages are scrubbed of the DSN's secrets (``redaction.scrub``) before they go anywhere.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from typing import Final, TypeAlias, TypeVar

import attrs
import psycopg
from attrs import field, frozen
from psycopg import sql

from crm_audit_transform.errors import (
    ConfigError,
    ConnectionRejected,
    SourceQueryFailed,
    SourceUnavailable,
    UnknownTenant,
)

from ..redaction import scrub
from ..retrying import RetryPolicy, attempts_made
from .encodings import adapt_sql_ascii
from .query_errors import query_failed

T = TypeVar("T")
ConnectionFactory = Callable[[], psycopg.Connection]

# SQLSTATEs and libpq texts of a login the server refused: wrong password, unknown role or
# database, pg_hba refusal, a bad option value (libpq's own check, like sslmode=bogus, or the
# server's, like options=-c statement_timeout=soon). They stay refused until the configuration changes.
_REJECTED_SQLSTATES = frozenset({"28P01", "28000", "3D000", "22023", "42704"})
_REJECTED_TEXTS = (
    "password authentication failed",
    "no password supplied",
    "no pg_hba.conf entry",
    "does not exist",
    "authentication failed",
    "invalid value for parameter",
    "unrecognized configuration parameter",
)
_REJECTED_OPTION = re.compile(r'invalid \w+ value: "')  # libpq: invalid sslmode value: "bogus"
# libpq's texts of a connection its own settings rule out, before or at the handshake, and that
# fails the same way on every attempt: a service file missing or not defining the service, option values
# that exclude each other, a server without the TLS the DSN requires, an authentication or channel
# binding the DSN requires and the server did not do, a certificate that cannot be read or verified.
# Each is a configuration fault, not SOURCE_UNAVAILABLE (exit 6), which every run and Celery task
# would retry as an outage.
_UNUSABLE_TEXTS = (
    'definition of service "',
    'service file "',
    "may not be used with sslnegotiation",
    "server does not support SSL, but SSL was required",
    "authentication method requirement",
    "channel binding",
    "GSSAPI encryption required",
    "certificate file",
    "private key file",
    "certificate verify failed",
    "does not match host name",
)

# Is there such a schema, and does it hold the table a query reads? One round trip, in the catalog
# (a schema without the CRM's tables, such as "public", is no tenant: its query would fail with
# "relation does not exist", which is not worth retrying and is no outage).
_SCHEMA_AND_TABLE = (
    "SELECT EXISTS (SELECT 1 FROM information_schema.schemata WHERE schema_name = %s),"
    " EXISTS (SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
    " WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'f'))"
)
# PostgreSQL's own schemas: CREATE SCHEMA refuses the pg_ prefix ("reserved for system schemas"), and
# information_schema is the SQL standard's catalog views. Each holds tables a tenant query could
# read, so such a name is refused before any query, and said to be a system schema: "no such schema"
# would be false for pg_catalog.
_SYSTEM_SCHEMA_PREFIX = "pg_"
_SYSTEM_SCHEMAS = ("information_schema",)
_SYSTEM_SCHEMA_REASON: Final = (
    "a PostgreSQL system schema (the pg_ prefix and information_schema are PostgreSQL's own), "
    "never a CRM tenant schema"
)
AUDIT_COLUMNS: Final = (
    "id", "auditable_type", "auditable_id", "action", "audited_changes", "created_at",
    "associated_id", "associated_type", "user_id", "user_type", "username", "version",
    "comment", "remote_address", "request_uuid",
)  # fmt: skip
"""The columns of audited's ``audits`` table that the audit queries read (``audits._COLUMNS``)."""
# The type of each column of a tenant's audits table, by name: a domain as its base type, through
# any number of domains over domains. The citext extension's type is "citext" in whatever schema it
# was created (format_type prints "public.citext" when that schema is not on the search_path); a
# type of that name the extension did not create is named as format_type names it.
_AUDIT_COLUMNS = (
    "SELECT a.attname, (WITH RECURSIVE d(oid, base) AS ("
    " SELECT t.oid, t.typbasetype FROM pg_catalog.pg_type t WHERE t.oid = a.atttypid"
    " UNION ALL SELECT t.oid, t.typbasetype FROM pg_catalog.pg_type t JOIN d ON t.oid = d.base)"
    " SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_depend e"
    " JOIN pg_catalog.pg_extension x ON x.oid = e.refobjid"
    " WHERE e.classid = 'pg_catalog.pg_type'::regclass AND e.objid = d.oid AND e.deptype = 'e'"
    " AND e.refclassid = 'pg_catalog.pg_extension'::regclass AND x.extname = 'citext')"
    " AND (SELECT typname FROM pg_catalog.pg_type WHERE oid = d.oid) = 'citext'"
    " THEN 'citext' ELSE format_type(d.oid, NULL) END FROM d WHERE d.base = 0)"
    " FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid"
    " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
    " WHERE n.nspname = %s AND c.relname = 'audits' AND a.attnum > 0 AND NOT a.attisdropped"
)
# Whether the tenant's audits relation is a table; whether its id is unique by a primary key or a
# unique index over id alone, complete (no predicate) and valid; and, for a partitioned table, whether
# a complete unique key holds id among its keys while id is drawn from a sequence or is an identity.
# PostgreSQL requires every unique index of a partitioned table to hold the partition key, so an
# audits table partitioned by created_at can only have PRIMARY KEY (id, created_at): its ids are
# unique because audited's inserts draw them from the sequence, which is what keeps any audits
# table's ids unique in practice.
_AUDIT_ID_UNIQUE = (
    "SELECT c.relkind IN ('r', 'p'), EXISTS (SELECT 1 FROM pg_catalog.pg_index i"
    " JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]"
    " WHERE i.indrelid = c.oid AND i.indisunique AND i.indisvalid AND i.indnkeyatts = 1"
    " AND i.indpred IS NULL AND a.attname = 'id'),"
    " c.relkind = 'p' AND EXISTS (SELECT 1 FROM pg_catalog.pg_index i"
    " JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attname = 'id'"
    " WHERE i.indrelid = c.oid AND i.indisunique AND i.indisvalid AND i.indpred IS NULL"
    " AND EXISTS (SELECT 1 FROM generate_series(0, i.indnkeyatts - 1) k WHERE i.indkey[k] = a.attnum)"
    " AND (a.attidentity <> '' OR EXISTS (SELECT 1 FROM pg_catalog.pg_attrdef d"
    " WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum"
    " AND pg_catalog.pg_get_expr(d.adbin, d.adrelid) LIKE 'nextval(%%')))"
    " FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
    " WHERE n.nspname = %s AND c.relname = 'audits'"
)
# citext (the extension's case-insensitive text) is text to every query here: it was read before
# this check existed, and Rails apps use it for string columns.
_TEXT_TYPES = frozenset({"text", "character varying", "character", "citext"})
# The columns the queries compare, order or measure on the server, and the id the cursor counts
# with: what audited's migrations create, and the variants documented in docs/postgres.md.
_AUDIT_COLUMN_TYPES: Final = {
    "id": frozenset({"smallint", "integer", "bigint"}),
    "created_at": frozenset({"timestamp without time zone", "timestamp with time zone"}),
    "auditable_type": _TEXT_TYPES,
    "audited_changes": _TEXT_TYPES | {"json", "jsonb", "bytea"},
    # Text only: the room a row keeps for its comment (text_columns.COMMENT_CAP) is of text; a bytea
    # is sent as hex, twice its bytes.
    "comment": _TEXT_TYPES,
}
# program_limit_exceeded: what a value PostgreSQL cannot render (past 1 GiB of text) fails with.
_LIMIT_EXCEEDED: Final = "54000"
# Local to the transaction (SET LOCAL semantics), so nothing leaks to a pooled server connection.
# A custom plan per page: a generic plan of the page query cannot see how rare the scope's types
# are and walks the primary key past millions of out-of-scope rows (see docs/postgres.md).
_TRANSACTION_SETTINGS = (
    "SELECT set_config('statement_timeout', %s, true), set_config('TimeZone', 'UTC', true),"
    " set_config('plan_cache_mode', 'force_custom_plan', true)"
)


@frozen
class PostgresConnectionFactory:
    """Opens a read-only connection to ``dsn`` on each call; nothing is opened before the first call."""

    dsn: str = field(repr=False)  # may hold a password
    application_name: str = "crm-audit-transform"
    connect_timeout_s: int = 10
    # psycopg prepares a query after 5 runs; None turns that off for poolers that cannot follow it
    prepare_threshold: int | None = 5

    def __call__(self) -> psycopg.Connection:
        try:
            conn = psycopg.connect(
                self.dsn,
                autocommit=True,  # transactions are explicit: one per unit of work
                connect_timeout=self.connect_timeout_s,
                application_name=self.application_name,
                prepare_threshold=self.prepare_threshold,
            )
        except psycopg.ProgrammingError:
            # libpq's message may quote a piece of the password: it is not shown at all.
            raise ConfigError(
                [("database_url", "libpq cannot parse this connection string (check quoting and %-escapes)")]
            ) from None
        except psycopg.OperationalError as exc:
            message = scrub(str(exc), [self.dsn])
            if (
                exc.sqlstate in _REJECTED_SQLSTATES
                or any(text in message for text in _REJECTED_TEXTS)
                or _REJECTED_OPTION.search(message)
                or any(text in message for text in _UNUSABLE_TEXTS)
            ):
                reason = message.rpartition("FATAL:")[2].strip() or message
                raise ConnectionRejected(
                    [("database_url", f"the CRM database refused the connection: {reason}")]
                ) from None
            raise psycopg.OperationalError(message) from None
        conn.read_only = True  # every transaction() block begins with BEGIN READ ONLY
        # ... ISOLATION LEVEL READ COMMITTED, whatever the server's default_transaction_isolation: a
        # hot standby refuses every serializable transaction (0A000), and a database whose default
        # is serializable (set on the primary, copied to its replicas) failed each query there.
        conn.isolation_level = psycopg.IsolationLevel.READ_COMMITTED
        adapt_sql_ascii(conn)
        return conn


DEFAULT_RETRY: Final = RetryPolicy(attempts=5, base_delay_s=0.2, max_delay_s=5.0)
"""Five attempts, 0.2 s doubling up to 5 s, with jitter so reconnecting runners do not stampede."""


_State: TypeAlias = tuple[
    ConnectionFactory, str, RetryPolicy, frozenset[tuple[str, str]], dict[str, dict[str, str]]
]
"""A ``ReadOnlySession`` as pickled: its factory, timeout, retry policy and tenant checks."""


class ReadOnlySession:
    """One lazily opened connection, shared by the adapters of one runner, with retries.

    Safe to share between threads: one unit of work (``run``) holds the connection at a time, the
    others wait for it. The HTTP app calls the service from a thread pool, and a psycopg
    connection runs one transaction at a time: two ``run`` blocks interleaved on it would nest
    one transaction in the other as a savepoint, and whichever ended first would fail ("commit at
    the wrong nesting level"), a 503 for a database that is up.
    """

    __slots__ = ("_column_types", "_conn", "_connect", "_known_schemas", "_lock", "_retry", "_timeout")

    def __init__(
        self,
        connect: ConnectionFactory,
        *,
        statement_timeout_ms: int = 30_000,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        if statement_timeout_ms <= 0:
            raise ValueError("statement_timeout_ms must be positive (0 would mean no timeout)")
        self._connect = connect
        self._timeout = f"{int(statement_timeout_ms)}ms"
        retry = retry or DEFAULT_RETRY
        # ``sleep`` (tests) replaces the policy's own, so a test never waits and can read the waits.
        self._retry = attrs.evolve(retry, sleep=sleep) if sleep is not None else retry
        self._conn: psycopg.Connection | None = None
        self._known_schemas: set[tuple[str, str]] = set()
        self._column_types: dict[str, dict[str, str]] = {}  # tenant → its audits columns' types
        # Reentrant: a unit of work may call ``schema`` (another ``run``) on the thread holding it.
        self._lock = threading.RLock()

    @classmethod
    def from_dsn(
        cls, dsn: str, *, statement_timeout_ms: int = 30_000, retry: RetryPolicy | None = None
    ) -> ReadOnlySession:
        """A session on ``dsn`` with the default connection settings."""
        return cls(PostgresConnectionFactory(dsn), statement_timeout_ms=statement_timeout_ms, retry=retry)

    def __getstate__(self) -> _State:
        """Pickled without its connection (``PostgresAuditSource.span_reader``): the copy opens its own.

        With what this session checked of its tenants (``schema``): a page worker's copy, made for
        one run, trusts the checks its runner ran for that run, as the runner's own session does for
        the rest of it, and a class 42 error still has it check again (``run_checked``). Each copy
        ran them anew at its first query: before a worker's first page, 3 more units of work on its
        span reader's session and 1 on its user directory's (benchmarks/RESULTS.md, issue 15 goal 2,
        the worker's start)."""
        with self._lock:
            return (
                self._connect,
                self._timeout,
                self._retry,
                frozenset(self._known_schemas),
                {tenant: dict(types) for tenant, types in self._column_types.items()},
            )

    def __setstate__(self, state: _State) -> None:
        self._connect, self._timeout, self._retry, known, column_types = state
        self._conn = None
        self._known_schemas = set(known)
        self._column_types = {tenant: dict(types) for tenant, types in column_types.items()}
        self._lock = threading.RLock()

    def run(self, work: Callable[[psycopg.Connection], T]) -> T:
        """Run ``work`` in a read-only transaction, retrying it on a new connection if needed; a
        thread waits while another thread's ``run`` holds the connection."""
        with self._lock:
            return self._run(work)

    def _run(self, work: Callable[[psycopg.Connection], T]) -> T:
        retry = self._retry
        try:
            for attempt in retry.attempts_of("postgres", retry_if=self._discarding):
                with attempt:
                    conn = self._connection()
                    with conn.transaction():
                        conn.execute(_TRANSACTION_SETTINGS, (self._timeout,))
                        return work(conn)
        except psycopg.errors.InsufficientPrivilege as exc:
            # A grant missing from the configured role (docs/postgres.md, "A read-only role") stays
            # missing on every retry: a configuration error, as a refused login is, not an outage.
            raise ConnectionRejected(
                [("database_url", f"the CRM database refused the configured role a read: {exc}")]
            ) from exc
        except psycopg.Error as exc:
            failed = query_failed(exc)  # fails the same way on every retry: not an outage
            if failed is not None:
                raise failed from exc
            if isinstance(exc, psycopg.OperationalError):
                raise SourceUnavailable(
                    f"CRM database unavailable after {attempts_made(retry.attempts)}: {exc}"
                ) from exc
            raise SourceUnavailable(f"CRM database refused the query: {exc}") from exc
        raise AssertionError("unreachable: the attempts return or raise")  # pragma: no cover

    def _discarding(self, exc: BaseException) -> bool:
        """A dropped connection or a timeout (``OperationalError``, or the server ending a connection
        idle in its transaction, 25P03): drop the connection, try again;
        not an error of a class no retry changes (``query_errors``: a routine's exception, a limit).
        A ``feature_not_supported`` (0A000) is tried again on a new connection too: it is how a
        statement psycopg prepared fails once the table's DDL changed its result ("cached plan must
        not change result type", a column's type altered by a deploy), which the next attempt,
        without that plan, passes; one that does not pass is ``SourceQueryFailed`` after the last."""
        retried = isinstance(exc, psycopg.OperationalError) and query_failed(exc) is None
        # 25P03: the server ended the connection of a transaction idle past its
        # idle_in_transaction_session_timeout (a process paused between two statements of one unit
        # of work); psycopg files it under InternalError, but it is a dropped connection.
        dropped = isinstance(exc, psycopg.errors.IdleInTransactionSessionTimeout)
        if retried or dropped or isinstance(exc, psycopg.errors.FeatureNotSupported):
            self._discard()
            return True
        return False

    def run_checked(
        self,
        tenant: str,
        prepare: Callable[[], Callable[[psycopg.Connection], T]],
        *,
        on_limit: Callable[[], Callable[[psycopg.Connection], T]] | None = None,
    ) -> T:
        """``run(prepare())``, where ``prepare`` builds the work from what this session checked and
        keeps of the tenant (``schema``, ``audit_changes_type``). A class 42 error (a table, column or
        function that is not there) may be a deploy's DDL since those checks ran: a table renamed, a
        column's type changed (text → jsonb makes the size expression built for text fail, 42883, on
        every later call). So the tenant's checks are forgotten, ``prepare`` runs them again — a
        table they now refuse is their ``UnknownTenant`` — and the rebuilt work runs once more; a
        class 42 that one also meets is ``SourceQueryFailed``. ``on_limit`` builds the work that
        replaces ``prepare``'s, once, when it meets ``54000`` (program limit exceeded: the audit
        queries' render of a jsonb value whose text passes 1 GiB; ``PostgresAuditSource``); a
        ``54000`` that one meets too is ``SourceQueryFailed``. Other errors are ``run``'s."""
        with self._lock:
            rebuilt = False
            while True:
                try:
                    return self._run(prepare())
                except SourceQueryFailed as exc:
                    if exc.sqlstate == _LIMIT_EXCEEDED and on_limit is not None:
                        prepare, on_limit = on_limit, None
                    elif exc.sqlstate.startswith("42") and not rebuilt:
                        rebuilt = True
                        self._forget(tenant)
                    else:
                        raise

    def _forget(self, tenant: str) -> None:
        """Drop what ``schema`` checked of the tenant: the next query's ``schema`` checks it again."""
        self._known_schemas = {known for known in self._known_schemas if known[0] != tenant}
        self._column_types.pop(tenant, None)

    def schema(self, tenant: str, table: str) -> sql.Identifier:
        """The tenant's schema as a quoted identifier, once it is known to exist and to hold ``table``
        (the table the caller's query reads); else ``UnknownTenant``, which is never retried. A
        PostgreSQL system schema (``pg_catalog``, any ``pg_*``, ``information_schema``) is refused
        without a query, as a system schema."""
        if (tenant, table) not in self._known_schemas:
            if tenant.startswith(_SYSTEM_SCHEMA_PREFIX) or tenant in _SYSTEM_SCHEMAS:
                raise UnknownTenant(tenant, _SYSTEM_SCHEMA_REASON)
            if not tenant or "\x00" in tenant:  # no schema has such a name (and libpq cannot send a NUL)
                raise UnknownTenant(tenant)
            row = self.run(lambda conn: conn.execute(_SCHEMA_AND_TABLE, (tenant, tenant, table)).fetchone())
            schema_found, table_found = row if row is not None else (False, False)
            if not schema_found:
                raise UnknownTenant(tenant)
            if not table_found:
                raise UnknownTenant(tenant, f"the schema has no table {table!r}: not a CRM tenant schema")
            if table == "audits":
                self._column_types[tenant] = self._check_audit_columns(tenant)
            self._known_schemas.add((tenant, table))
        return sql.Identifier(tenant)

    def audit_changes_type(self, tenant: str) -> str:
        """The type of the tenant's ``audits.audited_changes`` as ``format_type`` names it (a domain's
        base type; ``citext`` as such): one of the accepted ones (``text``, ``character varying``,
        ``character``, ``citext``, ``json``, ``jsonb``, ``bytea``). ``UnknownTenant`` as ``schema``."""
        return self.audit_column_types(tenant)["audited_changes"]

    def audit_column_types(self, tenant: str) -> Mapping[str, str]:
        """The type of each column of the tenant's ``audits`` table, by name, as ``format_type``
        names it (a domain's base type; ``citext`` as such), once ``schema`` accepted the table:
        ``PostgresAuditSource`` bounds the text columns among them. ``UnknownTenant`` as ``schema``."""
        self.schema(tenant, "audits")
        return self._column_types[tenant]

    def _check_audit_columns(self, tenant: str) -> dict[str, str]:
        """``UnknownTenant`` for an ``audits`` table the audit queries cannot read: a column missing,
        a column they compare or measure of another type (``_AUDIT_COLUMN_TYPES``), or a table whose
        ``id`` no primary key or unique index keeps unique (a view is taken as it is; a partitioned
        table by a unique key holding ``id`` with ``id`` drawn from a sequence or an identity). Such a table
        made every page query (or the trigger's bounds) fail on every retry — as an outage
        (``SourceUnavailable``) or an untyped error — where a column of an odd type elsewhere fails
        each row alone (``invalid_audit_row``). Returns the type of each column, by name."""
        rows = self.run(lambda conn: conn.execute(_AUDIT_COLUMNS, (tenant,)).fetchall())
        found: dict[str, str] = dict(rows)
        missing = [name for name in AUDIT_COLUMNS if name not in found]
        if missing:
            raise UnknownTenant(
                tenant, f"its audits table has no column {', '.join(missing)}: not audited's audits table"
            )
        for name, accepted in _AUDIT_COLUMN_TYPES.items():
            if found[name] not in accepted:
                raise UnknownTenant(
                    tenant,
                    f"its audits.{name} is {found[name]}, not {' or '.join(sorted(accepted))}: "
                    "not audited's audits table",
                )
        # The keyset reads each id once: of two rows with one id, the second would be lost when a page
        # ends at the first (never read, by the run or verify), else counted migrated unwritten.
        keyed = self.run(lambda conn: conn.execute(_AUDIT_ID_UNIQUE, (tenant,)).fetchone())
        is_table, unique, partitioned_key = keyed if keyed is not None else (False, False, False)
        if is_table and not (unique or partitioned_key):
            raise UnknownTenant(
                tenant,
                "its audits.id has no primary key or unique index on id alone (nor, partitioned, a "
                "unique key holding id with id drawn from a sequence), so a repeated id would be lost: "
                "not audited's audits table (add the primary key audited creates)",
            )
        return found

    def close(self) -> None:
        """Close the connection (once no ``run`` holds it); the next ``run`` opens a new one."""
        with self._lock:
            self._discard()

    def __enter__(self) -> ReadOnlySession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = self._connect()
        return self._conn

    def _discard(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
