"""Verify's finding lists, and the content check that fills ``drifted``."""

from __future__ import annotations

from collections.abc import Container, Mapping, Sequence
from typing import Final

from ..domain import SOURCE_TAG, ActivityLog
from ..verification import FINDING_KINDS, OWNED_FIELDS, Finding, Findings, MigratedDoc


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


def found_by_kind(keep: int) -> dict[str, Found]:
    """One empty ``Found`` per finding kind (``verification.FINDING_KINDS``)."""
    return {kind: Found(keep) for kind in FINDING_KINDS}


_ABSENT: Final = object()


def add_drifted(
    drifted: Found,
    compare: Sequence[tuple[ActivityLog, MigratedDoc, Mapping[str, object]]],
    degraded: Container[int],
) -> int:
    """Compare each stored log's content with its recomputed one; the owned fields that differ are drift,
    and so is a ``source_tag`` other than ``crm_migration`` (``foreign_tag``). ``degraded`` holds the
    audit ids whose recomputed actor USMAN left unanswered (``PageResult.degraded``). Returns the logs
    whose stored actor differs from such a degraded actor: not drift, but not checked either
    (``VerifyReport.actors_unchecked``)."""
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
            for name in OWNED_FIELDS
            if not (skip_actor and name == "actor")
            and expected.get(name, _ABSENT) != stored.get(name, _ABSENT)
        ]
        if tagged:
            fields.append(tagged)
        if fields:
            audit_id = log.metadata.get("crm_audit_id")
            drifted.add(audit_id if isinstance(audit_id, int) else None, doc.external_id, ", ".join(fields))
    return unchecked


def foreign_tag(doc: MigratedDoc) -> str:
    """``""`` when ``doc`` carries the run's ``source_tag``; else the drift to report, naming it.

    ``rollback`` deletes ``source_tag = crm_migration`` only, so a log of the account's external id
    whose tag was changed or removed is not one rollback removes: never counted as clean.
    """
    if doc.source_tag == SOURCE_TAG:
        return ""
    return f"source_tag {doc.source_tag!r} (rollback deletes {SOURCE_TAG!r} only)"
