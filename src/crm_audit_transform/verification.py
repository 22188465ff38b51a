"""Verify's values: a migrated log as read back, what verify found, and its report.

Verify (``usecases.verify``) recomputes every in-scope audit's outcome and compares it with the
logs in the CDP. What it finds is sorted into kinds, each a :class:`Findings` (an exact count and
the first ids, up to a cap):

* ``missing`` — the row should be migrated and has no log (a late commit behind the cursor lands here);
  of a job not completed (in progress, halted, cancelled), a row past its cursor is not missing but
  ``pending`` (``VerifyReport.pending``): the run has not reached it yet;
* ``unexpected`` — a log exists for a row that now skips or fails;
* ``stray`` — a ``crm_migration`` log whose ``external_id`` names no in-scope audit, or a log of
  another ``source_tag`` under an id of ours that names none (an id collision, not ours to delete);
* ``duplicate`` — one ``external_id`` on more than one log (impossible with the unique index),
  whether it names an in-scope audit or not;
* ``drifted`` — a log whose fields the run writes differ from the recomputed ones;
* ``past_watermark`` — a migrated log at or after its contact's ``created_at`` (the live feed owns it);
* ``overlap`` — a live-feed log that matches a migrated log by the enrichment match key.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping
from typing import Final, Protocol, TypedDict

from attrs import field, frozen

from .errors import VerifyOptionInvalid
from .jobs import CANCELLED, HALTED, IN_PROGRESS, JobStatusName, status_name
from .timestamps import as_utc

__all__ = [
    "FINDING_KINDS",
    "OWNED_FIELDS",
    "Finding",
    "Findings",
    "JobCheck",
    "MigratedDoc",
    "Mismatch",
    "StoredMigratedLog",
    "VerifyReport",
]

OWNED_FIELDS: Final = ("customer_id", "category", "action", "actor", "attributes", "timestamp", "metadata")
"""The top-level fields verify compares (``source_tag`` apart, checked on every log read:
``foreign_tag``). What a reader's ``content_of`` holds is the whole document the sink writes for a log,
field by field (``metadata`` one key at a time, ``METADATA_PREFIX``), so a field the sink comes to write
is compared with no change here; these are the ones every log has."""

METADATA_PREFIX: Final = "metadata."
"""How a content mapping names one ``metadata`` key: ``metadata.linked_entity_name``."""

SAMPLE_MAX: Final = 1_000_000
"""The largest ``sample`` verify takes: logs compared per page (a page holds at most ``page_size``,
10,000 at most, so any value from there on compares every log)."""
SEED_MIN: Final = -(2**63)
SEED_MAX: Final = 2**63 - 1
"""``seed``'s range: a 64-bit signed integer, as JSON readers and BSON carry one."""


def check_draw(sample: object, seed: object) -> None:
    """The one rule of verify's ``sample`` and ``seed``, for every caller (``MigrationService.verify``;
    the runner's ``--sample`` and ``--seed`` and the HTTP route's body take the same bounds):
    ``sample`` None or an integer from 0 to ``SAMPLE_MAX``, ``seed`` None or an integer from
    ``SEED_MIN`` to ``SEED_MAX``; a bool is no integer here. Else ``VerifyOptionInvalid``."""
    if sample is not None and (type(sample) is not int or not 0 <= sample <= SAMPLE_MAX):
        raise VerifyOptionInvalid("sample", f"sample must be an integer from 0 to {SAMPLE_MAX}")
    if seed is not None and (type(seed) is not int or not SEED_MIN <= seed <= SEED_MAX):
        raise VerifyOptionInvalid("seed", f"seed must be a 64-bit integer (from {SEED_MIN} to {SEED_MAX})")


RUN_METADATA_KEYS: Final = (
    "crm_audit_id",
    "crm_tenant",
    "auditable_type",
    "auditable_id",
    "crm_person_id",
    "request_uuid",
    "username",
    "linked_entity_type",
    "linked_entity_id",
    "linked_entity_name",
    "combined",
)
"""The ``metadata`` keys the run writes (docs/activity-log.md): the transformer's, and
``linked_entity_name``, which the run sets before the write (``usecases._entity_names``). Verify
compares each (a key the stored log has and the recomputed one lacks too); others' keys are not ours."""


def run_metadata(metadata: Mapping[str, object]) -> dict[str, object]:
    """``metadata``'s keys the run writes, in ``RUN_METADATA_KEYS`` order (so a store's key order does
    not matter); what enrichment added is left out."""
    return {key: metadata[key] for key in RUN_METADATA_KEYS if key in metadata}


_ABSENT: Final = object()


def drifted_fields(
    expected: Mapping[str, object],
    stored: Mapping[str, object],
    run_keys: Collection[str] = RUN_METADATA_KEYS,
) -> list[str]:
    """The names of the fields whose stored form differs from the recomputed one (``expected``).

    Both are content mappings in one reader's wire form (``MigratedLogReader.content_of``): a
    top-level field by its name, a ``metadata`` key as ``metadata.<key>``. Compared: every field
    ``expected`` holds (in its order), and every key of the run (``run_keys``: ``RUN_METADATA_KEYS``,
    less ``linked_entity_name`` where the run names no entity) the stored log holds that the
    recomputed one lacks. ``source_tag`` is left to ``foreign_tag``; other
    metadata keys (enrichment's, another writer's) and top-level fields no sink writes are not ours.
    """
    names = [name for name in expected if name != "source_tag"]
    names += [
        name
        for name in stored
        if name not in expected
        and name.startswith(METADATA_PREFIX)
        and name[len(METADATA_PREFIX) :] in run_keys
    ]
    return [name for name in names if expected.get(name, _ABSENT) != stored.get(name, _ABSENT)]


FINDING_KINDS: Final = (
    "missing",
    "unexpected",
    "stray",
    "duplicate",
    "drifted",
    "past_watermark",
    "overlap",
)
"""Every kind a report counts, in report order; any non-zero count (after repair) fails verify."""

PENDING_STATES: Final = frozenset({IN_PROGRESS, HALTED, CANCELLED})
"""Job states whose run has not ended for good: a row past the cursor is still the run's to reach
(a halted or cancelled job resumes from its cursor), so it is ``pending``, not ``missing``."""


def _utc(value: dt.datetime) -> dt.datetime:
    return as_utc(value)


@frozen
class MigratedDoc:
    """One stored log with an ``external_id``, as verify reads it back.

    ``content`` maps each field the document has (a ``metadata`` key as ``metadata.<key>``) to its
    value in the store's wire form (BSON bytes, canonical JSON text…), made by the same reader whose
    ``content_of`` encodes a recomputed log, so equal forms mean equal documents — NaN included,
    which ``==`` on decoded values would call different (``drifted_fields`` compares them).
    ``crm_person_id`` and ``linked_entity_id`` come from ``metadata`` (``None`` when absent or not an
    integer).
    """

    doc_id: str
    external_id: str
    company_sso_id: str
    customer_id: str
    category: str
    action: str
    timestamp: dt.datetime = field(converter=_utc)
    source_tag: str = ""
    content: Mapping[str, object] = field(factory=dict)
    crm_person_id: int | None = None
    linked_entity_id: int | None = None

    def same_as(self, expected: Mapping[str, object]) -> bool:
        """False: a ``MigratedDoc`` keeps no whole stored document to compare (``StoredMigratedLog``)."""
        return False

    def parsed(self, expected: Mapping[str, object] | None = None) -> MigratedDoc:
        """Itself: a ``MigratedDoc`` is already read (``StoredMigratedLog``)."""
        return self


class StoredMigratedLog(Protocol):
    """One stored log as ``MigratedLogReader.migrated_logs`` returns it: its key now, the rest on demand.

    ``expected`` below is the reader's own ``content_of`` a recomputed log. ``same_as(expected)`` is
    True only when the stored document is, byte for byte, the document the reader's adapter writes
    for that log (verify's common case: the run wrote it from the same log); every field it holds is
    then the log's, in the store's form (a timestamp in whole milliseconds). ``parsed(expected)`` is
    the :class:`MigratedDoc` (None when the stored document lacks what a log must have: no readable
    ``timestamp`` or ``external_id``); when ``same_as(expected)``, a reader may build it from the log
    instead of parsing. A :class:`MigratedDoc` is its own parsed form and never ``same_as``.
    """

    @property
    def external_id(self) -> str: ...

    def same_as(self, expected: Mapping[str, object]) -> bool: ...

    def parsed(self, expected: Mapping[str, object] | None = None) -> MigratedDoc | None: ...


class FindingDocument(TypedDict):
    """One finding: the audit it concerns (when known), the log's external_id (when known), why."""

    audit_id: int | None
    external_id: str | None
    detail: str


class FindingsDocument(TypedDict):
    """An exact count of one kind and its first items (``truncated`` when capped)."""

    count: int
    truncated: bool
    items: list[FindingDocument]


class IdRangeDocument(TypedDict):
    """Missing rows from audit id ``first`` to ``last``: ``rows`` of them, no row with a log between."""

    first: int
    last: int
    rows: int


class IdRangesDocument(TypedDict):
    """An exact count of ranges and the first of them (``truncated`` when capped)."""

    count: int
    truncated: bool
    items: list[IdRangeDocument]


class MismatchDocument(TypedDict):
    """A job figure and what verify found instead."""

    figure: str
    job: int
    found: int


class JobCheckDocument(TypedDict):
    """The job document against the rows behind its cursor."""

    job_id: str
    status: JobStatusName
    last_audit_id: int
    consistent: bool
    moved: bool
    mismatches: list[MismatchDocument]


class VerifyReportDocument(TypedDict):
    """What verify found for one account (docs/verify.md); ``job`` is null without a job."""

    company_sso_id: str
    tenant: str
    clean: bool
    audits: int
    migrated: int
    skipped: dict[str, int]
    failed: dict[str, int]
    content_checked: int
    sample: int | None
    findings: dict[str, FindingsDocument]
    pending: FindingsDocument
    missing_ranges: IdRangesDocument
    outstanding: dict[str, int]
    job: JobCheckDocument | None
    repaired: int
    repaired_in_job: int
    restored: int
    restore_refused: int
    failure_rate: float
    halt_threshold: float | None
    actors_unchecked: int


@frozen
class Finding:
    """One thing verify found: the audit it concerns (when known), the log's external_id, why."""

    audit_id: int | None
    external_id: str = ""
    detail: str = ""

    def to_json(self) -> FindingDocument:
        return {"audit_id": self.audit_id, "external_id": self.external_id or None, "detail": self.detail}


@frozen
class Findings:
    """An exact ``count`` of one kind and its first ``items`` (fewer than ``count`` when capped)."""

    count: int = 0
    items: tuple[Finding, ...] = ()

    @property
    def truncated(self) -> bool:
        return self.count > len(self.items)

    def to_json(self) -> FindingsDocument:
        return {
            "count": self.count,
            "truncated": self.truncated,
            "items": [item.to_json() for item in self.items],
        }


@frozen
class Mismatch:
    """A job figure that disagrees with what verify found.

    ``figure``: ``processed``, ``migrated``, ``skipped``, ``failed`` (totals), ``last_audit_id``,
    ``migrated_logs`` (a rolled-back job); ``outcomes`` is the job against itself — ``job`` its
    ``migrated + skipped + failed``, ``found`` its ``processed``."""

    figure: str
    job: int
    found: int

    def to_json(self) -> MismatchDocument:
        return {"figure": self.figure, "job": self.job, "found": self.found}


@frozen
class JobCheck:
    """The job document against the rows behind its cursor (``id <= last_audit_id``).

    ``moved``: the job document verify read first was no longer the stored one when the walk ended
    (its cursor, counts, status or lease written meanwhile: a run, or a trigger, was live), so its
    figures were compared with rows read while they moved; not consistent (nor the account clean)."""

    job_id: str
    status: str
    last_audit_id: int
    mismatches: tuple[Mismatch, ...] = ()
    moved: bool = False

    @property
    def consistent(self) -> bool:
        return not self.mismatches and not self.moved

    def to_json(self) -> JobCheckDocument:
        return {
            "job_id": self.job_id,
            "status": status_name(self.status),
            "last_audit_id": self.last_audit_id,
            "consistent": self.consistent,
            "moved": self.moved,
            "mismatches": [m.to_json() for m in self.mismatches],
        }


def _counts(value: Mapping[str, int]) -> Mapping[str, int]:
    return dict(sorted((k, v) for k, v in value.items() if v))


@frozen
class VerifyReport:
    """What verify found for one account, and what ``--repair`` wrote.

    ``audits``: in-scope rows walked. ``migrated``: rows whose recomputed outcome is ``Migrated`` and that
    have a log. ``skipped`` / ``failed``: rows without a log, by recomputed reason. ``content_checked``:
    logs whose content was compared (all of them, or a sample per page). ``repaired``: missing rows
    written by ``--repair``; ``repaired_in_job`` of them were added to the job's counts (see
    ``usecases.verify``). ``restored``: ``drifted`` logs ``--repair`` set back to what the run
    writes now (every field the run writes; other metadata keys kept); ``restore_refused`` of them
    the store refused to set back (``RestoreRefused``: the document past its limit), left drifted.
    ``job`` is None when the
    account has no job. ``pending``: rows that would migrate and have no log yet, past the cursor of a job
    that is not completed (in progress, halted or cancelled): the run has not reached them, so they are not
    ``missing`` (lost) and ``--repair`` leaves them to the run; the account is not proven complete while any
    is (not clean).
    ``halt_threshold``: the run's halt rule's failed share (0-1); the account is not clean when
    ``failure_rate`` exceeds it (None: no such verdict). The halt rule never halts on fewer than its
    minimum sample of rows (``halting``), so a small account whose every row fails completes: this is
    where it is told apart from a clean one. ``actors_unchecked``: logs whose stored actor could not be
    compared, because the SSO directory (USMAN) was unavailable and the recomputed actor is the degraded
    one, not the truth, and the missing rows ``--repair`` left unwritten for that reason (a log written
    with a degraded actor would stay wrong); the account is not clean while any is (verify, or repair,
    again once USMAN answers).
    ``missing_ranges``: every ``missing`` row as a range of audit ids ``(first, last, rows)``, in walk
    order: a range's ``rows`` are missing, and no row walked between its first and last has a stored
    log (the others skip or fail now, or are pending), so it names each missing id while the
    ranges are fewer than ``keep``; ``missing_range_count`` counts them all (the first ``keep`` kept).
    """

    company_sso_id: str
    tenant: str
    audits: int = 0
    migrated: int = 0
    skipped: Mapping[str, int] = field(factory=dict, converter=_counts)
    failed: Mapping[str, int] = field(factory=dict, converter=_counts)
    content_checked: int = 0
    sample: int | None = None
    findings: Mapping[str, Findings] = field(factory=dict)
    job: JobCheck | None = None
    pending: Findings = Findings()
    repaired: int = 0
    repaired_in_job: int = 0
    restored: int = 0
    restore_refused: int = 0
    halt_threshold: float | None = None
    actors_unchecked: int = 0
    missing_ranges: tuple[tuple[int, int, int], ...] = ()
    missing_range_count: int = 0

    def count(self, kind: str) -> int:
        found = self.findings.get(kind)
        return found.count if found is not None else 0

    @property
    def outstanding(self) -> Mapping[str, int]:
        """Non-zero counts per kind still true after repair (repaired rows are no longer missing,
        restored logs no longer drifted)."""
        counts = {kind: self.count(kind) for kind in FINDING_KINDS}
        counts["missing"] = max(0, counts["missing"] - self.repaired)
        counts["drifted"] = max(0, counts["drifted"] - self.restored)
        return {kind: n for kind, n in counts.items() if n}

    @property
    def failure_rate(self) -> float:
        """The share of the walked audits that fail (0-1; 0 without audits), as the halt rule counts it."""
        return sum(self.failed.values()) / self.audits if self.audits else 0.0

    @property
    def over_halt_threshold(self) -> bool:
        """Whether more rows fail than the halt rule tolerates (``halt_threshold``)."""
        return self.halt_threshold is not None and self.failure_rate > self.halt_threshold

    @property
    def clean(self) -> bool:
        """Every audit accounted for once, content and seam as recomputed (every compared actor
        among it: none left unchecked), job consistent, no row pending (the run done), and no more
        rows failing than the halt rule tolerates."""
        return (
            not self.outstanding
            and not self.pending.count
            and (self.job is None or self.job.consistent)
            and not self.over_halt_threshold
            and not self.actors_unchecked
        )

    def to_json(self) -> VerifyReportDocument:
        """A JSON-ready view for CI gates and dashboards (docs/verify.md gives the schema)."""
        return {
            "company_sso_id": self.company_sso_id,
            "tenant": self.tenant,
            "clean": self.clean,
            "audits": self.audits,
            "migrated": self.migrated,
            "skipped": dict(self.skipped),
            "failed": dict(self.failed),
            "content_checked": self.content_checked,
            "sample": self.sample,
            "findings": {kind: self.findings.get(kind, Findings()).to_json() for kind in FINDING_KINDS},
            "pending": self.pending.to_json(),
            "missing_ranges": {
                "count": self.missing_range_count,
                "truncated": self.missing_range_count > len(self.missing_ranges),
                "items": [{"first": a, "last": b, "rows": n} for a, b, n in self.missing_ranges],
            },
            "outstanding": dict(self.outstanding),
            "job": self.job.to_json() if self.job is not None else None,
            "repaired": self.repaired,
            "repaired_in_job": self.repaired_in_job,
            "restored": self.restored,
            "restore_refused": self.restore_refused,
            "failure_rate": self.failure_rate,
            "halt_threshold": self.halt_threshold,
            "actors_unchecked": self.actors_unchecked,
        }
