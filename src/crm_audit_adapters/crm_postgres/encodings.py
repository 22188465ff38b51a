"""Text in a CRM database's encoding, one value at a time: a value that is no text there fails its
row alone, never the page.

``SQL_ASCII`` means "no encoding": PostgreSQL stores and returns whatever bytes the Rails app wrote
(UTF-8, in practice), and psycopg therefore hands every text value back as ``bytes``, so every row
failed as ``invalid_audit_row``. On such a connection the text types are decoded as UTF-8, value by
value; a value that is not UTF-8 stays ``bytes``, which fails that one row (``invalid_audit_row``,
or ``bad_encoding`` for ``audited_changes``, a json or jsonb one too: ``audits._JsonbTextLoader``)
and no other.

Any other encoding but UTF-8 may hold a value that is no text there either: a single-byte one
(``WIN1252``, ``WIN1250``, ``ISO_8859_7``…) stores any byte but NUL, though some bytes are no
character in it (0x81 in ``WIN1252``), and psycopg's decoding of such a value raised
``UnicodeDecodeError`` for the whole page, on every read. The audit queries read their text there
with :class:`TextOrUntranslatableLoader`, which makes such a value an ``UntranslatableText`` of its
size and first untranslatable bytes: ``bad_encoding`` in ``audited_changes``, ``invalid_audit_row``
in another column. (A UTF-8 database's server checks every text it stores.)
"""

from __future__ import annotations

from typing import Final

import psycopg
from psycopg.abc import AdaptContext
from psycopg.adapt import Buffer, Loader

from crm_audit_transform.loading import UntranslatableText

TEXT_TYPES = ("text", "varchar", "bpchar", "name")
CHECKED_BY_THE_SERVER: Final = frozenset({"utf-8", "ascii"})
"""psycopg's names of the encodings whose text needs no ``TextOrUntranslatableLoader``: UTF-8 (the
server checks it) and SQL_ASCII (``Utf8OrBytesLoader``)."""


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


class TextOrUntranslatableLoader(Loader):
    """A text value decoded in the connection's encoding, or an ``UntranslatableText`` when it holds
    a byte sequence that is no character there (its size and that sequence, never the value)."""

    __slots__ = ("_codec", "_encoding")

    def __init__(self, oid: int, context: AdaptContext | None = None) -> None:
        super().__init__(oid, context)
        self._codec, self._encoding = encoding_of(context)

    def load(self, data: Buffer) -> str | UntranslatableText:
        return decoded(data, self._codec, self._encoding)


def encoding_of(context: AdaptContext | None) -> tuple[str, str]:
    """The connection's encoding: psycopg's (Python's codec) name, and PostgreSQL's
    (``client_encoding``: the encoding of the bytes it sends). UTF-8 without a connection."""
    conn = context.connection if context is not None else None
    if conn is None:
        return "utf-8", "UTF8"
    return conn.info.encoding, conn.info.parameter_status("client_encoding") or conn.info.encoding


def decoded(data: Buffer, codec: str, encoding: str) -> str | UntranslatableText:
    """``data`` as text in ``codec``, or the ``UntranslatableText`` of its first sequence that is no
    character there (``encoding``: PostgreSQL's name of it)."""
    try:
        return str(data, codec)
    except UnicodeDecodeError as exc:
        raw = bytes(data)
        return UntranslatableText(encoding, len(raw), exc.start, raw[exc.start : exc.end])


def register_untranslatable(adapters: psycopg.adapt.AdaptersMap, conn: psycopg.Connection) -> None:
    """Read the text types (and any type psycopg reads as text, ``citext`` say) with
    :class:`TextOrUntranslatableLoader` where the connection's encoding needs it
    (not ``CHECKED_BY_THE_SERVER``)."""
    if conn.info.encoding in CHECKED_BY_THE_SERVER:
        return
    for name in TEXT_TYPES:
        adapters.register_loader(name, TextOrUntranslatableLoader)
    adapters.register_loader(0, TextOrUntranslatableLoader)  # psycopg's loader of types it does not know
