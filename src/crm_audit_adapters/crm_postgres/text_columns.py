"""The audit queries' text columns besides ``audited_changes``: each read up to a limit, never whole.

A text column holds up to 1 GB. Fetched whole, one 1 GB ``comment`` peaked the reading process
at 2,902 MiB (41 MiB now), and beside a 20 MB ``audited_changes`` it made the row pass what
PostgreSQL can send (1 GiB): the page failed with 54000 on every run, a halt of the job for one row. So each
text column the audit queries read is sent only while its ``octet_length`` (read from the value's
header, not the value) is at most its limit; past it the query sends NULL and, in one last column
(the sizes column, ``bounded``), the value's size, and the row carries what the rules would make of the value:

- ``auditable_type``, ``action``, ``associated_type``, ``user_type``: the rules only compare them
  with the mapping's names (scope, category, person class, user class), none of which is
  ``MAX_FIELD_BYTES`` long, so the row carries a stand-in name (``stand_in_name``) that equals none of
  them either: an unmapped type or action is skipped as ``unmapped_action_type``, another class
  is not the person or the user, exactly as the value itself would be. (A page's rows are in scope,
  so their ``auditable_type`` is a scope name; only a read by id meets a long one.)
- ``remote_address``: no rule reads it: it comes as None.
- ``username``: the log's metadata keeps it for a row without a ``user_id`` (the system's rows); there
  the row fails (below), as the log would carry the value. A row with a user comes with None: no
  rule reads it then.
- ``request_uuid`` (kept in the log's metadata) and ``comment`` (the contact rule reads a person id
  from it, audited's combined-audit sentence is at its end): the row carries ``NotRead``, which the
  transformer fails as ``invalid_audit_row`` naming the column and its size ("comment was not read:
  5000 bytes, over its limit of 4096 bytes"), counted like any failure, instead of a log on a
  contact it could not tell. ``NotRead`` is the core's (``crm_audit_transform.domain``), which
  phrases that failure, and is named here too.

``comment``'s limit is the source's ``max_changes_bytes`` (the loader's ``max_bytes``: the contact rule
parses it as JSON, as the loader parses ``audited_changes``), at most ``COMMENT_CAP``; the others'
is ``MAX_FIELD_BYTES``. A column of another type than text (``text``, ``varchar``, ``char``,
``citext``) or ``bytea`` — a ``uuid`` ``request_uuid``, say, which has a size of its own — is
read as it is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from psycopg import sql

from crm_audit_transform.domain import NotRead as NotRead  # the core's, named here too

MAX_FIELD_BYTES: Final = 4096
"""The most bytes of ``auditable_type``, ``action``, ``associated_type``, ``user_type``, ``username``,
``remote_address`` and ``request_uuid`` read: audited writes class names, an action, a name, an IP
address and a UUID there (``string`` columns: 255 characters in Rails before 4.2). Seven of them
take at most 28 KiB a row, 14 MiB a page of 500, beyond the page's byte budget."""
COMMENT_CAP: Final = 64 << 20
"""The most bytes of ``comment`` read, whatever ``max_changes_bytes`` says: with the largest
``audited_changes`` PostgreSQL can send beside it (``audits._LARGEST_SENT``), a row stays under 1 GiB.
Bytes of text: the table check (``session``) takes only a text ``comment``, which is sent as it is
stored; a bytea would be sent as hex, twice its bytes."""
BOUNDED: Final = (
    "auditable_type", "action", "associated_type", "user_type", "username", "comment",
    "remote_address", "request_uuid",
)  # fmt: skip
"""The columns read up to a limit, in the order of the sizes column (``bounded``)."""
_BOUNDABLE_TYPES: Final = frozenset({"text", "character varying", "character", "citext", "bytea"})
"""Types whose ``octet_length`` is read from the value's header (``character``: with its padding)."""
_COMPARED: Final = frozenset({"auditable_type", "action", "associated_type", "user_type"})


def stand_in_name(size: int) -> str:
    """The name a compared column (``auditable_type``, ``action``…) of ``size`` bytes comes as: it
    equals no name of a mapping, whose names are shorter than the limit, and says what it stands for."""
    return f"<not read: {size} bytes>"


def limits(max_changes_bytes: int) -> dict[str, int]:
    """Each bounded column's limit in bytes (module docstring)."""
    return {
        name: min(max_changes_bytes, COMMENT_CAP) if name == "comment" else MAX_FIELD_BYTES
        for name in BOUNDED
    }


def bounded(
    types: Mapping[str, str], column_limits: Mapping[str, int]
) -> tuple[dict[str, sql.Composable], sql.Composable]:
    """The select expression of each bounded column of a type ``octet_length`` measures (NULL past
    its limit), and the sizes column: NULL when no value of the row passed its limit, else an array in
    ``BOUNDED``'s order of each such value's size (NULL for the others). Over a query whose rows
    hold the audit columns; the limits are integer literals, so the parameters stay the query's."""
    over: dict[str, sql.Composable] = {
        name: sql.SQL("octet_length({}) > {}").format(sql.Identifier(name), sql.Literal(column_limits[name]))
        for name in BOUNDED
        if types.get(name) in _BOUNDABLE_TYPES
    }
    if not over:
        return {}, NO_SIZES
    columns: dict[str, sql.Composable] = {
        name: sql.SQL("CASE WHEN {} THEN NULL ELSE {} END AS {}").format(
            test, sql.Identifier(name), sql.Identifier(name)
        )
        for name, test in over.items()
    }
    sizes = sql.SQL(", ").join(
        sql.SQL("CASE WHEN {} THEN octet_length({}) END").format(over[name], sql.Identifier(name))
        if name in over
        else sql.SQL("NULL")
        for name in BOUNDED
    )
    sizes_column: sql.Composable = sql.SQL("CASE WHEN {} THEN ARRAY[{}]::bigint[] END").format(
        sql.SQL(" OR ").join(over.values()), sizes
    )
    return columns, sizes_column


NO_SIZES: Final = sql.SQL("NULL::bigint[]")
"""The sizes column of a table none of whose bounded columns ``octet_length`` measures."""


def stand_ins(
    sizes: Sequence[int | None], column_limits: Mapping[str, int], *, has_user: bool
) -> dict[str, str | NotRead | None]:
    """What the row carries in place of each value that passed its limit (module docstring), by
    column name, from the sizes column (``bounded``)."""
    found: dict[str, str | NotRead | None] = {}
    for name, size in zip(BOUNDED, sizes, strict=True):
        if size is None:
            continue
        if name in _COMPARED:
            found[name] = stand_in_name(size)
        elif name == "remote_address" or (name == "username" and has_user):
            found[name] = None
        else:
            found[name] = NotRead(name, size, column_limits[name])
    return found
