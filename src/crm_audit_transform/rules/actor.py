"""ActorResolver: who made the change, in four cases (CRM user → SSO user, two hops, both batched).

1. a CRM user that exists, is not soft-deleted and whose email has an SSO id → that SSO user;
2. a soft-deleted user, or one the SSO directory does not know or could not answer for →
   ``[Deleted CRM User]`` (an SSO outage degrades the actor, it never drops the record);
3. no user at all → ``Qontak System`` (a row with only a ``username`` also keeps that name in
   the log's metadata);
4. a user id whose CRM row is gone → ``[Deleted CRM User]``.
"""

from __future__ import annotations

from ..config import MappingConfig
from ..domain import Actor, AuditRow, UserId
from ..lookup import LookupContext


class ActorResolver:
    """Resolves a row's actor from the page's lookup context; never asks a port itself."""

    __slots__ = ("_deleted", "_system", "_user_class")

    def __init__(self, config: MappingConfig) -> None:
        self._user_class = config.actor.user_class
        self._deleted = Actor("deleted_user", config.actor.deleted_user_name)
        self._system = Actor("system", config.actor.system_name)

    def user_id(self, row: AuditRow) -> UserId | None:
        """The CRM user id to look up, or None when the row names no user of the user class."""
        if row.user_id is not None and row.user_type == self._user_class:
            return row.user_id
        return None

    def resolve(self, row: AuditRow, ctx: LookupContext) -> Actor:
        return self.resolve_counted(row, ctx)[0]

    def resolve_counted(self, row: AuditRow, ctx: LookupContext) -> tuple[Actor, bool]:
        """The actor, and whether it was *degraded*: an active CRM user with an email USMAN gave no
        answer for (unavailable, or an entry of its answer that is no answer), so the deleted user
        stands in for them."""
        actor = self._resolve(row, ctx)
        if actor is not self._deleted or ctx.sso_available:
            return actor, False
        user_id = self.user_id(row)
        user = ctx.users.get(user_id) if user_id is not None else None
        if user is None or user.deleted_at is not None or not user.email:
            return actor, False
        return actor, not ctx.sso_answered(user.email)

    def _resolve(self, row: AuditRow, ctx: LookupContext) -> Actor:
        if row.user_id is None:
            return self._system
        user_id = self.user_id(row)
        if user_id is None:
            # A user of another class: the CRM user directory cannot say who it was.
            return self._deleted
        user = ctx.users.get(user_id)
        if user is None or user.deleted_at is not None or not user.email:
            return self._deleted
        sso_id = ctx.sso_ids.get(user.email)
        if sso_id is None:
            return self._deleted
        # A blank full name would show as an empty actor: fall back to the email the SSO id came from.
        name = (user.full_name or "").strip() or user.email
        return Actor("user", name, sso_id)
