"""In-memory lookup ports: real implementations of the Protocols, for tests and users' own tests.

Each records its calls (``.calls``) so a test can pin "one call per port per page". The record is
bounded (``CallLog``): a long dry run over these ports keeps the recent calls and a total, not one
entry per page of the whole account.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Final, TypeVar

from ..domain import Contact, CrmUser, EntityRef, UserId
from ..errors import DirectoryUnavailable

_T = TypeVar("_T")

CALLS_KEPT: Final = 1000
"""At least this many most recent calls stay in ``.calls`` (at most twice as many)."""


class CallLog(list[_T]):
    """A list of the most recent calls, trimmed as it grows; ``total`` counts every call made.

    It is a plain list to read and compare; trimming drops the oldest half at once, so recording
    stays O(1) amortized.
    """

    def __init__(self, keep: int = CALLS_KEPT) -> None:
        super().__init__()
        self.keep = keep
        self.total = 0

    def record(self, call: _T) -> None:
        self.total += 1
        self.append(call)
        if len(self) >= 2 * self.keep:
            del self[: len(self) - self.keep]


class InMemoryUserDirectory:
    """CRM users per tenant; ids whose row is gone are simply not given."""

    def __init__(self, users: Mapping[str, Iterable[CrmUser]] | None = None) -> None:
        self._users = {tenant: {u.id: u for u in rows} for tenant, rows in (users or {}).items()}
        self.calls: CallLog[tuple[str, tuple[UserId, ...]]] = CallLog()

    def add(self, tenant: str, user: CrmUser) -> None:
        self._users.setdefault(tenant, {})[user.id] = user

    def users_by_ids(self, tenant: str, ids: Collection[UserId]) -> Mapping[UserId, CrmUser]:
        self.calls.record((tenant, tuple(ids)))
        known = self._users.get(tenant, {})
        return {i: known[i] for i in ids if i in known}


class InMemorySsoDirectory:
    """SSO ids by email (the same for every company unless given per company); can be made to fail."""

    def __init__(
        self,
        sso_ids: Mapping[str, str] | None = None,
        *,
        per_company: Mapping[str, Mapping[str, str]] | None = None,
        failing: bool = False,
    ) -> None:
        self._sso_ids = dict(sso_ids or {})
        self._per_company = {company: dict(ids) for company, ids in (per_company or {}).items()}
        self.failing = failing
        self.calls: CallLog[tuple[str, tuple[str, ...]]] = CallLog()

    def sso_ids_by_emails(self, company_sso_id: str, emails: Collection[str]) -> Mapping[str, str]:
        self.calls.record((company_sso_id, tuple(emails)))
        if self.failing:
            raise DirectoryUnavailable("SSO directory is failing (in-memory, on request)")
        known = self._per_company.get(company_sso_id, self._sso_ids)
        return {e: known[e] for e in emails if e in known}


class InMemoryContactDirectory:
    """CDP contacts, looked up by (company_sso_id, crm person id) only.

    As in the MongoDB and file directories, when a company has several contacts with one person id
    the first added wins the lookup.
    """

    def __init__(self, contacts: Iterable[Contact] = ()) -> None:
        self._contacts: dict[tuple[str, int], Contact] = {}
        self.calls: CallLog[tuple[str, tuple[int, ...]]] = CallLog()
        for contact in contacts:
            self.add(contact)

    def add(self, contact: Contact) -> None:
        self._contacts.setdefault((contact.company_sso_id, contact.crm_person_id), contact)

    def contacts_by_crm_ids(
        self, company_sso_id: str, crm_person_ids: Collection[int]
    ) -> Mapping[int, Contact]:
        self.calls.record((company_sso_id, tuple(crm_person_ids)))
        found = {}
        for person_id in crm_person_ids:
            contact = self._contacts.get((company_sso_id, person_id))
            if contact is not None:
                found[person_id] = contact
        return found


class InMemoryEntityDirectory:
    """CRM entities per tenant; a deleted one is kept with ``exists=False``."""

    def __init__(self, entities: Mapping[str, Iterable[EntityRef]] | None = None) -> None:
        self._entities: dict[tuple[str, str, int], EntityRef] = {}
        self.calls: CallLog[tuple[str, str, tuple[int, ...]]] = CallLog()
        for tenant, refs in (entities or {}).items():
            for ref in refs:
                self.add(tenant, ref)

    def add(self, tenant: str, ref: EntityRef) -> None:
        self._entities[(tenant, ref.entity_type, ref.id)] = ref

    def entities_by_ids(self, tenant: str, entity_type: str, ids: Collection[int]) -> Mapping[int, EntityRef]:
        self.calls.record((tenant, entity_type, tuple(ids)))
        found = {}
        for entity_id in ids:
            ref = self._entities.get((tenant, entity_type, entity_id))
            if ref is not None:
                found[entity_id] = ref
        return found


class InMemoryPeopleCounter:
    """The CRM's people per tenant: their ids, or a count ``n`` standing for ids ``1..n``.

    An unknown tenant has no people.
    """

    def __init__(self, people: Mapping[str, int | Collection[int]] | None = None) -> None:
        self._ids = {
            tenant: sorted(set(range(1, ids + 1) if isinstance(ids, int) else ids))
            for tenant, ids in (people or {}).items()
        }

    def count_people(self, tenant: str) -> int:
        return len(self._ids.get(tenant, ()))

    def person_ids(self, tenant: str, *, after_id: int, limit: int) -> Sequence[int]:
        ids = self._ids.get(tenant, [])
        start = bisect_right(ids, after_id)
        return ids[start : start + limit]
