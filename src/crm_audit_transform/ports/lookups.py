"""The lookups a page of rows needs: CRM users, SSO ids, CDP contacts, CRM people and entities."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Protocol, Self, runtime_checkable

from ..domain import Contact, CrmUser, EntityRef, UserId


class UserDirectory(Protocol):
    """CRM users by id, soft-deleted ones included; ids whose row is gone are simply absent."""

    def users_by_ids(self, tenant: str, ids: Collection[UserId]) -> Mapping[UserId, CrmUser]: ...


class SsoDirectory(Protocol):
    """USMAN: SSO user ids by email within a company. Raises ``DirectoryUnavailable`` when down."""

    def sso_ids_by_emails(self, company_sso_id: str, emails: Collection[str]) -> Mapping[str, str]: ...


class ContactDirectory(Protocol):
    """CDP contacts, always scoped by ``company_sso_id`` AND ``crm_data.id`` (never cross-tenant)."""

    def contacts_by_crm_ids(
        self, company_sso_id: str, crm_person_ids: Collection[int]
    ) -> Mapping[int, Contact]: ...


@runtime_checkable
class WorkerCopy(Protocol):
    """A lookup port that can be used in a worker process too (``lookup.RunLookups.for_worker``)."""

    def worker_copy(self) -> Self | None:
        """This port for another process: a copy that pickles (no open connection, nothing secret in
        its ``repr``) and opens its own connections at its first call (``close`` closes them, if it
        has one); None when this port cannot be sent (an injected transport, a shared client)."""
        ...


class PeopleCounter(Protocol):
    """The CRM's people of a tenant, for the Phase-A coverage guard."""

    def count_people(self, tenant: str) -> int:
        """``count(*)`` of the tenant's ``crm_people`` (the coverage denominator)."""
        ...

    def person_ids(self, tenant: str, *, after_id: int, limit: int) -> Sequence[int]:
        """A keyset page: the tenant's ``crm_people`` ids above ``after_id``, ascending, ``limit`` at most."""
        ...


class EntityDirectory(Protocol):
    """CRM entities (deal, ticket, task, company, person) by id, for association enrichment."""

    def entities_by_ids(
        self, tenant: str, entity_type: str, ids: Collection[int]
    ) -> Mapping[int, EntityRef]: ...
