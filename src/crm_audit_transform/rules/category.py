"""CategoryMapper: (auditable_type, action, changed keys / new value) → CDP (category, action).

Pure configuration: the table lives in the mapping config, resolved once here. Join models link
and unlink their entity; status changes into a tenant's id-set become won / resolved / completed,
and with no id-set configured they fall through to the generic update, flagged so it is counted.
"""

from __future__ import annotations

from collections.abc import Mapping

from attrs import frozen

from .. import reasons
from .._fast_init import fast_init
from ..config import MappingConfig
from ..config.model import StatusRule, TypeMapping
from ..values import Changes
from ._ids import as_id, new_value
from .verdict import Rejection, shown_name


@fast_init  # built for every row: see _fast_init
@frozen
class MappedCategory:
    """The CDP category and action of a row, the entity an association log points at, and whether
    a status change fell through for want of a configured id-set."""

    category: str
    action: str
    linked_entity_type: str | None = None
    linked_entity_id: int | None = None
    fallthrough: bool = False


class CategoryMapper:
    """Maps a row to its :class:`MappedCategory`, or rejects it as ``unmapped_action_type``."""

    __slots__ = ("_id_sets", "_link_actions", "_types")

    def __init__(self, config: MappingConfig) -> None:
        self._types: dict[str, tuple[TypeMapping, Mapping[str, str]]] = {
            name: (mapping, {**config.actions, **(mapping.actions or {})})
            for name, mapping in config.types.items()
        }
        self._link_actions = dict(config.link_actions)
        self._id_sets = {tenant: dict(t.id_sets) for tenant, t in config.tenants.items()}

    @property
    def scope(self) -> tuple[str, ...]:
        return tuple(self._types)

    def in_scope(self, auditable_type: str) -> bool:
        return auditable_type in self._types

    def map(
        self, tenant: str, auditable_type: str, auditable_id: int | None, action: str, changes: Changes
    ) -> MappedCategory | Rejection:
        entry = self._types.get(auditable_type)
        if entry is None:
            detail = f"auditable_type {shown_name(auditable_type)} is not mapped"
            return Rejection(reasons.UNMAPPED_ACTION_TYPE, detail)
        mapping, actions = entry
        if mapping.link is not None and action in self._link_actions:
            linked_id = as_id(changes.get(mapping.link.id_column))
            return MappedCategory(
                mapping.category, self._link_actions[action], mapping.link.entity_type, linked_id
            )
        cdp_action = actions.get(action)
        if cdp_action is None:
            detail = f"action {shown_name(action)} of {shown_name(auditable_type)} is not mapped"
            return Rejection(reasons.UNMAPPED_ACTION_TYPE, detail)
        if action == "update" and mapping.status_rules:
            return self._status(tenant, auditable_type, auditable_id, mapping, cdp_action, changes)
        return MappedCategory(mapping.category, cdp_action)

    def _status(
        self,
        tenant: str,
        auditable_type: str,
        auditable_id: int | None,
        mapping: TypeMapping,
        update_action: str,
        changes: Changes,
    ) -> MappedCategory:
        fallthrough = False
        id_sets = self._id_sets.get(tenant, {})
        for rule in mapping.status_rules:
            if rule.column not in changes:
                continue
            id_set = id_sets.get(rule.id_set)
            if id_set is None:
                fallthrough = True
                continue
            if _enters(rule, id_set, changes):
                return MappedCategory(mapping.category, rule.action, auditable_type, auditable_id)
        return MappedCategory(mapping.category, update_action, fallthrough=fallthrough)


def _enters(rule: StatusRule, id_set: frozenset[int], changes: Changes) -> bool:
    status = as_id(new_value(changes[rule.column]))
    return status is not None and status in id_set
