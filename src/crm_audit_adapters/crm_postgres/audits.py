"""``PostgresAuditSource``: keyset pages of a tenant's ``audits`` table (port ``AuditSource``).

Every value is a bound parameter and the tenant schema a quoted identifier. A page is at most
``limit`` rows fetched by ``id > cursor`` on the primary key, so no query ever reads a whole table
into memory. ``created_at`` is ``timestamp without time zone`` holding UTC (Rails' default), so the
cutoff is sent as a naive UTC timestamp and every value read back is made aware as UTC; a
``timestamptz`` column works too because each transaction sets ``TimeZone = UTC``.

A jsonb (or json) ``audited_changes`` is fetched as its text (``JsonbText``), never decoded by the
driver: psycopg's decoder recurses once per nesting level, so one value nested deeper than Python's
recursion limit would make the whole page's fetch raise, forever on the same page. The loader
decodes the text under its limits, and such a row is that row's failure.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, cast

import psycopg
from psycopg import sql
from psycopg.adapt import Buffer, Loader

from crm_audit_transform.domain import NO_TIME_KNOWN, AuditRow, ScopeBounds
from crm_audit_transform.loading import JsonbText

from .lookups import user_id_of
from .session import ReadOnlySession
from .timestamps import aware_utc, naive_utc

_COLUMNS = sql.SQL(", ").join(
    sql.Identifier(name)
    for name in (
        "id", "auditable_type", "auditable_id", "action", "audited_changes", "created_at",
        "associated_id", "associated_type", "user_id", "user_type", "username", "version",
        "comment", "remote_address", "request_uuid",
    )
)  # fmt: skip

# A NULL created_at is in every range: such a row is read, and fails as missing_created_at, instead
# of staying invisible to the run.
_PAGE = sql.SQL(
    "SELECT {columns} FROM {schema}.audits"
    " WHERE id > %s AND auditable_type = ANY(%s) AND (created_at >= %s OR created_at IS NULL)"
    " ORDER BY id LIMIT %s"
)
_BY_ID = sql.SQL("SELECT {columns} FROM {schema}.audits WHERE id = %s")
_BOUNDS = sql.SQL(
    "SELECT min(id), max(id), min(created_at), count(*) FROM {schema}.audits"
    " WHERE auditable_type = ANY(%s) AND (created_at >= %s OR created_at IS NULL)"
)
# The shard cuts: one ordered pass over the in-scope ids (the same rows _BOUNDS counts).
_QUANTILES = sql.SQL(
    "SELECT percentile_disc(%s::float8[]) WITHIN GROUP (ORDER BY id) FROM {schema}.audits"
    " WHERE auditable_type = ANY(%s) AND (created_at >= %s OR created_at IS NULL)"
)
# With no cutoff the oldest in-scope audit is the start; a floor keeps a single query shape.
_NO_CUTOFF = dt.datetime.min


class PostgresAuditSource:
    """Reads one tenant schema's ``audits`` through a ``ReadOnlySession``."""

    __slots__ = ("_session",)

    def __init__(self, session: ReadOnlySession) -> None:
        self._session = session

    def scope_bounds(
        self, tenant: str, scope: Sequence[str], cutoff: dt.datetime | None
    ) -> ScopeBounds | None:
        if not scope:
            return None
        query = _BOUNDS.format(schema=self._session.schema(tenant, "audits"))
        params = (list(scope), _NO_CUTOFF if cutoff is None else naive_utc(cutoff))
        row = self._session.run(lambda conn: conn.execute(query, params).fetchone())
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
        query = _PAGE.format(columns=_COLUMNS, schema=self._session.schema(tenant, "audits"))
        params = (after_id, list(scope), naive_utc(cutoff), limit)
        rows = self._session.run(lambda conn: _cursor(conn).execute(query, params).fetchall())
        return tuple(_audit_row(tenant, row) for row in rows)

    def id_quantiles(
        self, tenant: str, scope: Sequence[str], cutoff: dt.datetime | None, parts: int
    ) -> Sequence[int]:
        """The in-scope ids at the k/parts quantiles (k = 1 … parts-1): ``percentile_disc``."""
        if not scope or parts < 2:
            return ()
        query = _QUANTILES.format(schema=self._session.schema(tenant, "audits"))
        fractions = [k / parts for k in range(1, parts)]
        params = (fractions, list(scope), _NO_CUTOFF if cutoff is None else naive_utc(cutoff))
        row = self._session.run(lambda conn: conn.execute(query, params).fetchone())
        if row is None or row[0] is None:
            return ()
        return tuple(int(i) for i in row[0] if i is not None)

    def audit_by_id(self, tenant: str, audit_id: int) -> AuditRow | None:
        query = _BY_ID.format(columns=_COLUMNS, schema=self._session.schema(tenant, "audits"))
        row = self._session.run(lambda conn: _cursor(conn).execute(query, (audit_id,)).fetchone())
        return None if row is None else _audit_row(tenant, row)


class _JsonbTextLoader(Loader):
    """jsonb/json in text format → ``JsonbText`` (decoded later, by the loader, under its limits)."""

    def load(self, data: Buffer) -> JsonbText:
        return JsonbText(bytes(data).decode("utf-8"))


def _cursor(conn: psycopg.Connection) -> psycopg.Cursor[Any]:
    cursor = conn.cursor()  # its own adapters: the connection's other queries still decode JSON
    for name in ("jsonb", "json"):
        cursor.adapters.register_loader(name, _JsonbTextLoader)
    return cursor


def _audit_row(tenant: str, row: tuple[Any, ...]) -> AuditRow:
    (
        id_, auditable_type, auditable_id, action, changes, created_at, associated_id,
        associated_type, user_id, user_type, username, version, comment, remote_address, request_uuid,
    ) = row  # fmt: skip
    # AuditRow's fields in order, passed by position: a row is built per audit, and keywords cost.
    return AuditRow(
        tenant, id_, auditable_type, auditable_id, action, _changes(changes),
        None if created_at is None else aware_utc(created_at), associated_id, associated_type,
        None if user_id is None else user_id_of(user_id), user_type, username, version, comment,
        remote_address, request_uuid,
    )  # fmt: skip


def _changes(value: object) -> str | bytes | Mapping[str, Any] | JsonbText | None:
    """Text stays text (loaded later as YAML), jsonb arrives as JsonbText; the loader refuses anything odd."""
    if isinstance(value, memoryview):
        return bytes(value)
    return cast("str | Mapping[str, Any] | JsonbText | None", value)
