"""Batched lookups: a page names every id it needs, each port is asked once, rules read the result.

``Transformer.plan`` builds a :class:`LookupRequest`; :func:`fetch_lookups` asks the CRM users,
then the SSO directory for the emails of the users found, then the CDP contacts — at most one call
per port — and returns an immutable :class:`LookupContext`. An unavailable SSO directory degrades
(every user actor becomes ``[Deleted CRM User]``); it never fails the page.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from attrs import field, frozen

from .domain import Contact, CrmUser
from .errors import DirectoryUnavailable
from .ports import ContactDirectory, SsoDirectory, UserDirectory


def _sorted_ids(ids: Iterable[int]) -> tuple[int, ...]:
    return tuple(sorted(set(ids)))


@frozen
class LookupRequest:
    """The CRM user ids and CRM person ids one page of rows needs (sorted, without repeats)."""

    user_ids: tuple[int, ...] = field(default=(), converter=_sorted_ids)
    person_ids: tuple[int, ...] = field(default=(), converter=_sorted_ids)


@frozen
class LookupContext:
    """What the rules may know about a page: users by id, SSO ids by email, contacts by person id.

    ``tenant`` (when set) is the CRM tenant the users belong to: a row of another tenant is refused
    rather than matched against the wrong users.
    """

    users: Mapping[int, CrmUser] = field(factory=dict)
    sso_ids: Mapping[str, str] = field(factory=dict)
    contacts: Mapping[int, Contact] = field(factory=dict)
    sso_available: bool = True
    tenant: str | None = None


def fetch_lookups(
    request: LookupRequest,
    *,
    company_sso_id: str,
    tenant: str,
    users: UserDirectory,
    sso: SsoDirectory,
    contacts: ContactDirectory,
) -> LookupContext:
    """Ask each port at most once (never with an empty id list) and collect the answers."""
    found_users = dict(users.users_by_ids(tenant, request.user_ids)) if request.user_ids else {}
    emails = sorted({user.email for user in found_users.values() if user.email and user.deleted_at is None})
    sso_ids: dict[str, str] = {}
    sso_available = True
    if emails:
        try:
            sso_ids = dict(sso.sso_ids_by_emails(company_sso_id, emails))
        except DirectoryUnavailable:
            sso_available = False
    found_contacts = (
        dict(contacts.contacts_by_crm_ids(company_sso_id, request.person_ids)) if request.person_ids else {}
    )
    return LookupContext(
        users=found_users,
        sso_ids=sso_ids,
        contacts=found_contacts,
        sso_available=sso_available,
        tenant=tenant,
    )
