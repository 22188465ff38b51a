"""The mapping configuration: which CRM rows become which CDP activity, and how they read.

Frozen attrs classes, read from YAML by :mod:`crm_audit_transform.config.reading`; every key is
documented in docs/mapping.md. Rules resolve what they need from it once, at construction.
"""

from __future__ import annotations

from collections.abc import Mapping

from attrs import field, frozen

AUDIT_ACTIONS = ("create", "update", "destroy")
"""The ``action`` values audited 5.8.0 writes."""


def _default_actions() -> dict[str, str]:
    return {"create": "created", "update": "updated", "destroy": "deleted"}


def _default_link_actions() -> dict[str, str]:
    return {"create": "link", "destroy": "unlink"}


@frozen
class ActorConfig:
    """Who the CRM's ``user_type`` names, and the display names used when no SSO user can be shown."""

    user_class: str = "User"
    deleted_user_name: str = "[Deleted CRM User]"
    system_name: str = "Qontak System"


@frozen
class CommentConfig:
    """Keys of the ``comment`` JSON object that may carry the CRM person id, tried in order."""

    person_id_keys: tuple[str, ...] = ("crm_person_id",)


@frozen
class ColumnsConfig:
    """Labels, ignored and redacted columns shared by every auditable type."""

    labels: Mapping[str, str] = field(factory=dict)
    ignored: tuple[str, ...] = ("created_at", "updated_at")
    redacted: tuple[str, ...] = ()
    redaction_marker: str = "[REDACTED]"
    redaction_values: tuple[str, ...] = ("[REDACTED]",)
    """What audited wrote in place of a redacted column (its ``redaction_value`` option)."""
    arrays: tuple[str, ...] = ()
    """PostgreSQL array columns: in a combined audit, a flat list of theirs is a value, not a pair."""


@frozen
class LinkConfig:
    """A join model: creating a row links, destroying it unlinks, the entity named here."""

    entity_type: str
    id_column: str


@frozen
class StatusRule:
    """An update whose ``column`` gets a new value in the tenant's id-set ``id_set`` becomes ``action``."""

    column: str
    id_set: str
    action: str


@frozen
class TypeMapping:
    """How one ``auditable_type`` maps onto a CDP category, and where its rows name a person."""

    category: str
    actions: Mapping[str, str] | None = None
    link: LinkConfig | None = None
    status_rules: tuple[StatusRule, ...] = ()
    person_id_columns: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(factory=dict)
    ignored_columns: tuple[str, ...] = ()
    redacted_columns: tuple[str, ...] = ()
    array_columns: tuple[str, ...] = ()


@frozen
class TenantConfig:
    """Per-tenant facts: the status id-sets (won stages, resolved statuses, done statuses)."""

    id_sets: Mapping[str, frozenset[int]] = field(factory=dict)


@frozen
class MappingConfig:
    """The whole mapping; ``types`` (in file order) is also the extractor's scope."""

    types: Mapping[str, TypeMapping]
    version: int = 1
    person_class: str = "Crm::Person"
    actions: Mapping[str, str] = field(factory=_default_actions)
    link_actions: Mapping[str, str] = field(factory=_default_link_actions)
    comment: CommentConfig = CommentConfig()
    columns: ColumnsConfig = ColumnsConfig()
    actor: ActorConfig = ActorConfig()
    tenants: Mapping[str, TenantConfig] = field(factory=dict)

    @property
    def scope(self) -> tuple[str, ...]:
        """The auditable types the extractor reads (``auditable_type IN scope``)."""
        return tuple(self.types)
