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


SECRET_COLUMNS = (
    # audited's own example of its `redacted:` option (audited 5.8.0 lib/audited/auditor.rb).
    "password",
    # has_secure_password (ActiveModel::SecurePassword): the bcrypt digest.
    "password_digest",
    # Devise (lib/generators/active_record/devise_generator.rb) and devise_invitable.
    "encrypted_password",
    "reset_password_token",
    "confirmation_token",
    "unlock_token",
    "invitation_token",
    "remember_token",
    "authentication_token",
    # devise-two-factor: the TOTP secret (5.x; its encrypted_* columns before) and backup codes.
    "otp_secret",
    "encrypted_otp_secret",
    "encrypted_otp_secret_iv",
    "encrypted_otp_secret_salt",
    "otp_backup_codes",
    # Authlogic.
    "crypted_password",
    "password_salt",
    "persistence_token",
    "single_access_token",
    "perishable_token",
    # The Rails Tutorial's remember, activation and reset digests (Hartl, chapters 9-12).
    "remember_digest",
    "activation_digest",
    "reset_digest",
    # Sorcery (lib/generators/sorcery/templates/migration): the salt and its submodules' tokens.
    "salt",
    "remember_me_token",
    "activation_token",
    # two_factor_authentication: the TOTP secret (and its encrypted_* columns) and the direct code.
    "otp_secret_key",
    "encrypted_otp_secret_key",
    "encrypted_otp_secret_key_iv",
    "encrypted_otp_secret_key_salt",
    "direct_otp",
    # Doorkeeper's application secret, and OAuth clients' by their usual name.
    "secret",
    "client_secret",
    # has_secure_token's default column, and the usual names of stored credentials.
    "token",
    "api_key",
    "api_token",
    "access_token",
    "refresh_token",
    "auth_token",
    "session_token",
)
"""Columns redacted unless a mapping says otherwise (``columns.redacted``, docs/mapping.md).

audited 5.8.0 redacts nothing by default: its ``redacted:`` option is opt-in per model, and
``Audited.ignored_attributes`` holds only ``lock_version`` and timestamps; so a Rails app that audits
its users writes their password digest and tokens into ``audited_changes`` as they are. These are
the columns the common Rails authentication libraries create. Exact names, not patterns: a pattern
such as ``*_token`` or ``*_digest`` also hides history that is no secret (``email_digest``, a
newsletter setting; ``page_token``) from every reader of the timeline, while a secret column this
list misses is one line of a team's own mapping.
"""


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
    redacted: tuple[str, ...] = SECRET_COLUMNS
    """Columns shown as the marker; ``SECRET_COLUMNS`` unless the mapping names its own (``[]``: none)."""
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
