"""Text from a ``SQL_ASCII`` CRM database: UTF-8 where it is, the raw bytes of one value where not.

``SQL_ASCII`` means "no encoding": PostgreSQL stores and returns whatever bytes the Rails app wrote
(UTF-8, in practice), and psycopg therefore hands every text value back as ``bytes``, so every row
failed as ``invalid_audit_row``. On such a connection the text types are decoded as UTF-8, value by
value; a value that is not UTF-8 stays ``bytes``, which fails that one row (``invalid_audit_row``,
or ``bad_encoding`` for ``audited_changes``, a json or jsonb one too: ``audits._JsonbTextLoader``)
and no other.
"""

from __future__ import annotations

import psycopg
from psycopg.adapt import Buffer, Loader

TEXT_TYPES = ("text", "varchar", "bpchar", "name")


class Utf8OrBytesLoader(Loader):
    """A text value decoded as UTF-8, or its bytes when they are not UTF-8."""

    def load(self, data: Buffer) -> str | bytes:
        raw = bytes(data)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw


def adapt_sql_ascii(conn: psycopg.Connection) -> None:
    """On a ``SQL_ASCII`` connection, read the text types with :class:`Utf8OrBytesLoader`."""
    if conn.info.encoding == "ascii":  # psycopg's name for SQL_ASCII
        for name in TEXT_TYPES:
            conn.adapters.register_loader(name, Utf8OrBytesLoader)
