"""The CRM side: read-only access to the tenant schemas of the CRM's PostgreSQL (psycopg 3).

Wire it up once in a composition root; nothing connects before the first query::

    session = ReadOnlySession(PostgresConnectionFactory(dsn), statement_timeout_ms=30_000)
    source = PostgresAuditSource(session)          # ports.AuditSource
    users = PostgresUserDirectory(session)         # ports.UserDirectory
    entities = PostgresEntityDirectory(session)    # ports.EntityDirectory
    people = PostgresPeopleCounter(session)        # ports.PeopleCounter

``throwaway`` starts a disposable server (tests, benchmarks, dry runs) and ``dump`` loads a plain
``pg_dump`` file into it without ``psql``.
"""

from ..retrying import RetryPolicy
from .audits import PostgresAuditSource
from .lookups import (
    DEFAULT_ENTITY_TABLES,
    EntityTable,
    PostgresEntityDirectory,
    PostgresPeopleCounter,
    PostgresUserDirectory,
)
from .session import PostgresConnectionFactory, ReadOnlySession

__all__ = [
    "DEFAULT_ENTITY_TABLES",
    "EntityTable",
    "PostgresAuditSource",
    "PostgresConnectionFactory",
    "PostgresEntityDirectory",
    "PostgresPeopleCounter",
    "PostgresUserDirectory",
    "ReadOnlySession",
    "RetryPolicy",
]
