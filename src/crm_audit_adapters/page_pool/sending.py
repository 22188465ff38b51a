"""What a ``ProcessPagePipeline`` sends its workers: the recipe of their transformer, a page's rows,
the run's lookups — each checked to pickle before any process needs it."""

from __future__ import annotations

import operator
import pickle
from collections.abc import Callable, Sequence
from typing import Any

import attrs
from attrs import frozen

from crm_audit_transform.chain import RuleChain
from crm_audit_transform.config import MappingConfig
from crm_audit_transform.domain import AuditRow
from crm_audit_transform.errors import ConfigError
from crm_audit_transform.loading import LoaderLimits
from crm_audit_transform.lookup import RunLookups
from crm_audit_transform.transformer import Transformer
from crm_audit_transform.usecases.pages import PageLookup

__all__ = ["TransformerRecipe", "for_workers", "require_picklable", "wire_rows"]

_row_values = operator.attrgetter(*(f.name for f in attrs.fields(AuditRow)))


@frozen
class TransformerRecipe:
    """How a worker builds its ``Transformer``: the mapping, the loader's limits, the rule chain.

    Sent to each worker when it starts, so it must pickle: ``rule_chain`` (given the mapping, the
    chain to use instead of the default) must be a module-level function.
    """

    mapping: MappingConfig
    limits: LoaderLimits | None = None
    rule_chain: Callable[[MappingConfig], RuleChain] | None = None

    def __call__(self) -> Transformer:
        chain = self.rule_chain(self.mapping) if self.rule_chain is not None else None
        return Transformer(self.mapping, limits=self.limits, chain=chain)


def for_workers(lookup: PageLookup) -> RunLookups | None:
    """The run's lookups for the workers (``RunLookups.for_worker``), when every port can be copied
    and the copies pickle; None otherwise: the lookups are then made here, two trips a page."""
    if not isinstance(lookup, RunLookups):
        return None
    copied = lookup.for_worker()
    if copied is None:
        return None
    try:
        pickle.dumps(copied)
    except (pickle.PicklingError, TypeError, AttributeError):
        return None
    return copied


def wire_rows(rows: Sequence[AuditRow]) -> tuple[list[Any], bool]:
    """The rows as sent to a worker, and whether they are field tuples (all ``AuditRow``: cheaper
    to pickle) or the rows as given."""
    if all(type(row) is AuditRow for row in rows):
        return [_row_values(row) for row in rows], True
    return list(rows), False


def require_picklable(*sent: object) -> None:
    """What the workers receive must pickle: say so now, not as a broken pool at the first page."""
    for item in sent:
        try:
            pickle.dumps(item)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            why = f"{item!r} cannot be sent to a worker process ({exc}): use module-level functions"
            raise ConfigError([("workers", why)]) from exc
