"""The rule chain: the Transformer's per-row stages as a configured sequence of small callables.

Modelled on structlog's processor chain: each stage is a callable that reads and fills one
:class:`RowDraft` and either lets the row go on (returns ``None``) or ends it with a
:class:`~crm_audit_transform.rules.verdict.Rejection`. The default chain, built from a
:class:`~crm_audit_transform.config.MappingConfig`, runs

    category → contact → watermark → changes → actor

after the fixed gates (row checks, scope, load) and before the fixed last step that builds the
:class:`~crm_audit_transform.domain.ActivityLog` from the draft. A library user replaces a stage
(keeping its name) or inserts one of their own::

    chain = RuleChain.from_config(config)
    default_category = chain["category"].run

    def ticket_escalation(draft: RowDraft) -> Rejection | None:
        if draft.row.auditable_type == "Crm::Ticket" and "priority" in draft.changes:
            draft.category = MappedCategory("ticket", "escalated")
            return None
        return default_category(draft)

    transformer = Transformer(config, chain=chain.replacing("category", ticket_escalation))

The stages never ask a port: everything a row may need is in ``draft.ctx``, fetched once per page.
A stage that raises fails only its own row (``invalid_audit_row``, ``unexpected …``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Final, Protocol

from attrs import define, frozen

from . import reasons
from .config import MappingConfig
from .domain import ActivityLog, Actor, AuditRow, Contact, FieldChange
from .lookup import LookupContext
from .rules._combined import is_combined
from .rules.actor import ActorResolver
from .rules.category import CategoryMapper, MappedCategory
from .rules.changes import ChangesExtractor
from .rules.contact import ContactResolver
from .rules.verdict import Rejection
from .rules.watermark import SyncWatermark
from .values import Changes

__all__ = ["NO_OBSERVER", "RowDraft", "RuleChain", "Stage", "StageObserver", "StageRun"]

PASSED = "pass"
MIGRATED = "migrated"


@define(slots=True)
class RowDraft:
    """What the stages know about one row so far; each default stage fills its own fields.

    ``row``, ``changes`` (loaded), ``person_ids`` (the candidates, in the order they are tried),
    ``ctx`` (the page's lookups) and ``company_sso_id`` are given; ``category`` (category stage),
    ``person_id`` and ``contact`` (contact stage), ``field_changes`` and ``combined`` (changes
    stage), ``actor`` and ``actor_degraded`` (actor stage) are set as the chain goes. The log is
    built from them once every stage has passed; a chain that leaves ``category``, ``contact`` or
    ``actor`` unset fails the row.
    """

    row: AuditRow
    changes: Changes
    person_ids: tuple[int, ...]
    ctx: LookupContext
    company_sso_id: str
    category: MappedCategory | None = None
    person_id: int | None = None
    contact: Contact | None = None
    field_changes: tuple[FieldChange, ...] = ()
    combined: bool = False
    actor: Actor | None = None
    actor_degraded: bool = False


StageRun = Callable[[RowDraft], "Rejection | None"]
"""A stage: fill the draft and return ``None`` to go on, or a ``Rejection`` to end the row."""


@frozen
class Stage:
    """One named step of a :class:`RuleChain`.

    ``describe`` gives the detail ``explain`` shows when the row passes (called only when an
    observer is attached; ``None`` records no pass line). ``label`` is the stage name ``explain``
    reports (default: ``name``); the category stage reports as ``scope``, because an unmapped
    action puts the row out of scope just as an unmapped type does.
    """

    name: str
    run: StageRun
    describe: Callable[[RowDraft], str] | None = None
    label: str = ""

    @property
    def reported_as(self) -> str:
        return self.label or self.name


@frozen
class RuleChain:
    """The ordered stages a :class:`~crm_audit_transform.transformer.Transformer` runs per row.

    Names are unique. Raises ``ValueError`` from :meth:`replacing` / :meth:`inserting` when a name
    is unknown or taken, and from the constructor on a repeated name.
    """

    stages: tuple[Stage, ...]

    def __attrs_post_init__(self) -> None:
        strays = [type(stage).__name__ for stage in self.stages if not isinstance(stage, Stage)]
        if strays:
            raise TypeError(f"a rule chain's stages must be Stage values, got {', '.join(strays)}")
        names = [stage.name for stage in self.stages]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"rule chain stage names must be unique, repeated: {', '.join(repeated)}")

    @classmethod
    def from_config(cls, config: MappingConfig) -> RuleChain:
        """The default chain: the plan's rules (docs/mapping.md), configured by ``config``."""
        return cls(
            (
                _category_stage(CategoryMapper(config)),
                _contact_stage(ContactResolver(config)),
                _watermark_stage(SyncWatermark()),
                _changes_stage(ChangesExtractor(config)),
                _actor_stage(ActorResolver(config)),
            )
        )

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(stage.name for stage in self.stages)

    def __getitem__(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(name)

    def __iter__(self) -> Iterator[Stage]:
        return iter(self.stages)

    def replacing(
        self, name: str, run: StageRun, *, describe: Callable[[RowDraft], str] | None = None
    ) -> RuleChain:
        """A chain with stage ``name`` running ``run`` instead (same place, same reported name)."""
        old = self[name]
        new = Stage(name, run, describe, old.label)
        return RuleChain(tuple(new if stage.name == name else stage for stage in self.stages))

    def inserting(self, stage: Stage, *, before: str | None = None, after: str | None = None) -> RuleChain:
        """A chain with ``stage`` added before or after a named stage (exactly one of them)."""
        if (before is None) == (after is None):
            raise ValueError("give exactly one of before= or after=")
        anchor = before if before is not None else after
        assert anchor is not None  # for mypy: one of them is set
        index = self.names.index(self[anchor].name) + (0 if before is not None else 1)
        return RuleChain((*self.stages[:index], stage, *self.stages[index:]))


def stage_codes(chain: RuleChain) -> tuple[tuple[str, str], ...]:
    """Each stage's name and the code it runs, ``module.qualname`` of its callable: a function's
    (a default stage's closure: ``crm_audit_transform.chain._category_stage.<locals>.category``), a
    bound method's, a callable object's class's, a ``functools.partial``'s function's.

    What a job's mark (``Transformer.mapping_mark``) keeps of a chain passed in code: which code
    runs at each step, in order. Not that code's text, nor the values a closure or a partial holds:
    a chain is code, and a deploy that changes it is a new release, as a new library version is.
    """
    return tuple((stage.name, _code_of(stage.run)) for stage in chain.stages)


def _code_of(run: object) -> str:
    while isinstance(run, functools.partial):
        run = run.func
    named = run if hasattr(run, "__qualname__") and hasattr(run, "__module__") else type(run)
    return f"{getattr(named, '__module__', '?')}.{getattr(named, '__qualname__', '?')}"


class StageObserver(Protocol):
    """Told each stage's decision about a row as it is made (``Transformer.explain`` attaches one).

    ``passed`` receives the stage and the draft so that a detail is only built when someone
    listens; ``decided`` receives a verdict (``pass``, ``skipped``, ``failed``) with its detail
    already built; ``migrated`` receives the row's log at the end of a passing chain.
    """

    def passed(self, stage: Stage, draft: RowDraft) -> None: ...

    def decided(self, stage: str, verdict: str, detail: str) -> None: ...

    def migrated(self, log: ActivityLog) -> None: ...


class _NoObserver:
    """The observer of an ordinary run: nothing is built, nothing kept."""

    __slots__ = ()

    def passed(self, stage: Stage, draft: RowDraft) -> None:
        pass

    def decided(self, stage: str, verdict: str, detail: str) -> None:
        pass

    def migrated(self, log: ActivityLog) -> None:
        pass


NO_OBSERVER: Final[StageObserver] = _NoObserver()
"""The observer of an ordinary run."""


def _category_stage(mapper: CategoryMapper) -> Stage:
    """(auditable_type, action, changes) → CDP category and action; ``unmapped_action_type`` else."""

    def category(draft: RowDraft) -> Rejection | None:
        row = draft.row
        found = mapper.map(row.tenant, row.auditable_type, row.auditable_id, row.action, draft.changes)
        if isinstance(found, Rejection):
            return found
        draft.category = found
        return None

    return Stage("category", category, label="scope")


def _contact_stage(resolver: ContactResolver) -> Stage:
    """The first candidate person id with a CDP contact of the account; ``contact_not_found`` else."""

    def contact(draft: RowDraft) -> Rejection | None:
        found = resolver.resolve(draft.person_ids, draft.ctx, draft.company_sso_id)
        if isinstance(found, Rejection):
            return found
        draft.person_id, draft.contact = found
        return None

    def describe(draft: RowDraft) -> str:
        contact_id = draft.contact.id if draft.contact is not None else None
        return f"crm person {draft.person_id} → contact {contact_id}"

    return Stage("contact", contact, describe)


def _watermark_stage(watermark: SyncWatermark) -> Stage:
    """Rows at or after the contact's sync belong to the live feed: ``post_sync_live_feed``."""

    def check(draft: RowDraft) -> Rejection | None:
        if draft.contact is None:
            return Rejection(reasons.CONTACT_NOT_FOUND, "no stage before the watermark set a contact", False)
        return watermark.check(draft.row, draft.contact)

    def describe(draft: RowDraft) -> str:
        created_at = draft.contact.created_at.isoformat() if draft.contact is not None else "?"
        return f"before {created_at}"

    return Stage("watermark", check, describe)


def _changes_stage(extractor: ChangesExtractor) -> Stage:
    """The row's :class:`FieldChange` values (labels, ignored and redacted columns from config)."""

    def changes(draft: RowDraft) -> Rejection | None:
        row = draft.row
        combined = is_combined(row.comment)
        found = extractor.extract(row.auditable_type, row.action, draft.changes, combined=combined)
        if isinstance(found, Rejection):
            return found
        draft.field_changes, draft.combined = found, combined
        return None

    def describe(draft: RowDraft) -> str:
        return f"{len(draft.field_changes)} change(s)"

    return Stage("changes", changes, describe)


def _actor_stage(resolver: ActorResolver) -> Stage:
    """Who made the change (SSO user, deleted CRM user, or the system); never rejects."""

    def actor(draft: RowDraft) -> Rejection | None:
        draft.actor, draft.actor_degraded = resolver.resolve_counted(draft.row, draft.ctx)
        return None

    def describe(draft: RowDraft) -> str:
        why = " (SSO directory unavailable)" if draft.actor_degraded else ""
        kind, name = (draft.actor.kind, draft.actor.name) if draft.actor is not None else ("?", "?")
        return f"{kind}: {name}{why}"

    return Stage("actor", actor, describe)
