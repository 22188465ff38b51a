"""``PostgresAuditSource``: keyset pages of a tenant's ``audits`` table (port ``AuditSource``).

Every value is a bound parameter and the tenant schema a quoted identifier. A page is at most
``limit`` rows fetched by ``id > cursor`` on the primary key, so no query ever reads a whole table
into memory, and at most ``page_bytes`` (32 MiB) of ``audited_changes`` and ``comment`` text plus
its last row: the page query ends it after the row whose text brings the sum to the budget, so
500 rows of 20 MiB each come as pages of two rather than one page of 10 GB (the run reads on
until a page is empty). The sizes are ``octet_length`` of the text, read from a text column's
header without reading the value; a jsonb column is rendered as text for it, once more than
its fetch. ``created_at`` is ``timestamp without time zone`` holding UTC (Rails' default), so the
cutoff is sent as a naive UTC timestamp and every value read back is made aware as UTC; a
``timestamptz`` column works too because each transaction sets ``TimeZone = UTC``.

A jsonb (or json) ``audited_changes`` is fetched as its text (``JsonbText``), never decoded by the
driver: psycopg's decoder recurses once per nesting level, so one value nested deeper than Python's
recursion limit would make the whole page's fetch raise, forever on the same page. The loader
decodes the text under its limits, and such a row is that row's failure.

An ``audited_changes`` larger than ``max_changes_bytes`` (the loader's ``max_bytes``, 32 MiB by
default) is not fetched: PostgreSQL sends its size (``octet_length``, read from the value's header for
a text or bytea column; a jsonb value is rendered as text on the server to be measured) and the row
carries ``OmittedChanges``, which the loader refuses as ``LimitExceeded`` — the outcome, reason and
cursor the fetched text had, without a 150 MiB value in this process's memory. The size is the
UTF-8 bytes the loader counts in a ``UTF8`` or ``SQL_ASCII`` database, and a bytea's bytes; in a
database of another encoding ``octet_length`` counts that encoding's bytes, so a text value is
fetched whole there, as before, and the loader measures it. The page's byte budget still counts
the value (its pages are the ones they were).

A ``created_at`` PostgreSQL holds but ``datetime`` cannot — ``infinity``, ``-infinity``, a year
after 9999 or before 1 (BC) — would make psycopg raise ``DataError`` for the whole page, forever on
the same page, which the session reports as the source being down. It is read as an
``UnreadableTime`` instead, and that row alone fails (``invalid_audit_row``). Like a NULL, such a
time is in every range: a row before year 1 is read whatever the cutoff, counted by the bounds,
and never taken as the oldest ``created_at``.
"""

from __future__ import annotations

import datetime as dt
import pickle
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, Final, cast

import psycopg
from psycopg import sql
from psycopg.abc import AdaptContext
from psycopg.adapt import Buffer, Loader
from psycopg.pq import Format

from crm_audit_transform.domain import NO_TIME_KNOWN, AuditRow, ScopeBounds, UnreadableTime
from crm_audit_transform.loading import JsonbText, LoaderLimits, OmittedChanges
from crm_audit_transform.ports import SpanReader
from crm_audit_transform.usecases.pages import PageSpan

from .lookups import user_id_of
from .session import AUDIT_COLUMNS, ReadOnlySession
from .timestamps import aware_utc, naive_utc

# In _audit_row's order; the session checks the table has them (ReadOnlySession.schema).
_COLUMNS = sql.SQL(", ").join(sql.Identifier(name) for name in AUDIT_COLUMNS)

# The scope of a run, in every query below: its auditable types, created at or after the cutoff.
# A NULL created_at is in every range: such a row is read, and fails as missing_created_at, instead
# of staying invisible to the run. So is a time before year 1 (-infinity, BC), which no datetime
# cutoff can be compared with: it fails as invalid_audit_row. A time after 9999 is after any cutoff.
# Parameters: the types, then the cutoff.
_IN_SCOPE = (
    "auditable_type = ANY(%s) AND (created_at >= %s OR created_at IS NULL OR created_at < '0001-01-01')"
)


def _budgeted_page(outer: str, middle: str, inner: str) -> sql.SQL:
    """The keyset page after an id, cut at the byte budget: ``outer`` of ``middle`` (with each row's
    ``bytes_before``) of the ``inner`` columns.

    The inner query is the keyset page (its plan unchanged); the outer one keeps its rows while the
    text before each is under the byte budget: the first row always, then up to the one that passes
    it. Parameters: the id, the scope (``_IN_SCOPE``), the row limit, the byte budget. One template
    for ``_PAGE`` and ``_PAGE_IDS``: the ids the runner walks must be the rows a page holds.
    """
    # Module constants only (S608): schema and columns come in as sql.Identifier at call time.
    return sql.SQL(
        f"SELECT {outer} FROM ("  # noqa: S608
        f"SELECT {middle}, sum(coalesce(octet_length(audited_changes::text), 0)"
        " + coalesce(octet_length(comment), 0))"
        " OVER (ORDER BY id ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS bytes_before FROM ("
        f"SELECT {inner} FROM {{schema}}.audits WHERE id > %s AND {_IN_SCOPE} ORDER BY id LIMIT %s"
        ") AS candidates) AS page WHERE coalesce(bytes_before, 0) < %s ORDER BY id"
    )


# The page's columns with, measured once per row in the middle query, audited_changes' size
# (changes_bytes: _changes_size) for _fetched's choice between the value and its size.
_PAGE = _budgeted_page("{fetched}", "*, {size} AS changes_bytes", "{columns}")
# A page's ids alone (ports.AuditPageIds): the text measured by its header as in _PAGE but never
# sent. Its rows are then read by id (_SPAN) where the page is transformed: only those ids, and only
# while still in scope.
_PAGE_IDS = _budgeted_page("id", "id", "id, audited_changes, comment")
# OFFSET 0 keeps the inner query whole: pulled up, its changes_bytes would be computed once for each
# of _fetched's two uses (a jsonb value rendered twice more).
_SPAN = sql.SQL(
    "SELECT {fetched} FROM (SELECT {columns}, {size} AS changes_bytes FROM {schema}.audits"  # noqa: S608 (constants)
    f" WHERE id >= %s AND id <= %s AND id = ANY(%s) AND {_IN_SCOPE} ORDER BY id OFFSET 0) AS span ORDER BY id"
)
_BY_ID = sql.SQL(
    "SELECT {fetched} FROM (SELECT {columns}, {size} AS changes_bytes FROM {schema}.audits"
    " WHERE id = %s OFFSET 0) AS audit"
)
_BOUNDS = sql.SQL(
    "SELECT min(id), max(id),"  # noqa: S608 (constants)
    " min(created_at) FILTER (WHERE created_at >= '0001-01-01' AND created_at < '10000-01-01'),"
    f" count(*) FROM {{schema}}.audits WHERE {_IN_SCOPE}"
)
# The shard cuts: one ordered pass over the in-scope ids (the same rows _BOUNDS counts).
_QUANTILES = sql.SQL(
    "SELECT percentile_disc(%s::float8[]) WITHIN GROUP (ORDER BY id) FROM {schema}.audits"  # noqa: S608 (constants)
    f" WHERE {_IN_SCOPE}"
)
# With no cutoff the oldest in-scope audit is the start; a floor keeps a single query shape.
_NO_CUTOFF = dt.datetime.min


DEFAULT_PAGE_BYTES: Final = 32 * 1024 * 1024
"""A page ends after the row whose ``audited_changes`` and ``comment`` bring it to this many bytes."""
DEFAULT_MAX_CHANGES_BYTES: Final = LoaderLimits().max_bytes
"""An ``audited_changes`` above this many bytes comes as its size (``OmittedChanges``): the loader's
default ``max_bytes``, 32 MiB."""
_SIZE_EXACT_ENCODINGS: Final = frozenset({"UTF8", "SQL_ASCII"})
"""Server encodings whose ``octet_length`` of a text is the UTF-8 size the loader counts (SQL_ASCII:
the bytes as stored, which the client receives as they are)."""
_NO_SIZE: Final = sql.SQL("NULL::integer")


class PostgresAuditSource:
    """Reads one tenant schema's ``audits`` through a ``ReadOnlySession``.

    ``page_bytes``: the text budget of a page (see the module docstring); a page holds at least
    one row, however large. ``max_changes_bytes``: an ``audited_changes`` larger than this many bytes
    is not fetched, its row carries its size (``OmittedChanges``); give it the loader's
    ``LoaderLimits.max_bytes`` (the runner does), so that exactly the values the loader refuses stay
    on the server. ``ValueError`` for a value that is not positive.
    """

    __slots__ = ("_fetched", "_max_changes_bytes", "_page_bytes", "_session")

    def __init__(
        self,
        session: ReadOnlySession,
        *,
        page_bytes: int = DEFAULT_PAGE_BYTES,
        max_changes_bytes: int = DEFAULT_MAX_CHANGES_BYTES,
    ) -> None:
        if page_bytes <= 0:
            raise ValueError(f"page_bytes must be positive, got {page_bytes}")
        if max_changes_bytes <= 0:
            raise ValueError(f"max_changes_bytes must be positive, got {max_changes_bytes}")
        self._session = session
        self._page_bytes = page_bytes
        self._max_changes_bytes = max_changes_bytes
        self._fetched = _fetched(max_changes_bytes)

    def scope_bounds(
        self, tenant: str, scope: Sequence[str], cutoff: dt.datetime | None
    ) -> ScopeBounds | None:
        if not scope:
            return None
        params = (list(scope), _NO_CUTOFF if cutoff is None else naive_utc(cutoff))
        row = self._session.run_checked(
            tenant, lambda: partial(_fetch_one, self._plain(_BOUNDS, tenant), params)
        )
        if row is None or not row[3]:
            return None
        min_id, max_id, oldest, count = row
        oldest_at = NO_TIME_KNOWN if oldest is None else aware_utc(oldest)  # every created_at NULL
        return ScopeBounds(min_id=min_id, max_id=max_id, oldest_created_at=oldest_at, count=count)

    def page(
        self, tenant: str, scope: Sequence[str], *, after_id: int, cutoff: dt.datetime, limit: int
    ) -> Sequence[AuditRow]:
        if limit <= 0:
            raise ValueError(f"page limit must be positive, got {limit}")
        if not scope:
            return ()
        params = (after_id, list(scope), naive_utc(cutoff), limit, self._page_bytes)
        rows = self._session.run_checked(
            tenant, lambda: partial(_rows_of, self._query(_PAGE, tenant), params)
        )
        limit_bytes = self._max_changes_bytes
        return tuple(_audit_row(tenant, row, limit_bytes) for row in rows)

    def page_ids(
        self, tenant: str, scope: Sequence[str], *, after_id: int, cutoff: dt.datetime, limit: int
    ) -> Sequence[int]:
        """The ids of the rows ``page`` returns for the same arguments (``ports.AuditPageIds``): the
        same keyset page and byte budget, without fetching the text."""
        if limit <= 0:
            raise ValueError(f"page limit must be positive, got {limit}")
        if not scope:
            return ()
        params = (after_id, list(scope), naive_utc(cutoff), limit, self._page_bytes)
        rows = self._session.run_checked(
            tenant, lambda: partial(_fetch_all, self._plain(_PAGE_IDS, tenant), params)
        )
        return [row[0] for row in rows]

    def span_rows(self, span: PageSpan) -> Sequence[AuditRow]:
        """The span's rows still in its scope, in id order (``ports.AuditPageIds``)."""
        if not span.ids or not span.scope:
            return ()
        ids = list(span.ids)
        params = (ids[0], ids[-1], ids, list(span.scope), naive_utc(span.cutoff))
        rows = self._session.run_checked(
            span.tenant, lambda: partial(_rows_of, self._query(_SPAN, span.tenant), params)
        )
        limit_bytes = self._max_changes_bytes
        return tuple(_audit_row(span.tenant, row, limit_bytes) for row in rows)

    def span_reader(self) -> SpanReader | None:
        """``span_rows`` for a worker process (``ports.AuditPageIds``): a ``PostgresSpanReader`` over a
        copy of this source's session, pickled without its connection; None when the session cannot
        be sent (a connection factory or retry policy that does not pickle)."""
        reader = PostgresSpanReader(
            PostgresAuditSource(
                self._session, page_bytes=self._page_bytes, max_changes_bytes=self._max_changes_bytes
            )
        )
        try:
            pickle.dumps(reader)
        except (pickle.PicklingError, TypeError, AttributeError):
            return None
        return reader

    def close_session(self) -> None:
        """Close the session's connection (a worker's copy, ``PostgresSpanReader.close``)."""
        self._session.close()

    def id_quantiles(
        self, tenant: str, scope: Sequence[str], cutoff: dt.datetime | None, parts: int
    ) -> Sequence[int]:
        """The in-scope ids at the k/parts quantiles (k = 1 … parts-1): ``percentile_disc``."""
        if not scope or parts < 2:
            return ()
        fractions = [k / parts for k in range(1, parts)]
        params = (fractions, list(scope), _NO_CUTOFF if cutoff is None else naive_utc(cutoff))
        row = self._session.run_checked(
            tenant, lambda: partial(_fetch_one, self._plain(_QUANTILES, tenant), params)
        )
        if row is None or row[0] is None:
            return ()
        return tuple(int(i) for i in row[0] if i is not None)

    def audit_by_id(self, tenant: str, audit_id: int) -> AuditRow | None:
        row = self._session.run_checked(
            tenant, lambda: partial(_row_by_id, self._query(_BY_ID, tenant), audit_id)
        )
        return None if row is None else _audit_row(tenant, row, self._max_changes_bytes)

    def _plain(self, template: sql.SQL, tenant: str) -> Callable[[psycopg.Connection], sql.Composed]:
        """``template`` (``_BOUNDS``, ``_PAGE_IDS``, ``_QUANTILES``) for the tenant's checked schema."""
        query = template.format(schema=self._session.schema(tenant, "audits"))
        return lambda _conn: query

    def _query(self, template: sql.SQL, tenant: str) -> Callable[[psycopg.Connection], sql.Composed]:
        """``template`` (``_PAGE``, ``_SPAN``, ``_BY_ID``) for the tenant, on a connection: the size
        expression depends on the column's type and the server's encoding (``_changes_size``). Built
        inside ``ReadOnlySession.run_checked``, so a type a deploy changed is read again."""
        schema = self._session.schema(tenant, "audits")
        changes_type = self._session.audit_changes_type(tenant)
        fetched = self._fetched

        def on(conn: psycopg.Connection) -> sql.Composed:
            encoding = conn.info.parameter_status("server_encoding")
            size = _changes_size(changes_type, encoding)
            return template.format(columns=_COLUMNS, fetched=fetched, size=size, schema=schema)

        return on


def _fetched(max_changes_bytes: int) -> sql.Composed:
    """The audit columns (``AUDIT_COLUMNS``' order) over a query that measured ``changes_bytes``:
    ``audited_changes`` NULL where it holds more than ``max_changes_bytes``, then that size (else
    NULL) as a last column, which ``_audit_row`` makes ``OmittedChanges``. The limit is an integer
    literal (a constant of the source), so the query's parameters stay the ones they were."""
    over = sql.SQL("changes_bytes > {}").format(sql.Literal(int(max_changes_bytes)))
    columns = [
        sql.SQL("CASE WHEN {} THEN NULL ELSE audited_changes END AS audited_changes").format(over)
        if name == "audited_changes"
        else sql.Identifier(name)
        for name in AUDIT_COLUMNS
    ]
    return sql.SQL(", ").join([*columns, sql.SQL("CASE WHEN {} THEN changes_bytes END").format(over)])


def _changes_size(changes_type: str, server_encoding: str | None) -> sql.Composable:
    """The size of ``audited_changes`` as the loader counts it, in SQL: the bytes of a bytea, the
    UTF-8 bytes of a text (``octet_length``, from the value's header) or of a jsonb's rendering
    (``audited_changes::text``, what the server sends for it), or NULL (never omitted) where the
    server's encoding is one whose ``octet_length`` is not the UTF-8 size (``_SIZE_EXACT_ENCODINGS``).

    ``changes_type`` is ``ReadOnlySession.audit_changes_type``'s. A char(n) keeps its padding in
    ``octet_length(character)``, as in the value sent (``::text`` would drop it).
    """
    if changes_type == "bytea":
        return sql.SQL("octet_length(audited_changes)")
    if server_encoding not in _SIZE_EXACT_ENCODINGS:
        return _NO_SIZE
    if changes_type in ("json", "jsonb"):
        return sql.SQL("octet_length(audited_changes::text)")
    return sql.SQL("octet_length(audited_changes)")


class PostgresSpanReader:
    """A span's rows read in a worker process (``ports.SpanReader``), over the connection of its own
    session, opened at its first read and closed by ``close``.

    It pickles with the session's connection factory, whose DSN may hold a password: it crosses only
    the pipe to the run's own worker process, and neither this reader's ``repr`` nor the factory's
    shows it. Errors are the session's (``SourceUnavailable``, scrubbed of the DSN's secrets).
    """

    __slots__ = ("_source",)

    def __init__(self, source: PostgresAuditSource) -> None:
        self._source = source

    def __call__(self, span: PageSpan) -> Sequence[AuditRow]:
        return self._source.span_rows(span)

    def close(self) -> None:
        self._source.close_session()

    def __repr__(self) -> str:
        return "PostgresSpanReader()"


class _JsonbTextLoader(Loader):
    """jsonb/json in text format → ``JsonbText`` (decoded later, by the loader, under its limits)."""

    def load(self, data: Buffer) -> JsonbText:
        return JsonbText(bytes(data).decode("utf-8"))


class _TimeLoader(Loader):
    """psycopg's own timestamp loader, with ``UnreadableTime`` for a value ``datetime`` cannot hold.

    psycopg's C loaders cannot be subclassed: this one holds one and delegates (~0.1 µs a value).
    """

    base: type[Loader]

    def __init__(self, oid: int, context: AdaptContext | None = None) -> None:
        super().__init__(oid, context)
        self._load = self.base(oid, context).load

    def load(self, data: Buffer) -> dt.datetime | UnreadableTime:
        try:
            return cast("dt.datetime", self._load(data))
        except psycopg.DataError:  # "timestamp too large (after year 10K)", infinity, BC
            return UnreadableTime(bytes(data).decode("utf-8", "replace"))


def _time_loader(name: str) -> type[Loader]:
    base = psycopg.adapters.get_loader(psycopg.adapters.types[name].oid, Format.TEXT)
    assert base is not None, name  # psycopg ships a text loader for both
    return type(f"_{name.title()}Loader", (_TimeLoader,), {"base": base})


_TIME_LOADERS = {name: _time_loader(name) for name in ("timestamp", "timestamptz")}


def _cursor(conn: psycopg.Connection, *, unreadable_times: bool = True) -> psycopg.Cursor[Any]:
    cursor = conn.cursor()  # its own adapters: the connection's other queries still decode JSON
    for name in ("jsonb", "json"):
        cursor.adapters.register_loader(name, _JsonbTextLoader)
    if unreadable_times:
        for name, loader in _TIME_LOADERS.items():
            cursor.adapters.register_loader(name, loader)
    return cursor


def _fetch_one(
    query: Callable[[psycopg.Connection], sql.Composed], params: Sequence[Any], conn: psycopg.Connection
) -> tuple[Any, ...] | None:
    return conn.execute(query(conn), params).fetchone()


def _fetch_all(
    query: Callable[[psycopg.Connection], sql.Composed], params: Sequence[Any], conn: psycopg.Connection
) -> list[tuple[Any, ...]]:
    return conn.execute(query(conn), params).fetchall()


def _row_by_id(
    query: Callable[[psycopg.Connection], sql.Composed], audit_id: int, conn: psycopg.Connection
) -> tuple[Any, ...] | None:
    row: tuple[Any, ...] | None = _cursor(conn).execute(query(conn), (audit_id,)).fetchone()
    return row


def _rows_of(
    query: Callable[[psycopg.Connection], sql.Composed], params: Sequence[Any], conn: psycopg.Connection
) -> list[tuple[Any, ...]]:
    return _rows(conn, query(conn), params)


def _rows(conn: psycopg.Connection, query: sql.Composed, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    """The query's rows, timestamps read by psycopg's own loader; a page holding a time ``datetime``
    cannot (``DataError`` while its rows are read, after the query succeeded) is read again with
    ``_TimeLoader``, which makes that time an ``UnreadableTime``. The usual page so costs no Python
    call per timestamp (~0.3 µs a row)."""
    cursor = _cursor(conn, unreadable_times=False)
    cursor.execute(query, params)  # the server's own errors are raised here, as before
    try:
        return cursor.fetchall()
    except psycopg.DataError:
        return _cursor(conn).execute(query, params).fetchall()


def _audit_row(tenant: str, row: tuple[Any, ...], max_changes_bytes: int) -> AuditRow:
    (
        id_, auditable_type, auditable_id, action, changes, created_at, associated_id,
        associated_type, user_id, user_type, username, version, comment, remote_address, request_uuid,
        omitted_bytes,
    ) = row  # fmt: skip
    if omitted_bytes is not None:  # not fetched: more than max_changes_bytes (_fetched)
        changes = OmittedChanges(omitted_bytes, max_changes_bytes)
    # The common row in place, without a call per column: a text column's str, a naive UTC
    # timestamp (Rails' column) made aware, an integer or NULL user id. Anything else takes the
    # helpers, which give the same values for these.
    elif type(changes) is not str:
        changes = _changes(changes)
    if type(created_at) is _DATETIME and created_at.tzinfo is None:
        created_at = created_at.replace(tzinfo=_UTC)
    else:
        created_at = _created_at(created_at)
    if user_id is not None and type(user_id) is not int:
        user_id = user_id_of(user_id)
    # AuditRow's fields in order, passed by position: a row is built per audit, and keywords cost.
    return AuditRow(
        tenant, id_, auditable_type, auditable_id, action, changes, created_at, associated_id,
        associated_type, user_id, user_type, username, version, comment, remote_address, request_uuid,
    )  # fmt: skip


_DATETIME: Final = dt.datetime
_UTC: Final = dt.UTC


def _created_at(value: dt.datetime | UnreadableTime | None) -> dt.datetime | UnreadableTime | None:
    if value is None or isinstance(value, UnreadableTime):
        return value
    try:
        return aware_utc(value)
    except OverflowError:  # a timestamptz near year 1 or 9999 read in a zone other than UTC
        return UnreadableTime(str(value))


def _changes(value: object) -> str | bytes | Mapping[str, Any] | JsonbText | None:
    """Text stays text (loaded later as YAML), jsonb arrives as JsonbText; the loader refuses anything odd."""
    if isinstance(value, memoryview):
        return bytes(value)
    return cast("str | Mapping[str, Any] | JsonbText | None", value)
