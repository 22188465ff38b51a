"""CRM lookups a page needs: users, entity names, the people count (ports of the same names).

Each answers one page with one query (``= ANY(%s)``), reads the tenant's schema as a quoted
identifier, and goes through the same ``ReadOnlySession`` as the audit source.
"""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable, Collection, Mapping, Sequence
from functools import partial
from typing import Any

import psycopg
from attrs import frozen
from psycopg import sql

from crm_audit_transform.domain import CrmUser, EntityRef, UserId
from crm_audit_transform.errors import UntranslatableCharacter

from .session import ReadOnlySession
from .timestamps import aware_utc

# Only "is it set" matters to the rules (a soft-deleted user is never an actor), so a deleted_at
# that ``datetime`` cannot hold (infinity, -infinity, past year 9999, BC) is clamped into its range,
# a day inside either end so no session time zone pushes it out, instead of failing every lookup of
# the tenant as a refused query.
_DELETED_AT = sql.SQL(
    "CASE WHEN deleted_at IS NULL THEN NULL WHEN deleted_at < '0001-01-02' THEN '0001-01-02'"
    " WHEN deleted_at > '9999-12-30' THEN '9999-12-30' ELSE deleted_at END"
)
_USERS = sql.SQL("SELECT id, email, full_name, {deleted_at} FROM {schema}.users WHERE id = ANY(%s)")
# A uuid (or varchar) id column, asked with string ids: compared as text so any id type answers.
_USERS_BY_TEXT = sql.SQL(
    "SELECT id, email, full_name, {deleted_at} FROM {schema}.users WHERE id::text = ANY(%s::text[])"
)
_PEOPLE = sql.SQL("SELECT count(*) FROM {schema}.crm_people")
_PEOPLE_IDS = sql.SQL("SELECT id FROM {schema}.crm_people WHERE id > %s ORDER BY id LIMIT %s")
_ENTITIES = sql.SQL("SELECT id, {name} FROM {schema}.{table} WHERE id = ANY(%s)")


@frozen
class EntityTable:
    """Where an entity type lives and which SQL expression names it."""

    table: str
    name: sql.Composable


# concat_ws skips NULLs, so a person with one name part is named by that part alone.
_PERSON_NAME = sql.SQL("concat_ws(' ', {}, {})").format(
    sql.Identifier("first_name"), sql.Identifier("last_name")
)

DEFAULT_ENTITY_TABLES: Mapping[str, EntityTable] = {
    "Crm::Person": EntityTable("crm_people", _PERSON_NAME),
    "Crm::Company": EntityTable("crm_companies", sql.Identifier("name")),
    "Crm::Deal": EntityTable("crm_deals", sql.Identifier("name")),
    "Crm::Ticket": EntityTable("crm_tickets", sql.Identifier("name")),
    "Crm::Task": EntityTable("crm_tasks", sql.Identifier("name")),
}
"""The allowlist of entity types: a type missing here is never turned into a table name."""


class PostgresUserDirectory:
    """``users`` rows by id; soft-deleted users are returned with ``deleted_at``, gone ones are absent."""

    __slots__ = ("_session",)

    def __init__(self, session: ReadOnlySession) -> None:
        self._session = session

    def __repr__(self) -> str:
        return "PostgresUserDirectory()"

    def worker_copy(self) -> PostgresUserDirectory | None:
        """This directory for a worker process (``ports.WorkerCopy``): over a copy of the session,
        which opens its own connection at its first query; None when the session cannot be sent
        (a connection factory or retry policy that does not pickle). The DSN it carries crosses only
        the pipe to the run's own worker process (as ``PostgresSpanReader``'s)."""
        copied = PostgresUserDirectory(copy.copy(self._session))  # the copy holds no connection
        try:
            pickle.dumps(copied)
        except (pickle.PicklingError, TypeError, AttributeError):
            return None
        return copied

    def close(self) -> None:
        """Close its session's connection: a worker's copy's own (``worker_copy``); the runner's
        session is the runtime's, which closes it."""
        self._session.close()

    def users_by_ids(self, tenant: str, ids: Collection[UserId]) -> Mapping[UserId, CrmUser]:
        """Integer ids use the primary key's index; string ids (UUIDs) are compared as text."""
        numbers = sorted({i for i in ids if type(i) is int})
        texts = sorted({i for i in ids if type(i) is str})
        found: dict[UserId, CrmUser] = {}
        asks: tuple[tuple[sql.SQL, list[int | str]], ...] = (
            (_USERS, list(numbers)),
            (_USERS_BY_TEXT, list(texts)),
        )
        for template, wanted in asks:
            if not wanted:
                continue
            rows = self._session.run_checked(tenant, partial(self._users, template, tenant, wanted))
            for id_, email, full_name, deleted_at in rows:
                key = user_id_of(id_)
                deleted = None if deleted_at is None else aware_utc(deleted_at)
                found[key] = CrmUser(key, email, full_name, deleted)
        return found

    def _users(
        self, template: sql.SQL, tenant: str, wanted: list[int | str]
    ) -> Callable[[psycopg.Connection], list[Any]]:
        query = template.format(schema=self._session.schema(tenant, "users"), deleted_at=_DELETED_AT)
        return partial(_fetch_all, "users", query, (wanted,))


def _fetch_all(
    table: str, query: sql.Composed, params: tuple[Any, ...], conn: psycopg.Connection
) -> list[Any]:
    try:
        return conn.execute(query, params).fetchall()
    except UnicodeDecodeError:
        # A single-byte database (WIN1252, LATIN1…) stores bytes its encoding has no character for,
        # and psycopg decodes each text in that encoding. An audit row's own such value fails that
        # row (``crm_postgres.audits``); a user's or entity's is no row's own and may stand behind
        # many, so the lookup halts typed. ``from None``: the decode error quotes the bytes.
        encoding = conn.info.parameter_status("client_encoding") or conn.info.encoding
        raise UntranslatableCharacter(table, encoding) from None


def user_id_of(value: object) -> UserId:
    """A user id column's value as the core compares it: an int as is, anything else (UUID) as text."""
    return value if type(value) is int else str(value)


class PostgresEntityDirectory:
    """Entity names by id; an id asked for but not found is answered ``exists=False`` (deleted)."""

    __slots__ = ("_session", "_tables")

    def __init__(
        self, session: ReadOnlySession, tables: Mapping[str, EntityTable] = DEFAULT_ENTITY_TABLES
    ) -> None:
        self._session = session
        self._tables = dict(tables)

    def entities_by_ids(self, tenant: str, entity_type: str, ids: Collection[int]) -> Mapping[int, EntityRef]:
        """Types outside the allowlist are never queried: the answer is empty (nothing known)."""
        table = self._tables.get(entity_type)
        wanted = sorted({int(i) for i in ids})
        if table is None or not wanted:
            return {}

        def prepare() -> Callable[[psycopg.Connection], list[Any]]:
            query = _ENTITIES.format(
                name=table.name,
                schema=self._session.schema(tenant, table.table),
                table=sql.Identifier(table.table),
            )
            return partial(_fetch_all, table.table, query, (wanted,))

        rows = self._session.run_checked(tenant, prepare)
        found = {id_: EntityRef(entity_type, id_, name) for id_, name in rows}
        return {i: found.get(i) or EntityRef(entity_type, i, None, exists=False) for i in wanted}


class PostgresPeopleCounter:
    """The tenant's ``crm_people``: ``count(*)`` and keyset pages of ids (the Phase-A coverage guard)."""

    __slots__ = ("_session",)

    def __init__(self, session: ReadOnlySession) -> None:
        self._session = session

    def count_people(self, tenant: str) -> int:
        rows = self._session.run_checked(
            tenant, lambda: partial(_fetch_all, "crm_people", self._people(_PEOPLE, tenant), ())
        )
        return int(rows[0][0]) if rows else 0

    def person_ids(self, tenant: str, *, after_id: int, limit: int) -> Sequence[int]:
        params = (after_id, limit)
        rows = self._session.run_checked(
            tenant, lambda: partial(_fetch_all, "crm_people", self._people(_PEOPLE_IDS, tenant), params)
        )
        return [int(row[0]) for row in rows]

    def _people(self, template: sql.SQL, tenant: str) -> sql.Composed:
        return template.format(schema=self._session.schema(tenant, "crm_people"))
