"""ChangesExtractor: audited_changes → field changes, labelled, with ignored and redacted columns.

update ``{f: [old, new]}`` → from old to new; create ``{f: v}`` → from None to v; destroy
``{f: v}`` → from v to None. Column order is the row's own order, so output is deterministic.

Two kinds of update rows hold bare values beside the pairs:

* combined audits (``max_audits``, see :mod:`._combined`): a bare value is the create-time value,
  a set-to (from None to v); a flat list of a declared array column is such a value too;
* audited < 5.1 wrote an unchanged redacted column as its bare ``redaction_value``: it is shown
  redacted on both sides, and the row's real changes are kept.
"""

from __future__ import annotations

from .. import reasons
from ..config import MappingConfig
from ..domain import FieldChange
from ..values import Changes, Value
from .verdict import Rejection, shown_name

_DEFAULT_LABELS_KEPT = 4096
_NONE: frozenset[str] = frozenset()


def _default_label(column: str) -> str:
    """``crm_stage_id`` → ``Crm stage id``: readable when the config names no label."""
    return column.replace("_", " ").strip().capitalize() or column


class ChangesExtractor:
    """Turns one row's loaded changes into :class:`FieldChange` values."""

    __slots__ = (
        "_arrays",
        "_ignored",
        "_known_labels",
        "_labels",
        "_marker",
        "_redacted",
        "_redaction_values",
        "_special",
    )

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
        self._arrays = {
            name: frozenset(columns.arrays) | frozenset(mapping.array_columns)
            for name, mapping in config.types.items()
        }
        self._redaction_values = frozenset(columns.redaction_values)
        # The columns a type treats apart: any other column takes the short path of extract.
        self._special = {
            name: self._ignored[name] | self._redacted[name] | self._arrays[name] for name in config.types
        }
        # Each type's label of the columns met so far: a schema has few, and each was looked up (or
        # its default rebuilt) per value.
        self._known_labels: dict[str, dict[str, str]] = {}

    def extract(
        self, auditable_type: str, action: str, changes: Changes, *, combined: bool = False
    ) -> tuple[FieldChange, ...] | Rejection:
        """The row's field changes; ``combined`` for a combined audit (its bare values are set-tos)."""
        special = self._special.get(auditable_type, _NONE)
        known = self._known_labels.get(auditable_type)
        if known is None:
            known = self._known_labels[auditable_type] = {}
        update, destroy = action == "update", action == "destroy"  # once per row, not per column
        extracted = []
        for column, value in changes.items():
            if type(column) is not str and not isinstance(column, str):
                # Named by its type alone: a key a YAML row wrote may be anything, a value too.
                return _malformed(f"a column name is not a string: {type(column).__name__}")
            if column in special:  # ignored, redacted or array columns of this type: the whole rule
                pair = self._special_pair(auditable_type, column, value, update, destroy, combined)
                if pair is None:
                    continue
                if isinstance(pair, Rejection):
                    return pair
                from_, to = pair
            elif update:
                # Any other column: _special_pair's rule where the column is in none of the sets.
                if isinstance(value, list) and len(value) == 2:
                    from_, to = value
                elif combined:
                    from_, to = None, value
                elif isinstance(value, str) and value in self._redaction_values:
                    from_, to = self._marker, self._marker  # audited < 5.1: unchanged, redacted
                else:
                    return _malformed(f"update value of {shown_name(column)} is not [old, new]")
            elif destroy:
                from_, to = value, None
            else:
                from_, to = None, value
            label = known.get(column) or self._label(auditable_type, known, column)
            extracted.append(FieldChange(column, label, from_, to))
        return tuple(extracted)

    def _special_pair(
        self, auditable_type: str, column: str, value: Value, update: bool, destroy: bool, combined: bool
    ) -> tuple[Value, Value] | Rejection | None:
        """``(from, to)`` of one of the type's ignored, redacted or array columns; None: left out."""
        if column in self._ignored.get(auditable_type, _NONE):
            return None
        redacted = self._redacted.get(auditable_type, _NONE)
        arrays = self._arrays.get(auditable_type, _NONE)
        from_: Value
        to: Value
        if update:
            if (
                isinstance(value, list)
                and len(value) == 2
                and not (combined and column in arrays and _flat(value))
            ):
                from_, to = value
            elif combined:
                from_, to = None, value
            elif column in redacted or (isinstance(value, str) and value in self._redaction_values):
                from_, to = self._marker, self._marker  # audited < 5.1: unchanged, redacted
            else:
                return _malformed(f"update value of {shown_name(column)} is not [old, new]")
        elif destroy:
            from_, to = value, None
        else:
            from_, to = None, value
        if column in redacted:
            from_, to = self._redact(from_), self._redact(to)
        return from_, to

    def _label(self, auditable_type: str, known: dict[str, str], column: str) -> str:
        """The configured label, else ``_default_label``; kept per type (bounded: hostile rows may
        invent columns)."""
        label = self._labels.get(auditable_type, {}).get(column) or _default_label(column)
        if len(known) < _DEFAULT_LABELS_KEPT:
            known[column] = label
        return label

    def _redact(self, value: Value) -> Value:
        # None stays None so "was set" / "was cleared" remains visible without the value.
        return None if value is None else self._marker


def _flat(value: list[Value]) -> bool:
    """An array column's own value, not an ``[old, new]`` pair of arrays (each a list or nil)."""
    return not any(item is None or isinstance(item, list) for item in value)


def _malformed(detail: str) -> Rejection:
    return Rejection(reasons.MALFORMED_AUDITED_CHANGES, detail, skip=False)
