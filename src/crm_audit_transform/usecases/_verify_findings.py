"""Verify's finding lists, and the content check that fills ``drifted``."""

from __future__ import annotations

from collections.abc import Collection, Container, Mapping, Sequence
from typing import Final

from ..domain import SOURCE_TAG, ActivityLog
from ..verification import FINDING_KINDS, RUN_METADATA_KEYS, Finding, Findings, MigratedDoc, drifted_fields


class Found:
    """An exact count and the first ``keep`` findings of one kind."""

    __slots__ = ("count", "items", "keep")

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.count = 0
        self.items: list[Finding] = []

    def add(self, audit_id: int | None, ext_id: str = "", detail: str = "") -> None:
        self.count += 1
        if len(self.items) < self.keep:
            self.items.append(Finding(audit_id, ext_id, detail))

    def frozen(self) -> Findings:
        return Findings(self.count, tuple(self.items))


class MissingRanges:
    """The ``missing`` rows as ranges of audit ids in walk order (``VerifyReport.missing_ranges``):
    a range's rows are missing and no row walked between its first and last has a stored log. An
    exact count of ranges; the first ``keep`` kept, each ``[first, last, rows]``."""

    __slots__ = ("_last", "_open", "count", "items", "keep")

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.count = 0
        self.items: list[list[int]] = []
        self._last: int | None = None  # the last missing row's id, its range kept or not
        self._open = False  # whether the last range is kept (extended in place)

    def add(self, audit_id: int, logged: int | None) -> None:
        """A missing row; ``logged`` the id of the last row walked with a stored log (None: none
        yet). The walk's ids ascend, so a log walked since the last missing row has a greater id."""
        last, self._last = self._last, audit_id
        if last is not None and (logged is None or logged < last):
            if self._open:
                item = self.items[-1]
                item[1] = audit_id
                item[2] += 1
            return
        self.count += 1
        self._open = len(self.items) < self.keep
        if self._open:
            self.items.append([audit_id, audit_id, 1])

    def frozen(self) -> tuple[tuple[int, int, int], ...]:
        return tuple((first, last, rows) for first, last, rows in self.items)


def found_by_kind(keep: int) -> dict[str, Found]:
    """One empty ``Found`` per finding kind (``verification.FINDING_KINDS``)."""
    return {kind: Found(keep) for kind in FINDING_KINDS}


_ABSENT: Final = object()


_NAME_KEY: Final = "linked_entity_name"


def written_keys(names_entities: bool) -> tuple[str, ...]:
    """The ``metadata`` keys the run writes: ``RUN_METADATA_KEYS``, less ``linked_entity_name`` when
    it names no entity (no CRM entities port): a stored name is then enrichment's (``enrich``)."""
    if names_entities:
        return RUN_METADATA_KEYS
    return tuple(key for key in RUN_METADATA_KEYS if key != _NAME_KEY)


def add_drifted(
    drifted: Found,
    compare: Sequence[tuple[ActivityLog, MigratedDoc, Mapping[str, object]]],
    degraded: Container[int],
    restore: list[ActivityLog] | None = None,
    run_keys: Collection[str] = RUN_METADATA_KEYS,
) -> int:
    """Compare each stored log's content with its recomputed one; the fields that differ are drift
    (``verification.drifted_fields``: every field the sink writes, a ``metadata`` key by name), and so
    is a ``source_tag`` other than ``crm_migration`` (``foreign_tag``). ``degraded`` holds the
    audit ids whose recomputed actor USMAN left unanswered (``PageResult.degraded``); ``run_keys`` the
    metadata keys the run writes (``drifted_fields``). Each drifted
    log's recomputed one is added to ``restore`` (when given), but for a degraded row (written so,
    its actor would be the degraded one) and a log of another ``source_tag`` (another tool's, as
    ``insert_batch`` takes it: left for a decision). Returns the logs whose stored actor differs from such a
    degraded actor: not drift, but not checked either (``VerifyReport.actors_unchecked``)."""
    unchecked = 0
    for log, doc, expected in compare:
        stored = doc.content
        tagged = foreign_tag(doc)
        if expected == stored and not tagged:  # a reader's content may compare whole (equal lines) first
            continue
        # USMAN gave no answer for this actor: the recomputed one is degraded, not the stored one's truth.
        skip_actor = log.metadata.get("crm_audit_id") in degraded
        if skip_actor and expected.get("actor", _ABSENT) != stored.get("actor", _ABSENT):
            unchecked += 1
        fields = [
            name
            for name in drifted_fields(expected, stored, run_keys)
            if not (skip_actor and name == "actor")
        ]
        if tagged:
            fields.append(tagged)
        if fields:
            audit_id = log.metadata.get("crm_audit_id")
            drifted.add(audit_id if isinstance(audit_id, int) else None, doc.external_id, ", ".join(fields))
            if restore is not None and not skip_actor and not tagged:
                restore.append(log)
    return unchecked


def foreign_tag(doc: MigratedDoc) -> str:
    """``""`` when ``doc`` carries the run's ``source_tag``; else the drift to report, naming it.

    ``rollback`` deletes ``source_tag = crm_migration`` only, so a log of the account's external id
    whose tag was changed or removed is not one rollback removes: never counted as clean.
    """
    if doc.source_tag == SOURCE_TAG:
        return ""
    return foreign_tag_of(doc.source_tag)


def foreign_tag_of(tag: str) -> str:
    """How a finding names a log's ``source_tag`` other than ``crm_migration``."""
    return f"source_tag {tag!r} (rollback deletes {SOURCE_TAG!r} only)"
