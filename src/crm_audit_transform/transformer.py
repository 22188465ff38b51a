"""The Transformer: every audit row to exactly one reasoned outcome, through a chain of stages.

    row checks → scope → load → [category → contact → watermark → changes → actor] → log

The fixed gates (row checks, scope, load) and the last step (the log) frame the configurable
:class:`~crm_audit_transform.chain.RuleChain` in brackets, which a library user may change.

``prepare`` loads each row's ``audited_changes`` once and lists the ids it names; ``plan`` gathers a
page's ids into one :class:`~crm_audit_transform.lookup.LookupRequest`; the runner fetches them
(:func:`~crm_audit_transform.lookup.fetch_lookups`); ``transform`` then reads only values. Nothing
raises out of ``prepare`` or ``transform``: a bad row becomes a ``Failed`` outcome.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

import attrs
from attrs import frozen

from . import reasons
from ._arguments import refuse_wrong_types
from ._fast_init import fast_init
from .chain import (
    MIGRATED,
    NO_OBSERVER,
    PASSED,
    RowDraft,
    RuleChain,
    Stage,
    StageObserver,
    StageRun,
    stage_codes,
)
from .config import MappingConfig
from .config.mark import mapping_mark
from .domain import (
    SOURCE_TAG,
    ActivityLog,
    AuditRow,
    Failed,
    Migrated,
    NotRead,
    Outcome,
    Skipped,
    UnreadableTime,
    UserId,
)
from .errors import AuditedChangesError
from .loading import LoaderLimits, UntranslatableText, load_audited_changes
from .lookup import LookupContext, LookupRequest
from .numerals import BIGINT_MAX, BIGINT_MIN
from .raised import raised_at
from .rules.actor import ActorResolver
from .rules.category import CategoryMapper, MappedCategory
from .rules.contact import CommentTooLarge, ContactResolver
from .rules.verdict import Rejection, shown_value
from .rules.watermark import time_rejection, unreadable_time
from .tally import Tally
from .values import Changes, Value


@fast_init  # built for every row: see _fast_init
@frozen
class PreparedRow:
    """A row with its changes loaded once, or the failure that loading (or checking it) gave."""

    row: AuditRow
    changes: Changes | None = None
    problem: Failed | None = None
    person_ids: tuple[int, ...] = ()
    user_id: UserId | None = None


@frozen(eq=False)
class PageResult:
    """One outcome per prepared row, in order, and their counts (fallthroughs included).

    ``outcomes`` is a tuple, or — a page back from a worker process — a ``packed.PackedOutcomes``.

    ``fell_through[i]`` says whether row ``i``'s status rule fell through, and ``degraded[i]``
    whether its actor was degraded by a USMAN outage, so a slice of the page counts its own
    without transforming again (empty when not recorded).

    ``tally``, when not given, is counted from the outcomes and the flags the first time it is read
    (``Tally.of``), then kept: the run loop counts each step it writes on its own (write results
    folded in) and never reads a page's, so a run walks its outcomes for counts once, not twice.
    Two results are equal when their outcomes, tallies and flags are.
    """

    outcomes: Sequence[Outcome]
    _tally: Tally | None = attrs.field(default=None, repr=False)
    fell_through: tuple[bool, ...] = ()
    degraded: tuple[bool, ...] = ()

    @property
    def tally(self) -> Tally:
        """The outcomes' counts: as given, or counted once when first read."""
        tally = self._tally
        if tally is None:
            tally = Tally.of(self.outcomes, sum(self.fell_through), sum(self.degraded))
            object.__setattr__(self, "_tally", tally)  # a cache of what the fields decide, not a change
        return tally

    @property
    def counted_tally(self) -> Tally | None:
        """The tally when it was given or already counted, else None (nothing is counted): what a
        page sent to another process carries, so a tally nobody reads is not counted on the way."""
        return self._tally

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, PageResult)
        return (self.outcomes, self.fell_through, self.degraded, self.tally) == (
            other.outcomes,
            other.fell_through,
            other.degraded,
            other.tally,
        )

    __hash__ = None  # type: ignore[assignment]  # as before: a tally's counts are dicts


@frozen
class StageDecision:
    """What one stage decided about a row: ``pass``, ``skipped``, ``failed`` or ``migrated``."""

    stage: str
    verdict: str
    detail: str = ""


def external_id(tenant: str, audit_id: int) -> str:
    """``crm:{tenant}:audit:{id}``: deterministic, and names the CRM row it came from."""
    return f"crm:{tenant}:audit:{audit_id}"


_MAX_ID_DIGITS = 20
"""More digits than any bigint id has (19): such a number names no audit, and ``int`` would refuse
one past 4,300 digits (``ValueError``) instead of the caller reporting it."""


def audit_id_in(ext_id: str, prefix: str) -> int | None:
    """The audit id ``ext_id`` names when it is exactly ``prefix + str(id)`` (``prefix`` is
    ``crm:{tenant}:audit:``), the one spelling ``external_id`` writes: ``…:audit:026``, ``…:audit:-0``
    or ``…:audit:+26`` name none, nor does an id outside PostgreSQL's ``bigint`` (``audits.id``: no
    source reads one). Verify reports such a log as a stray (its page pass looks up only the
    canonical id); ``/migrate`` refuses it (``parse_external_id``)."""
    if not ext_id.startswith(prefix):
        return None
    digits = ext_id[len(prefix) :]
    body = digits[1:] if digits.startswith("-") else digits
    if not (body.isascii() and body.isdigit()) or len(body) > _MAX_ID_DIGITS:
        return None
    audit_id = int(digits)
    return audit_id if str(audit_id) == digits and BIGINT_MIN <= audit_id <= BIGINT_MAX else None


def parse_external_id(ext_id: str) -> tuple[str, int] | None:
    """``(tenant, audit id)`` when ``ext_id`` is spelled exactly as ``external_id`` writes one, else
    None: ``crm:acme:audit:26`` is ``("acme", 26)``; ``crm:acme:audit:026``, ``crm::audit:26`` and
    ``acme:26`` are None."""
    tenant, found, _ = ext_id.removeprefix("crm:").rpartition(":audit:")
    if not ext_id.startswith("crm:") or not found or not tenant:
        return None
    audit_id = audit_id_in(ext_id, f"crm:{tenant}:audit:")
    return None if audit_id is None else (tenant, audit_id)


def _check_account(owner: str, company_sso_id: object) -> None:
    refuse_wrong_types(owner, (("company_sso_id", company_sso_id, str, False),))
    if not company_sso_id:
        raise ValueError(f"{owner}(company_sso_id=...) must name an account, got an empty string")


class Transformer:
    """Runs a :class:`~crm_audit_transform.chain.RuleChain` over pages of audit rows.

    ``chain`` defaults to ``RuleChain.from_config(config)``; the scope (which auditable types are
    loaded and asked for) always comes from ``config``.
    """

    __slots__ = ("_actor", "_category", "_chain", "_config", "_contact", "_limits", "_mark", "_stages")

    def __init__(
        self, config: MappingConfig, *, limits: LoaderLimits | None = None, chain: RuleChain | None = None
    ) -> None:
        refuse_wrong_types(
            "Transformer",
            (
                ("config", config, MappingConfig, False),
                ("limits", limits, LoaderLimits, True),
                ("chain", chain, RuleChain, True),
            ),
        )
        self._category = CategoryMapper(config)
        self._actor = ActorResolver(config)
        self._contact = ContactResolver(config)
        self._limits = limits
        self._chain = chain if chain is not None else RuleChain.from_config(config)
        self._stages = self._chain.stages
        self._config = config
        self._mark: str | None = None

    @property
    def scope(self) -> tuple[str, ...]:
        """The auditable types in scope, in configuration order."""
        return self._category.scope

    @property
    def mapping_mark(self) -> str:
        """The mark of the rules: the mapping they were built from (``config.mapping_mark``) and,
        when ``chain`` is not the mapping's default one, its stages (``chain.stage_codes``). A job
        keeps its trigger's, and each run and verify refuses another (``MappingChanged``): a
        worker built without the service's chain would write other logs, as one with another
        mapping file would. The default chain's mark is the mapping's alone, as jobs kept before.
        Taken on first use: a run of a job without a mark (a dry run's) never digests the mapping."""
        if self._mark is None:
            stages = stage_codes(self._chain)
            default = stage_codes(RuleChain.from_config(self._config))
            self._mark = mapping_mark(self._config, rule_chain=None if stages == default else stages)
        return self._mark

    @property
    def chain(self) -> RuleChain:
        """The stages each in-scope, loaded row goes through."""
        return self._chain

    def prepare(self, rows: Iterable[AuditRow]) -> tuple[PreparedRow, ...]:
        return tuple(self.prepare_row(row) for row in rows)

    def prepare_row(self, row: AuditRow) -> PreparedRow:
        try:
            problem = _row_problem(row)
            if problem is not None:
                return PreparedRow(row, problem=Failed(_audit_id(row), reasons.INVALID_AUDIT_ROW, problem))
            if row.created_at is None:
                missing = Failed(row.id, reasons.MISSING_CREATED_AT, "created_at is NULL")
                return PreparedRow(row, problem=missing)
            if not self._category.in_scope(row.auditable_type):
                return PreparedRow(row)  # skipped at the scope stage: no need to load it
            changes, failure = self._load(row)
            return PreparedRow(  # by position: one per row, and keywords cost
                row,
                changes,
                failure,
                self._contact.candidates(row, changes),
                self._actor.user_id(row),
            )
        except CommentTooLarge as exc:  # its person could not be told: no log on a guessed contact
            return PreparedRow(row, problem=Failed(row.id, reasons.INVALID_AUDIT_ROW, str(exc)))
        except Exception as exc:  # any row, however broken, must end as an outcome
            return PreparedRow(row, problem=_unexpected(row, exc))

    def plan(self, prepared: Sequence[PreparedRow]) -> LookupRequest:
        """Every CRM user id and person id the page's rows may need."""
        return LookupRequest(
            user_ids=[p.user_id for p in prepared if p.user_id is not None and p.problem is None],
            person_ids=[pid for p in prepared if p.problem is None for pid in p.person_ids],
        )

    def transform(
        self, prepared: Sequence[PreparedRow], ctx: LookupContext, *, company_sso_id: str
    ) -> PageResult:
        """One outcome per prepared row, in order (nothing raises for a row: a bad one is ``Failed``).

        ``company_sso_id`` is the account whose contacts and logs the rows become: anything but a
        non-empty ``str`` is a ``TypeError`` (``ValueError`` for ``""``) before any row, not every
        row skipped as ``contact_not_found`` (no contact belongs to account None).
        """
        _check_account("Transformer.transform", company_sso_id)
        outcomes: list[Outcome] = []
        flags: list[bool] = []
        degraded: list[bool] = []
        for item in prepared:
            outcome, fell_through, actor_degraded = self._run(item, ctx, company_sso_id)
            outcomes.append(outcome)
            flags.append(fell_through)
            degraded.append(actor_degraded)
        # The tally is counted when read (PageResult.tally): a run counts its steps, not its pages.
        return PageResult(tuple(outcomes), None, tuple(flags), tuple(degraded))

    def explain(self, row: AuditRow, ctx: LookupContext, *, company_sso_id: str) -> tuple[StageDecision, ...]:
        """The decision of every stage the row went through, ending with its outcome.
        ``company_sso_id`` as ``transform``'s (``TypeError`` / ``ValueError``)."""
        _check_account("Transformer.explain", company_sso_id)
        trace = _Trace()
        stages = trace.attach((*_GATES, *self._stages))
        outcome, _, _ = self._run(self.prepare_row(row), ctx, company_sso_id, trace, stages)
        if isinstance(outcome, Migrated) and isinstance(outcome.log, ActivityLog):  # always, made here
            trace.migrated(outcome.log)
        return tuple(trace.decisions)

    def _load(self, row: AuditRow) -> tuple[Changes | None, Failed | None]:
        try:
            return load_audited_changes(row.audited_changes, self._limits), None
        except AuditedChangesError as exc:
            detail = f"{exc.reason}: {exc}"
        except Exception as exc:  # a loader bug must not take the page down with it
            detail = _bug(exc)
        return None, Failed(row.id, reasons.MALFORMED_AUDITED_CHANGES, detail)

    def _run(
        self,
        item: PreparedRow,
        ctx: LookupContext,
        company_sso_id: str,
        observer: StageObserver = NO_OBSERVER,
        stages: tuple[Stage, ...] | None = None,
    ) -> tuple[Outcome, bool, bool]:
        """The outcome, whether its status rule fell through, and whether its actor was degraded.

        A row that gets through the gates and the chain calls no observer at all; a rejection is
        told to ``observer`` (with the gates it passed first), which does nothing in an ordinary
        run. ``explain`` passes its observer and the stages wrapped by it: the gates' passes as
        pseudo-stages in front of the chain's, so they are recorded only when someone listens.
        """
        try:
            return self._walk(item, ctx, company_sso_id, observer, self._stages if stages is None else stages)
        except Exception as exc:  # a stage's bug fails its own row, never the page
            outcome = _unexpected(item.row, exc)
            observer.decided("row", "failed", outcome.detail)
            return outcome, False, False

    def _walk(
        self,
        item: PreparedRow,
        ctx: LookupContext,
        company_sso_id: str,
        observer: StageObserver,
        stages: tuple[Stage, ...],
    ) -> tuple[Outcome, bool, bool]:
        row = item.row
        # The fixed gates: what prepare_row found, the page's tenant, the scope, the load.
        if item.problem is not None and item.problem.reason in _ROW_REASONS:
            observer.decided("row", "failed", item.problem.detail)
            return item.problem, False, False
        if ctx.tenant is not None and row.tenant != ctx.tenant:
            detail = f"row of tenant {row.tenant!r} in a page looked up for tenant {ctx.tenant!r}"
            observer.decided("row", "failed", detail)
            return Failed(row.id, reasons.INVALID_AUDIT_ROW, detail), False, False
        if not self._category.in_scope(row.auditable_type):
            unmapped = Rejection(
                reasons.UNMAPPED_ACTION_TYPE, f"auditable_type {row.auditable_type!r} is not mapped"
            )
            observer.decided("row", PASSED, "")
            return _reject(row, "scope", unmapped, observer)
        if item.problem is not None or item.changes is None:
            problem = item.problem or Failed(row.id, reasons.MALFORMED_AUDITED_CHANGES, "not loaded")
            observer.decided("row", PASSED, "")
            observer.decided("scope", PASSED, row.auditable_type)
            observer.decided("load", "failed", problem.detail)
            return problem, False, False
        draft = RowDraft(row, item.changes, item.person_ids, ctx, company_sso_id)
        for stage in stages:
            rejection = stage.run(draft)
            if rejection is not None:
                return _reject(row, stage.reported_as, rejection, observer)
        return _log(draft, observer)


def _log(draft: RowDraft, observer: StageObserver) -> tuple[Outcome, bool, bool]:
    """The last, fixed step: the activity log built from what the stages found."""
    row, category, contact, actor = draft.row, draft.category, draft.contact, draft.actor
    if category is None or contact is None or actor is None or draft.person_id is None:
        fields = {"category": category, "contact": contact, "actor": actor, "person_id": draft.person_id}
        unset = ", ".join(name for name, value in fields.items() if value is None)
        failure = Rejection(reasons.INVALID_AUDIT_ROW, f"the rule chain left unset: {unset}", skip=False)
        return _reject(row, "log", failure, observer)
    created_at = row.created_at
    if not isinstance(created_at, dt.datetime):  # prepare_row fails these first; a hand-built
        return _reject(row, "row", time_rejection(created_at), observer)  # PreparedRow meets it here
    # ActivityLog's fields in order, passed by position: one log per row, and keywords cost.
    log = ActivityLog(
        draft.company_sso_id,
        contact.id,
        category.category,
        category.action,
        actor,
        draft.field_changes,
        created_at,
        external_id(row.tenant, row.id),
        SOURCE_TAG,
        _metadata(row, draft.person_id, category, draft.combined),
    )
    return Migrated(row.id, log), category.fallthrough, draft.actor_degraded


def _reject(
    row: AuditRow, stage: str, rejection: Rejection, observer: StageObserver
) -> tuple[Outcome, bool, bool]:
    verdict = "skipped" if rejection.skip else "failed"
    observer.decided(stage, verdict, f"{rejection.reason}: {rejection.detail}")
    if rejection.skip:
        return Skipped(row.id, rejection.reason, rejection.detail), False, False
    return Failed(row.id, rejection.reason, rejection.detail), False, False


class _Trace:
    """The observer ``explain`` attaches: every decision, details built as they are made."""

    __slots__ = ("decisions",)

    def __init__(self) -> None:
        self.decisions: list[StageDecision] = []

    def attach(self, stages: Sequence[Stage]) -> tuple[Stage, ...]:
        """The stages, each reporting its pass to this observer (rejections are reported by the walk)."""
        return tuple(attrs.evolve(stage, run=self._observing(stage)) for stage in stages)

    def _observing(self, stage: Stage) -> StageRun:
        run = stage.run

        def observed(draft: RowDraft) -> Rejection | None:
            rejection = run(draft)
            if rejection is None:
                self.passed(stage, draft)
            return rejection

        return observed

    def passed(self, stage: Stage, draft: RowDraft) -> None:
        if stage.describe is not None:
            self.decisions.append(StageDecision(stage.reported_as, PASSED, stage.describe(draft)))

    def decided(self, stage: str, verdict: str, detail: str) -> None:
        self.decisions.append(StageDecision(stage, verdict, detail))

    def migrated(self, log: ActivityLog) -> None:
        detail = f"{log.category}/{log.action} {log.external_id}"
        self.decisions.append(StageDecision("log", MIGRATED, detail))


def _loaded(draft: RowDraft) -> str:
    return f"{len(draft.changes)} column(s)"


def _passes(draft: RowDraft) -> None:
    return None


# The gates a row passed before the chain, as explain reports them (pseudo-stages, explain only).
_GATES = (
    Stage("row", _passes, lambda draft: ""),
    Stage("scope", _passes, lambda draft: draft.row.auditable_type),
    Stage("load", _passes, _loaded),
)


def _metadata(row: AuditRow, person_id: int, category: MappedCategory, combined: bool) -> dict[str, Value]:
    # Keys with no value are left out: enrichment adds missing keys, it never overwrites.
    metadata: dict[str, Value] = {
        "crm_audit_id": row.id,
        "crm_tenant": row.tenant,
        "auditable_type": row.auditable_type,
    }
    if row.auditable_id is not None:
        metadata["auditable_id"] = row.auditable_id
    metadata["crm_person_id"] = person_id
    if row.request_uuid:
        metadata["request_uuid"] = row.request_uuid
    if row.user_id is None and row.username:
        metadata["username"] = row.username
    if category.linked_entity_type is not None:
        metadata["linked_entity_type"] = category.linked_entity_type
        if category.linked_entity_id is not None:
            metadata["linked_entity_id"] = category.linked_entity_id
    if combined:  # audited merged several audits into this row (max_audits): its times are the last's
        metadata["combined"] = True
    return metadata


_OPTIONAL_INTS = ("auditable_id", "associated_id", "version")
_OPTIONAL_STRS = ("associated_type", "user_type", "username", "comment", "remote_address", "request_uuid")


def _row_problem(row: AuditRow) -> str | None:
    """Why a row cannot be processed at all (wrong types from a careless source), or None."""
    if not isinstance(row, AuditRow):
        return f"not an AuditRow: {type(row).__name__}"
    if _plainly_valid(row):
        return None
    if type(row.id) is not int:
        return f"id must be an integer, got {_shown(row.id)}"
    for name in ("tenant", "auditable_type", "action"):
        value = getattr(row, name)
        if not isinstance(value, str) or not value:
            return _unread(name, value) or f"{name} must be a non-empty string, got {_shown(value)}"
    for name in _OPTIONAL_INTS:
        value = getattr(row, name)
        if value is not None and type(value) is not int:
            return f"{name} must be an integer or null, got {_shown(value)}"
    user_id = row.user_id
    if user_id is not None and type(user_id) is not int and not (type(user_id) is str and user_id):
        return f"user_id must be an integer, a non-empty string or null, got {_shown(user_id)}"
    for name in _OPTIONAL_STRS:
        value = getattr(row, name)
        if value is not None and not isinstance(value, str):
            return _unread(name, value) or f"{name} must be a string or null, got {_shown(value)}"
    created_at = row.created_at
    if isinstance(created_at, UnreadableTime):
        return unreadable_time(created_at)
    if created_at is not None and (
        not isinstance(created_at, dt.datetime) or created_at.utcoffset() != dt.timedelta(0)
    ):
        return f"created_at must be a UTC datetime, got {_shown(created_at)}"
    return None


def _shown(value: object) -> str:
    """A wrong-typed value as a detail shows it (``rules.verdict.shown_value``): at most
    ``NAME_SHOWN`` characters and its size, built without the whole ``repr``. A SQL_ASCII database
    hands text over as ``bytes`` (a ``comment`` up to 64 MiB); a file's or a caller's row may hold a
    list of millions of items. The detail goes to logs, status and outcomes."""
    return shown_value(value)


def _unread(name: str, value: object) -> str | None:
    """What a source says of a text value it did not hand over (``NotRead``, ``UntranslatableText``),
    or None: the column, the value's size and why, never any of the value."""
    if isinstance(value, NotRead):
        return f"{name} was not read: {value.size} bytes, over its limit of {value.limit} bytes"
    if isinstance(value, UntranslatableText):
        return f"{name} is not text: {value}"
    return None


_NONE = type(None)
_UTC_OFFSET = dt.timedelta(0)


def _plainly_valid(row: AuditRow) -> bool:
    """The common case of ``_row_problem`` in one expression: exact types, nothing to report."""
    created_at = row.created_at
    return (
        type(row.id) is int
        and type(row.tenant) is str
        and type(row.auditable_type) is str
        and type(row.action) is str
        and bool(row.tenant and row.auditable_type and row.action)
        and type(row.auditable_id) in _INT_OR_NONE
        and type(row.associated_id) in _INT_OR_NONE
        and type(row.user_id) in _USER_ID_OR_NONE
        and row.user_id != ""
        and type(row.version) in _INT_OR_NONE
        and type(row.associated_type) in _STR_OR_NONE
        and type(row.user_type) in _STR_OR_NONE
        and type(row.username) in _STR_OR_NONE
        and type(row.comment) in _STR_OR_NONE
        and type(row.remote_address) in _STR_OR_NONE
        and type(row.request_uuid) in _STR_OR_NONE
        and type(created_at) is dt.datetime
        and created_at.utcoffset() == _UTC_OFFSET
    )


_INT_OR_NONE = frozenset({int, _NONE})
# Row-level failures found by prepare_row: reported before the scope, as the row's one outcome.
_ROW_REASONS = frozenset({reasons.INVALID_AUDIT_ROW, reasons.MISSING_CREATED_AT})
_STR_OR_NONE = frozenset({str, _NONE})
_USER_ID_OR_NONE = frozenset({int, str, _NONE})


def _audit_id(row: object) -> int:
    # A row whose id is not an integer still gets its one outcome; -1 marks the id as unusable.
    audit_id = getattr(row, "id", None)
    return audit_id if type(audit_id) is int else -1


def _unexpected(row: object, exc: Exception) -> Failed:
    return Failed(_audit_id(row), reasons.INVALID_AUDIT_ROW, _bug(exc))


def _bug(exc: Exception) -> str:
    """``unexpected KeyError in lookup (rules.py:42)``: the error's type and where it was raised
    (:func:`~crm_audit_transform.raised.raised_at`).

    Not its message: a bug's message may quote what it met, a value of the row (``KeyError:
    'hunter2'``), and a failure's detail reaches ``--outcomes`` files, ``explain`` and logs.
    """
    return f"unexpected {raised_at(exc)}"
