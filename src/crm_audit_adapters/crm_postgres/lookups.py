"""CRM lookups a page needs: users, entity names, the people count (ports of the same names).

Each answers one page with one query (``= ANY(%s)``), reads the tenant's schema as a quoted
identifier, and goes through the same ``ReadOnlySession`` as the audit source.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from attrs import frozen
from psycopg import sql

from crm_audit_transform.domain import CrmUser, EntityRef

from .session import ReadOnlySession
from .timestamps import aware_utc

_USERS = sql.SQL("SELECT id, email, full_name, deleted_at FROM {schema}.users WHERE id = ANY(%s)")
_PEOPLE = sql.SQL("SELECT count(*) FROM {schema}.crm_people")
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

    def users_by_ids(self, tenant: str, ids: Collection[int]) -> Mapping[int, CrmUser]:
        wanted = sorted({int(i) for i in ids})
        if not wanted:
            return {}
        query = _USERS.format(schema=self._session.schema(tenant))
        rows = self._session.run(lambda conn: conn.execute(query, (wanted,)).fetchall())
        return {
            id_: CrmUser(id_, email, full_name, None if deleted_at is None else aware_utc(deleted_at))
            for id_, email, full_name, deleted_at in rows
        }


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
        query = _ENTITIES.format(
            name=table.name, schema=self._session.schema(tenant), table=sql.Identifier(table.table)
        )
        rows = self._session.run(lambda conn: conn.execute(query, (wanted,)).fetchall())
        found = {id_: EntityRef(entity_type, id_, name) for id_, name in rows}
        return {i: found.get(i) or EntityRef(entity_type, i, None, exists=False) for i in wanted}


class PostgresPeopleCounter:
    """``count(*)`` of the tenant's ``crm_people`` (the Phase-A coverage denominator)."""

    __slots__ = ("_session",)

    def __init__(self, session: ReadOnlySession) -> None:
        self._session = session

    def count_people(self, tenant: str) -> int:
        query = _PEOPLE.format(schema=self._session.schema(tenant))
        row = self._session.run(lambda conn: conn.execute(query).fetchone())
        return 0 if row is None else int(row[0])
