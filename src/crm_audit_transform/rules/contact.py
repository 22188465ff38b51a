"""ContactResolver: which CDP contact a row belongs to.

Candidate CRM person ids, in order: the ``comment`` JSON object's person id key(s) (a combined
audit's comment read without audited's appended sentence); the person
id column(s) of the changes (an update's new value, or its old one when the new is nil, so an
unassigned record still lands on the contact it left); ``associated_id`` when it names a person;
``auditable_id`` when the row is a person's. The first candidate with a contact of this company
wins; none → ``contact_not_found``. Contacts come from the page's lookup context, which holds
only the company's contacts (never a cross-tenant read).

A ``comment`` is parsed only when it holds at most ``MAX_COMMENT_VALUES`` JSON values: parsed, a
value costs about 60 bytes of memory for the one or two characters it takes in the text (a 30 MiB
comment of ``[],`` held 730 MiB). A longer JSON object is a row that names its person in a way
this rule cannot read: ``CommentTooLarge``, which the transformer fails as ``invalid_audit_row``
rather than guessing the person from the row's other columns.
"""

from __future__ import annotations

import json
import re
from typing import Final

from .. import reasons
from ..config import MappingConfig
from ..domain import AuditRow, Contact
from ..json_scan import json_values
from ..lookup import LookupContext
from ..values import Changes, Value
from ._combined import own_comment
from ._ids import as_id
from .verdict import Rejection

MAX_COMMENT_VALUES: Final = 100_000
"""JSON values (objects, arrays, and the items and members after their first) of a comment parsed
for its person id; as many as the loader's default ``max_nodes`` lets ``audited_changes`` build."""

# How every JSON object starts (json.loads' blanks); text that does not is free text, never counted.
_OBJECT_START: Final = re.compile(r'[ \t\n\r]*+\{[ \t\n\r]*+["}]')


class CommentTooLarge(ValueError):
    """A ``comment`` that is a JSON object of more than ``MAX_COMMENT_VALUES`` values: not parsed."""

    def __init__(self, values: int) -> None:
        super().__init__(
            f"comment is a JSON object of more than {MAX_COMMENT_VALUES:,} values ({values:,}): "
            "not parsed for its person id"
        )
        self.values = values


class ContactResolver:
    __slots__ = ("_comment_keys", "_person_class", "_person_columns")

    def __init__(self, config: MappingConfig) -> None:
        self._comment_keys = config.comment.person_id_keys
        self._person_class = config.person_class
        self._person_columns = {name: m.person_id_columns for name, m in config.types.items()}

    def candidates(self, row: AuditRow, changes: Changes | None) -> tuple[int, ...]:
        """Every person id the row names, in the order they are tried, without repeats."""
        found: list[int] = []
        comment_id = self._comment_person_id(row.comment)
        if comment_id is not None:
            found.append(comment_id)
        if changes is not None:
            for column in self._person_columns.get(row.auditable_type, ()):
                person_id = _person_id_in(changes.get(column))
                if person_id is not None:
                    found.append(person_id)
        if row.associated_type == self._person_class and row.associated_id is not None:
            found.append(row.associated_id)
        if row.auditable_type == self._person_class and row.auditable_id is not None:
            found.append(row.auditable_id)
        return tuple(found) if len(found) < 2 else tuple(dict.fromkeys(found))  # most rows name one

    def resolve(
        self, candidates: tuple[int, ...], ctx: LookupContext, company_sso_id: str
    ) -> tuple[int, Contact] | Rejection:
        for person_id in candidates:
            contact = ctx.contacts.get(person_id)
            if contact is not None and contact.company_sso_id == company_sso_id:
                return person_id, contact
        tried = ", ".join(map(str, candidates)) or "none named by the row"
        return Rejection(reasons.CONTACT_NOT_FOUND, f"no contact for CRM person id(s): {tried}")

    def _comment_person_id(self, comment: str | None) -> int | None:
        comment = own_comment(comment)  # a combined audit's comment: JSON, then audited's sentence
        if not comment or not comment.lstrip().startswith("{"):
            return None
        if len(comment) > 2 * MAX_COMMENT_VALUES:  # a shorter text cannot hold more values
            if not _OBJECT_START.match(comment):
                return None  # json.loads refuses it at its first characters: free text, as below
            values = json_values(comment)  # a piece at a time: ~1 x the comment held
            if values > MAX_COMMENT_VALUES:
                raise CommentTooLarge(values)
        try:
            parsed = json.loads(comment)
        except (ValueError, RecursionError):  # free text that merely starts with a brace
            return None
        if not isinstance(parsed, dict):
            return None
        for key in self._comment_keys:
            person_id = as_id(parsed.get(key))
            if person_id is not None:
                return person_id
        return None


def _person_id_in(value: Value) -> int | None:
    if isinstance(value, list) and len(value) == 2:
        new = as_id(value[1])
        return new if new is not None else as_id(value[0])
    return as_id(value)
