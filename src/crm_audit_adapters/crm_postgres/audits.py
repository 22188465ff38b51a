"""``PostgresAuditSource``: keyset pages of a tenant's ``audits`` table (port ``AuditSource``).

Every value is a bound parameter and the tenant schema a quoted identifier. A page is at most
``limit`` rows fetched by ``id > cursor`` on the primary key, so no query ever reads a whole table
into memory, and at most ``page_bytes`` (32 MiB) of ``audited_changes`` and ``comment`` text plus
its last row: the page query ends it after the row whose text brings the sum to the budget, so
500 rows of 20 MiB each come as pages of two rather than one page of 10 GB (the run reads on
until a page is empty). The sizes are the bytes the server sends (``_sent_bytes``): a text,
char(n) (padded, as sent) or json value's ``octet_length`` and a bytea's hex text (two digits a
byte), read from the value's header without reading it; a jsonb value rendered as text, once a row
for the budget and the omission below, besides its fetch. ``created_at`` is ``timestamp without
time zone`` holding UTC (Rails' default), so the cutoff is sent as a naive UTC timestamp and every
value read back is made aware as UTC; a ``timestamptz`` column works too because each transaction
sets ``TimeZone = UTC``.

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

jsonb stores a value in far fewer bytes than its text may take (a numeric ``1e131071`` is a few bytes
stored, 131,072 digits rendered), and PostgreSQL renders no text past 1 GiB: measuring such a value
failed its query with 54000 on every run, a halt of the job for one row. A query that meets 54000 is
built once more measuring each jsonb value by its parts (``_JSONB_TEXT_BYTES``: the same count,
rendering nothing, at any depth), so that value is omitted with its exact size and its row fails
alone as above.

Every other text column is read up to a limit too (``text_columns``): past it the query sends its
size, and the row carries what the rules would make of the value (a stand-in name, None, or
``NotRead``, which fails the row).

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
from functools import cache, partial
from typing import Any, Final, TypeVar, cast

import attrs
import psycopg
from psycopg import sql
from psycopg.abc import AdaptContext
from psycopg.adapt import Buffer, Loader
from psycopg.pq import Format

from crm_audit_transform.domain import NO_TIME_KNOWN, AuditRow, ScopeBounds, UnreadableTime
from crm_audit_transform.loading import JsonbText, LoaderLimits, OmittedChanges, UntranslatableText
from crm_audit_transform.ports import SpanReader
from crm_audit_transform.usecases.pages import PageSpan

from . import encodings, text_columns
from .lookups import user_id_of
from .session import AUDIT_COLUMNS, ReadOnlySession
from .timestamps import aware_utc, naive_utc

T = TypeVar("T")

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


def _budgeted_page(outer: str) -> sql.SQL:
    """The keyset page after an id, cut at the byte budget: ``outer`` of the audit columns, each row
    with ``changes_bytes`` (``{size}``) and ``bytes_before``.

    The inner query is the keyset page (``_KEYSET``, its plan unchanged; for jsonb ``_LEAST_CUT`` of
    it); the ``measured`` one gives each of its rows ``sent_bytes`` (``{sent}``: ``_sent_bytes``),
    once — OFFSET 0 keeps it from being pulled up
    into the window query, where each use of the column would compute it again (a jsonb rendered once
    more per use); the window query keeps the rows while the text before each is under the byte
    budget: the first row always, then up to the one that passes it. Parameters: the id, the scope
    (``_IN_SCOPE``), the row limit, the byte budget. One template for ``_PAGE`` and ``_PAGE_IDS``: the
    ids the runner walks must be the rows a page holds.
    """
    # Module constants only (S608): schema and columns come in as sql.Identifier at call time.
    return sql.SQL(
        f"SELECT {outer} FROM (SELECT *, {{size}} AS changes_bytes,"  # noqa: S608
        " sum(coalesce(sent_bytes, 0) + coalesce(octet_length(comment), 0))"
        " OVER (ORDER BY id ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS bytes_before FROM ("
        "SELECT *, {sent} AS sent_bytes FROM ({candidates}) AS candidates OFFSET 0) AS measured) AS page"
        " WHERE coalesce(bytes_before, 0) < %s ORDER BY id"
    )


# The keyset page: parameters the id, the scope (_IN_SCOPE), the row limit.
_KEYSET = sql.SQL(
    f"SELECT {{columns}} FROM {{schema}}.audits WHERE id > %s AND {_IN_SCOPE} ORDER BY id LIMIT %s"  # noqa: S608
)
# The keyset page's rows a jsonb page could hold, by a cheap lower bound of each value's text: the
# rows after those whose bounds already reach the budget are never measured, a render each (the
# window of _budgeted_page measures every row it gets: a page of two 20 MiB rows rendered its 500
# candidates, 10 GB). The bound: pg_column_size (the stored bytes, compressed or not: no more than
# jsonb's binary form) less 16, over 8. jsonb's binary form takes at most about 5.5 bytes for one
# of text (an empty array in an array: its 4-byte entry, up to 3 of alignment and its 4-byte header
# for "[]"; a number 1 entry, 3-4 bytes of numeric and alignment for "1, "; strings and keys no more
# than their quoted text and 4), and 16 bytes more for the value's own headers. A bound that does
# not hold would only end a page before the budget: the page and page-ids queries share it, and
# any page boundary is a valid keyset cursor.
_LEAST_CUT = sql.SQL(
    "SELECT * FROM (SELECT *, sum(greatest(pg_column_size(audited_changes) - 16, 0) / 8"
    " + coalesce(octet_length(comment), 0)) OVER (ORDER BY id ROWS BETWEEN UNBOUNDED PRECEDING AND"
    " 1 PRECEDING) AS least_before FROM ({keyset}) AS keyset) AS bounded"
    " WHERE coalesce(least_before, 0) < {budget}"
)


# The page's columns with audited_changes' size (changes_bytes: _changes_size) for _fetched's choice
# between the value and its size.
_PAGE = _budgeted_page("{fetched}")
# A page's ids alone (ports.AuditPageIds): the text measured as in _PAGE but never sent. Its rows are
# then read by id (_SPAN) where the page is transformed: only those ids, and only while still in scope.
_PAGE_IDS = _budgeted_page("id")
# OFFSET 0 keeps each level whole: pulled up, its column would be computed once for each use of it
# (sent_bytes by changes_bytes, changes_bytes by _fetched's two: a jsonb value rendered again).
_SPAN = sql.SQL(
    "SELECT {fetched} FROM (SELECT *, {size} AS changes_bytes FROM (SELECT {columns}, {sent} AS sent_bytes"  # noqa: S608 (constants)
    f" FROM {{schema}}.audits WHERE id >= %s AND id <= %s AND id = ANY(%s) AND {_IN_SCOPE} ORDER BY id"
    " OFFSET 0) AS measured OFFSET 0) AS span ORDER BY id"
)
_BY_ID = sql.SQL(
    "SELECT {fetched} FROM (SELECT *, {size} AS changes_bytes FROM (SELECT {columns}, {sent} AS sent_bytes"
    " FROM {schema}.audits WHERE id = %s OFFSET 0) AS measured OFFSET 0) AS audit"
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
_SINGLE_BYTE_ENCODINGS: Final = frozenset(
    {*(f"LATIN{n}" for n in range(1, 11)), *(f"WIN{n}" for n in (866, 874, *range(1250, 1259))), "KOI8R",
     "KOI8U", "ISO_8859_5", "ISO_8859_6", "ISO_8859_7", "ISO_8859_8"}
)  # fmt: skip
"""Server encodings of one byte a character (PostgreSQL's "Character Sets" table): a text's UTF-8 size
is at least its bytes there (one to three a character)."""
_SINGLE_BYTE_CODECS: Final = {
    "LATIN1": "latin-1", "LATIN2": "iso8859-2", "LATIN3": "iso8859-3", "LATIN4": "iso8859-4",
    "LATIN5": "iso8859-9", "LATIN6": "iso8859-10", "LATIN7": "iso8859-13", "LATIN8": "iso8859-14",
    "LATIN9": "iso8859-15", "LATIN10": "iso8859-16", "KOI8R": "koi8-r", "KOI8U": "koi8-u",
    **{f"WIN{n}": f"cp{n}" for n in (866, 874, *range(1250, 1259))},
    **{f"ISO_8859_{n}": f"iso8859-{n}" for n in range(5, 9)},
}  # fmt: skip
"""Python's codec of each of ``_SINGLE_BYTE_ENCODINGS``, as psycopg names them."""


@cache
def _untranslatable_bytes(encoding: str) -> tuple[int, ...]:
    """The bytes that are no character in a single-byte ``encoding``: 0x81, 0x8d, 0x8f, 0x90, 0x9d in
    ``WIN1252``. Such a database stores them (PostgreSQL checks only for NUL there), and its
    server's conversion of a text holding one to UTF-8 fails (22P05). Python's codecs and
    PostgreSQL's conversion tables are both Unicode's mappings: the tests compare them byte by
    byte for every single-byte encoding."""
    codec = _SINGLE_BYTE_CODECS[encoding]
    found = []
    for byte in range(0x80, 0x100):
        try:
            bytes([byte]).decode(codec)
        except UnicodeDecodeError:
            found.append(byte)
    return tuple(found)


_CONVERTIBLE: Final = 64 << 20
"""The most bytes of a single-byte-encoded text converted to UTF-8 on the server to be measured:
``convert_to`` takes a buffer of four bytes a byte (256 MiB here), and fails past 1 GiB."""
_NO_SIZE: Final = sql.SQL("NULL::integer")
_ID_AND_TEXTS: Final = sql.SQL("id, audited_changes, comment")
"""``_PAGE_IDS``' columns: what its byte budget measures."""
_LARGEST_SENT: Final = (1 << 30) - (1 << 20) - text_columns.COMMENT_CAP
"""The most bytes of text a value may take to be sent: PostgreSQL renders no text, and builds no row
message, past 1 GiB (``MaxAllocSize``: a jsonb fails with 54000, a bytea's hex text with XX000), less
the largest ``comment`` read (``text_columns.COMMENT_CAP``, 64 MiB) and 1 MiB for the row's other
columns (``text_columns.MAX_FIELD_BYTES`` each). A value past it is omitted whatever
``max_changes_bytes`` says."""
_UNSENDABLE: Final = sql.SQL("CASE WHEN sent_bytes > {} THEN sent_bytes END").format(
    sql.Literal(_LARGEST_SENT)
)


class PostgresAuditSource:
    """Reads one tenant schema's ``audits`` through a ``ReadOnlySession``.

    ``page_bytes``: the text budget of a page (see the module docstring); a page holds at least
    one row, however large. ``max_changes_bytes``: an ``audited_changes`` larger than this many bytes
    is not fetched, its row carries its size (``OmittedChanges``); give it the loader's
    ``LoaderLimits.max_bytes`` (the runner does), so that exactly the values the loader refuses stay
    on the server; it is ``comment``'s limit too, at most 64 MiB (``text_columns``, which bounds the
    other text columns). ``ValueError`` for a value that is not positive.
    """

    __slots__ = ("_built", "_max_changes_bytes", "_page_bytes", "_session", "_text_limits")

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
        self._text_limits = text_columns.limits(max_changes_bytes)
        # Each measured query as last built (_measured), by tenant, template and jsonb measure.
        self._built: dict[tuple[str, int, bool], _Built] = {}

    def __getstate__(self) -> tuple[ReadOnlySession, int, int]:
        """Pickled without the queries it built (``span_reader``): the copy builds its own."""
        return self._session, self._page_bytes, self._max_changes_bytes

    def __setstate__(self, state: tuple[ReadOnlySession, int, int]) -> None:
        self._session, self._page_bytes, self._max_changes_bytes = state
        self._text_limits = text_columns.limits(self._max_changes_bytes)
        self._built = {}

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
        rows, limit_bytes = self._measured(tenant, _PAGE, _rows_of, params)
        return tuple(_audit_row(tenant, row, limit_bytes, self._text_limits) for row in rows)

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
        rows, _ = self._measured(tenant, _PAGE_IDS, _fetch_all, params)
        return [row[0] for row in rows]

    def span_rows(self, span: PageSpan) -> Sequence[AuditRow]:
        """The span's rows still in its scope, in id order (``ports.AuditPageIds``)."""
        if not span.ids or not span.scope:
            return ()
        ids = list(span.ids)
        params = (ids[0], ids[-1], ids, list(span.scope), naive_utc(span.cutoff))
        rows, limit_bytes = self._measured(span.tenant, _SPAN, _rows_of, params)
        return tuple(_audit_row(span.tenant, row, limit_bytes, self._text_limits) for row in rows)

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
        row, limit_bytes = self._measured(tenant, _BY_ID, _row_by_id, audit_id)
        return None if row is None else _audit_row(tenant, row, limit_bytes, self._text_limits)

    def _plain(self, template: sql.SQL, tenant: str) -> Callable[[psycopg.Connection], sql.Composed]:
        """``template`` (``_BOUNDS``, ``_QUANTILES``) for the tenant's checked schema."""
        query = template.format(schema=self._session.schema(tenant, "audits"))
        return lambda _conn: query

    def _measured(
        self,
        tenant: str,
        template: sql.SQL,
        read: Callable[[Callable[[psycopg.Connection], sql.Composed], Any, psycopg.Connection], T],
        params: Any,
    ) -> tuple[T, int]:
        """``read(query, params, conn)`` of ``template`` (``_PAGE``, ``_PAGE_IDS``, ``_SPAN``, ``_BY_ID``)
        in ``ReadOnlySession.run_checked``, and the limit its query omitted values above
        (``_omission_limit``). A jsonb ``audited_changes`` is measured by rendering it
        (``_sent_bytes``); when that meets PostgreSQL's 1 GiB limit (54000: a value whose text passes
        it, though jsonb stores at most 256 MiB), the query is built once more measuring each jsonb
        value by its parts (``_JSONB_TEXT_BYTES``), which renders nothing: that value is then omitted,
        its row a ``LimitExceeded`` as any value past the limit, instead of failing its page on
        every run."""
        limit = self._max_changes_bytes

        def prepare(*, unrendered: bool = False) -> Callable[[psycopg.Connection], T]:
            nonlocal limit
            types = self._session.audit_column_types(tenant)
            # Built once per table shape: the session's checks give a new mapping when they run
            # again (a deploy's DDL, run_checked), which builds the query again. ~0.2 ms a page.
            key = (tenant, id(template), unrendered)  # templates are module constants
            built = self._built.get(key)
            if built is None or built.types is not types:
                changes_type = types["audited_changes"]
                built_limit = _omission_limit(changes_type, self._max_changes_bytes)
                fetched = _fetched(built_limit, text_columns.bounded(types, self._text_limits))
                query = self._query(
                    template, tenant, changes_type, built_limit, fetched, unrendered=unrendered
                )
                built = self._built[key] = _Built(types, built_limit, query)
            limit = built.limit
            return partial(read, built.query, params)

        found = self._session.run_checked(tenant, prepare, on_limit=partial(prepare, unrendered=True))
        return found, limit

    def _query(
        self,
        template: sql.SQL,
        tenant: str,
        changes_type: str,
        limit: int,
        fetched: sql.Composed,
        *,
        unrendered: bool,
    ) -> Callable[[psycopg.Connection], sql.Composed]:
        """``template`` for the tenant, on a connection: the size expressions depend on the column's
        type (``ReadOnlySession.audit_changes_type``) and the server's encoding (``_sent_bytes``,
        ``_changes_size``). Built inside ``ReadOnlySession.run_checked``, so a type a deploy changed
        is read again."""
        schema = self._session.schema(tenant, "audits")
        columns = _ID_AND_TEXTS if template is _PAGE_IDS else _COLUMNS
        sent = _sent_bytes(changes_type, unrendered=unrendered)
        candidates = _KEYSET.format(columns=columns, schema=schema)
        if changes_type == "jsonb":
            candidates = _LEAST_CUT.format(keyset=candidates, budget=sql.Literal(self._page_bytes))

        composed: dict[str | None, sql.Composed] = {}  # by the server's encoding

        def on(conn: psycopg.Connection) -> sql.Composed:
            encoding = conn.info.parameter_status("server_encoding")
            query = composed.get(encoding)
            if query is None:
                size = _NO_SIZE if template is _PAGE_IDS else _changes_size(changes_type, encoding, limit)
                query = composed[encoding] = template.format(
                    candidates=candidates,
                    columns=columns,
                    fetched=fetched,
                    size=size,
                    sent=sent,
                    schema=schema,
                )
            return query

        return on


@attrs.frozen
class _Built:
    """A measured query built for a table shape (``PostgresAuditSource._measured``): the column types
    it was built for (the session's mapping, compared by identity), its omission limit, the query."""

    types: Mapping[str, str]
    limit: int
    query: Callable[[psycopg.Connection], sql.Composed]


def _omission_limit(changes_type: str, max_changes_bytes: int) -> int:
    """The bytes above which a value of this type is omitted: ``max_changes_bytes``, or less where
    PostgreSQL could not send a value that size (``_LARGEST_SENT`` of text; a bytea's hex text is
    twice its bytes and two)."""
    largest = (_LARGEST_SENT - 2) // 2 if changes_type == "bytea" else _LARGEST_SENT
    return min(max_changes_bytes, largest)


def _fetched(
    max_changes_bytes: int, texts: tuple[Mapping[str, sql.Composable], sql.Composable]
) -> sql.Composed:
    """The audit columns (``AUDIT_COLUMNS``' order) over a query that measured ``changes_bytes``:
    ``audited_changes`` NULL where it holds more than ``max_changes_bytes``, then that size (else
    NULL) as a column, which ``_audit_row`` makes ``OmittedChanges``; the other text columns read up
    to their limits, and their sizes past them as a last column (``texts``:
    ``text_columns.bounded``). The limit is an integer literal (a constant of the source), so the
    query's parameters stay the ones they were."""
    bounded, sizes = texts
    over = sql.SQL("changes_bytes > {}").format(sql.Literal(int(max_changes_bytes)))
    columns = [
        sql.SQL("CASE WHEN {} THEN NULL ELSE audited_changes END AS audited_changes").format(over)
        if name == "audited_changes"
        else bounded.get(name, sql.Identifier(name))
        for name in AUDIT_COLUMNS
    ]
    return sql.SQL(", ").join([*columns, sql.SQL("CASE WHEN {} THEN changes_bytes END").format(over), sizes])


def _sent_bytes(changes_type: str, *, unrendered: bool = False) -> sql.Composable:
    """The bytes of ``audited_changes`` the server sends, in SQL (the page's byte budget): a text,
    char(n) (with its padding) or json value's ``octet_length``, read from its header; a bytea's hex
    text, ``\\x`` and two digits a byte, counted from its header too (it was rendered to be counted,
    which fails past 512 MiB); a jsonb value rendered as text and counted — or, ``unrendered``,
    counted by its parts (``_JSONB_TEXT_BYTES``). ``changes_type`` is
    ``ReadOnlySession.audit_changes_type``'s."""
    if changes_type == "bytea":
        return sql.SQL("2 * octet_length(audited_changes) + 2")
    if changes_type == "jsonb":
        return _JSONB_TEXT_BYTES if unrendered else sql.SQL("octet_length(audited_changes::text)")
    if changes_type == "json":  # json's text is the value itself: the cast renders nothing
        return sql.SQL("octet_length(audited_changes::text)")
    return sql.SQL("octet_length(audited_changes)")


def _changes_size(changes_type: str, server_encoding: str | None, limit: int) -> sql.Composable:
    """The size of ``audited_changes`` as the loader counts it, in SQL, over ``sent_bytes``
    (``_sent_bytes``), where it decides the omission (above ``limit``): the bytes of a bytea, else the
    UTF-8 bytes of the text the server sends — ``sent_bytes`` itself in a ``UTF8`` or ``SQL_ASCII``
    database (``_SIZE_EXACT_ENCODINGS``). In a single-byte encoding (``_SINGLE_BYTE_ENCODINGS``: LATIN1,
    WIN1252…) a character is one byte there and one to three in UTF-8, so a value of more than
    ``limit`` bytes there is more in UTF-8 too: its UTF-8 size is computed on the server for those
    values alone (``convert_to``, up to ``_CONVERTIBLE`` bytes, a byte that is no character there
    counted as one, ``_untranslatable_bytes``; past that, a value PostgreSQL may not
    convert, its bytes there: less than its UTF-8 size), NULL (not omitted) for the others, which
    the loader measures as before. In another encoding NULL (never omitted), unless the value is too
    large to be sent at all (``_LARGEST_SENT``): then its bytes in that encoding."""
    if changes_type == "bytea":
        return sql.SQL("octet_length(audited_changes)")
    if server_encoding in _SIZE_EXACT_ENCODINGS:
        return sql.SQL("sent_bytes")
    if server_encoding is None or server_encoding not in _SINGLE_BYTE_ENCODINGS:
        return _UNSENDABLE
    # char(n)'s ::text drops its padding, which is one byte a space in either encoding.
    padding = " + sent_bytes - octet_length(audited_changes::text)" if changes_type == "character" else ""
    utf8 = "octet_length(convert_to(audited_changes::text, 'UTF8'))"
    if untranslatable := _untranslatable_bytes(server_encoding):
        # A byte that is no character there would fail the conversion, and with it the page on
        # every read (22P05): counted as one byte instead, the rest converted. The value is
        # omitted all the same (more bytes than the limit there), its row LimitExceeded, as a
        # fetched text that size is refused before it is decoded.
        chars = " || ".join(f"chr({byte})" for byte in untranslatable)
        kept = f"translate(audited_changes::text, {chars}, '')"
        utf8 = (
            f"(octet_length(convert_to({kept}, 'UTF8'))"
            f" + octet_length(audited_changes::text) - octet_length({kept}))"
        )
    return sql.SQL(
        "CASE WHEN sent_bytes <= {} THEN NULL WHEN sent_bytes <= {}"
        f" THEN {utf8}{padding} ELSE sent_bytes END"
    ).format(sql.Literal(limit), sql.Literal(_CONVERTIBLE))


def _escaped_bytes(text: str) -> str:
    """SQL: the bytes of the text expression ``text`` as jsonb writes it between its quotes: a byte
    each, one more for ``"``, ``\\`` and the five control characters with a short escape
    (``\\n``…), five more for the other control characters (``\\u001f``). PostgreSQL's
    ``escape_json``; ``translate`` copies the text once, rendering nothing."""
    return (
        f"(2 * octet_length({text}) - octet_length(translate({text}, {_SHORT_ESCAPED}, ''))"
        f" + 5 * (octet_length({text}) - octet_length(translate({text}, {_LONG_ESCAPED}, ''))))"
    )


_SHORT_ESCAPED: Final = "E'\"\\\\\\b\\f\\n\\r\\t'"
_LONG_ESCAPED: Final = (
    "E'" + "".join(f"\\x{c:02x}" for c in range(1, 32) if c not in (8, 9, 10, 12, 13)) + "'"
)
_STRING_NODE: Final = "(node #>> '{}')"  # a jsonb string's text
# The length of a jsonb value's text (jsonb_out), summed over its nodes (the value and every value
# inside it), without rendering it: an object's braces, and for each key its quoted text, ": " and
# ", " (the last one's counted as the closing brace); an array's brackets and ", " between elements;
# a string quoted and escaped; a number, true, false or null as it is rendered (at most ~150 KB: a
# numeric's 131,072 digits and 16,383 decimals). The tests compare it with octet_length(value::text)
# over escapes, numbers, keys, nesting and empty containers. The nodes come from a recursive CTE, a
# level an iteration: jsonpath's strict $.** recursed once a level on the server's stack and failed
# with 54001 (stack depth) past about 10,000 levels, which jsonb's parser accepts up to about 14,500
# (max_stack_depth 2MB) and its render at any depth — the page failing on every run again.
# Not a template (sql.SQL's braces are not read): a Composable placed as it is.
_JSONB_TEXT_BYTES: Final = sql.SQL(
    "(WITH RECURSIVE nodes(node) AS (SELECT audited_changes UNION ALL SELECT child FROM nodes,"  # noqa: S608
    " LATERAL (SELECT value FROM jsonb_each(CASE jsonb_typeof(node) WHEN 'object' THEN node END)"
    " UNION ALL SELECT value FROM jsonb_array_elements(CASE jsonb_typeof(node) WHEN 'array' THEN node END)"
    ") AS children(child))"
    " SELECT sum(CASE jsonb_typeof(node) WHEN 'object' THEN"
    f" (SELECT coalesce(sum(6 + {_escaped_bytes('k')}), 2) FROM jsonb_object_keys(node) AS k)"
    " WHEN 'array' THEN greatest(2 * jsonb_array_length(node), 2)"
    f" WHEN 'string' THEN 2 + {_escaped_bytes(_STRING_NODE)}"
    " ELSE octet_length(node::text) END)::bigint FROM nodes)"
)


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
    """jsonb/json in text format → ``JsonbText`` (decoded later, by the loader, under its limits).

    The text comes in the connection's encoding: in a LATIN1 database an ``é`` is one byte, which
    decoding it as UTF-8 refused (``UnicodeDecodeError``: every read of the page failed). A
    SQL_ASCII database's bytes are the app's, UTF-8 in practice (``encodings``); a value there that
    is not UTF-8 comes as its bytes, which the loader refuses (``BadEncoding``) for its row alone:
    it failed the page's every read. In another encoding a value holding a byte that is no
    character there (0x81 in WIN1252, which stores it) comes as an ``UntranslatableText``, which the
    loader refuses (``BadEncoding``) for its row alone: it failed the page's every read too."""

    __slots__ = ("_codec", "_encoding", "_sql_ascii")

    def __init__(self, oid: int, context: AdaptContext | None = None) -> None:
        super().__init__(oid, context)
        codec, self._encoding = encodings.encoding_of(context)
        self._sql_ascii = codec == "ascii"  # psycopg's name for SQL_ASCII
        self._codec = "utf-8" if self._sql_ascii else codec

    def load(self, data: Buffer) -> JsonbText | UntranslatableText | bytes:
        if self._sql_ascii:
            raw = bytes(data)
            try:
                return JsonbText(raw.decode("utf-8"))
            except UnicodeDecodeError:
                # SQL_ASCII stores whatever bytes the app sent: a value that is not UTF-8 stays
                # bytes, which the loader refuses (BadEncoding) for its row alone, as for a text column.
                return raw
        text = encodings.decoded(data, self._codec, self._encoding)
        return JsonbText(text) if isinstance(text, str) else text


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
    # Outside UTF-8 and SQL_ASCII, a value that is no text in the database's encoding is its row's
    # failure, not the page's (encodings); psycopg's own loaders, at C speed, in a UTF-8 database.
    encodings.register_untranslatable(cursor.adapters, conn)
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


def _audit_row(
    tenant: str, row: tuple[Any, ...], max_changes_bytes: int, text_limits: Mapping[str, int]
) -> AuditRow:
    (
        id_, auditable_type, auditable_id, action, changes, created_at, associated_id,
        associated_type, user_id, user_type, username, version, comment, remote_address, request_uuid,
        omitted_bytes, omitted_texts,
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
    audit = AuditRow(
        tenant, id_, auditable_type, auditable_id, action, changes, created_at, associated_id,
        associated_type, user_id, user_type, username, version, comment, remote_address, request_uuid,
    )  # fmt: skip
    if omitted_texts is None:  # no text column past its limit (text_columns.bounded)
        return audit
    stand_ins = text_columns.stand_ins(omitted_texts, text_limits, has_user=user_id is not None)
    # A NotRead where AuditRow declares a str, on purpose: the transformer fails that row for it.
    return attrs.evolve(audit, **cast("dict[str, Any]", stand_ins))


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
