"""ChangesExtractor: audited_changes → field changes, labelled, with ignored and redacted columns.

update ``{f: [old, new]}`` → from old to new; create ``{f: v}`` → from None to v; destroy
``{f: v}`` → from v to None. Column order is the row's own order, so output is deterministic.
"""

from __future__ import annotations

from .. import reasons
from ..config import MappingConfig
from ..domain import FieldChange
from ..values import Changes, Value
from .verdict import Rejection


def _default_label(column: str) -> str:
    """``crm_stage_id`` → ``Crm stage id``: readable when the config names no label."""
    return column.replace("_", " ").strip().capitalize() or column


class ChangesExtractor:
    """Turns one row's loaded changes into :class:`FieldChange` values."""

    __slots__ = ("_ignored", "_labels", "_marker", "_redacted")

    def __init__(self, config: MappingConfig) -> None:
        columns = config.columns
        self._marker: str = columns.redaction_marker
        self._labels = {name: {**columns.labels, **mapping.labels} for name, mapping in config.types.items()}
        self._ignored = {
            name: frozenset(columns.ignored) | frozenset(mapping.ignored_columns)
            for name, mapping in config.types.items()
        }
        self._redacted = {
            name: frozenset(columns.redacted) | frozenset(mapping.redacted_columns)
            for name, mapping in config.types.items()
        }

    def extract(
        self, auditable_type: str, action: str, changes: Changes
    ) -> tuple[FieldChange, ...] | Rejection:
        labels = self._labels.get(auditable_type, {})
        ignored = self._ignored.get(auditable_type, frozenset())
        redacted = self._redacted.get(auditable_type, frozenset())
        update, destroy = action == "update", action == "destroy"  # once per row, not per column
        extracted = []
        for column, value in changes.items():
            if not isinstance(column, str):
                return _malformed(f"column name {column!r} is not a string")
            if column in ignored:
                continue
            if update:
                if not (isinstance(value, list) and len(value) == 2):
                    return _malformed(f"update value of {column!r} is not [old, new]")
                from_, to = value[0], value[1]
            elif destroy:
                from_, to = value, None
            else:
                from_, to = None, value
            if column in redacted:
                from_, to = self._redact(from_), self._redact(to)
            label = labels.get(column) or _default_label(column)
            extracted.append(FieldChange(column, label, from_, to))
        return tuple(extracted)

    def _redact(self, value: Value) -> Value:
        # None stays None so "was set" / "was cleared" remains visible without the value.
        return None if value is None else self._marker


def _malformed(detail: str) -> Rejection:
    return Rejection(reasons.MALFORMED_AUDITED_CHANGES, detail, skip=False)
