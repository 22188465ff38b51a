"""Batched lookups: a page names every id it needs, each port is asked once, rules read the result.

``Transformer.plan`` builds a :class:`LookupRequest`; :func:`fetch_lookups` asks the CRM users,
then the SSO directory for the emails of the users found, then the CDP contacts — at most one call
per port — and returns an immutable :class:`LookupContext`. An unavailable SSO directory degrades
(every user actor it could not resolve becomes ``[Deleted CRM User]``); it never fails the page. An
answer that leaves some emails unanswered (``DirectoryUnavailable.unanswered``) degrades those
emails' actors only, and the rest of the answer is used and remembered.

Given a :class:`~.lookup_cache.LookupCache` (the run loop keeps one per run), users and SSO ids
already answered are taken from it and only the rest are asked for, so each user id and email is
asked at most once per run; a page whose ids are all known makes no user or SSO call at all.

:class:`RunLookups` is a run's lookups as one callable (the run loop's ``PageLookup``). When every
one of its ports can be copied to another process (``ports.WorkerCopy``), ``for_worker`` gives the
same lookups for a worker process, with a cache of its own: a page pool's workers then look their
pages up themselves (``crm_audit_adapters.page_pool``), each user id and email asked at most once
per run *per process*.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeVar

from attrs import field, frozen

from .domain import Contact, CrmUser, UserId
from .errors import DirectoryUnavailable
from .lookup_cache import LookupCache
from .ports import ContactDirectory, SsoDirectory, UserDirectory, WorkerCopy


def _sorted_ids(ids: Iterable[int]) -> tuple[int, ...]:
    return tuple(sorted(set(ids)))


def _sorted_user_ids(ids: Iterable[UserId]) -> tuple[UserId, ...]:
    # Integer and string (UUID) ids may meet in one page: ints first, each kind in its own order.
    return tuple(sorted(set(ids), key=lambda i: (isinstance(i, str), i)))


@frozen
class LookupRequest:
    """The CRM user ids and CRM person ids one page of rows needs (sorted, without repeats)."""

    user_ids: tuple[UserId, ...] = field(default=(), converter=_sorted_user_ids)
    person_ids: tuple[int, ...] = field(default=(), converter=_sorted_ids)


@frozen
class LookupPorts:
    """What a page's lookups ask: the CRM users, the SSO directory (USMAN), the CDP contacts."""

    users: UserDirectory
    sso: SsoDirectory
    contacts: ContactDirectory


@frozen
class LookupContext:
    """What the rules may know about a page: users by id, SSO ids by email, contacts by person id.

    ``sso_available`` is False when the SSO directory left an email of the page unanswered:
    ``sso_unanswered`` holds those emails, or is empty when none of the emails missing from
    ``sso_ids`` is known to be answered (``sso_answered``). ``tenant`` (when set) is the CRM tenant
    the users belong to: a row of another tenant is refused rather than matched against the wrong users.
    """

    users: Mapping[UserId, CrmUser] = field(factory=dict)
    sso_ids: Mapping[str, str] = field(factory=dict)
    contacts: Mapping[int, Contact] = field(factory=dict)
    sso_available: bool = True
    tenant: str | None = None
    sso_unanswered: frozenset[str] = frozenset()

    def sso_answered(self, email: str) -> bool:
        """Whether the SSO directory answered for ``email`` (its SSO id, or that it has none)."""
        if self.sso_available or email in self.sso_ids:
            return True
        return bool(self.sso_unanswered) and email not in self.sso_unanswered


def fetch_lookups(
    request: LookupRequest,
    *,
    company_sso_id: str,
    tenant: str,
    ports: LookupPorts,
    cache: LookupCache | None = None,
) -> LookupContext:
    """Ask each port at most once (never with an empty id list) and collect the answers.

    With ``cache``, only ids and emails it has no answer for are asked, and the answers are added
    to it; without, a throwaway cache makes this exactly the uncached lookup.
    """
    cache = LookupCache() if cache is None else cache
    found_users, ask_users = cache.known_users(tenant, request.user_ids)
    if ask_users:
        answered = ports.users.users_by_ids(tenant, ask_users)
        cache.remember_users(tenant, ask_users, answered)
        found_users.update(answered)
    emails = sorted({user.email for user in found_users.values() if user.email and user.deleted_at is None})
    sso_ids, ask_emails = cache.known_sso_ids(company_sso_id, emails)
    unanswered: frozenset[str] = frozenset()
    if ask_emails:
        try:
            answered_sso = ports.sso.sso_ids_by_emails(company_sso_id, ask_emails)
        except DirectoryUnavailable as exc:
            # Not an answer for the emails it leaves unanswered (every one by default): those are not
            # remembered, so the next page asks USMAN again; the rest of a partial answer is.
            partly: frozenset[str] | None = getattr(exc, "unanswered", None)
            unanswered = frozenset(ask_emails) if partly is None else partly.intersection(ask_emails)
            if partly is not None:
                answered_emails = [email for email in ask_emails if email not in unanswered]
                asked = set(answered_emails)
                found = {email: sso_id for email, sso_id in exc.answered.items() if email in asked}
                cache.remember_sso_ids(company_sso_id, answered_emails, found)
                sso_ids.update(found)
        else:
            cache.remember_sso_ids(company_sso_id, ask_emails, answered_sso)
            sso_ids.update(answered_sso)
    found_contacts = (
        dict(ports.contacts.contacts_by_crm_ids(company_sso_id, request.person_ids))
        if request.person_ids
        else {}
    )
    return LookupContext(
        users=found_users,
        sso_ids=sso_ids,
        contacts=found_contacts,
        sso_available=not unanswered,
        tenant=tenant,
        sso_unanswered=unanswered,
    )


_Port = TypeVar("_Port")


def _worker_copy(port: _Port) -> _Port | None:
    """``port.worker_copy()`` (``ports.WorkerCopy``), None for a port without one."""
    return port.worker_copy() if isinstance(port, WorkerCopy) else None


class RunLookups:
    """One run's page lookups (``usecases.pages.PageLookup``): ``fetch_lookups`` over ``ports`` for
    the run's company and tenant, with the run's ``cache``."""

    __slots__ = ("_cache", "_company_sso_id", "_ports", "_tenant")

    def __init__(
        self, ports: LookupPorts, *, company_sso_id: str, tenant: str, cache: LookupCache | None = None
    ) -> None:
        self._ports = ports
        self._company_sso_id = company_sso_id
        self._tenant = tenant
        self._cache = LookupCache() if cache is None else cache

    def __call__(self, request: LookupRequest) -> LookupContext:
        return fetch_lookups(
            request,
            company_sso_id=self._company_sso_id,
            tenant=self._tenant,
            ports=self._ports,
            cache=self._cache,
        )

    @property
    def ports(self) -> LookupPorts:
        return self._ports

    def __repr__(self) -> str:
        return f"RunLookups({self._company_sso_id!r}, {self._tenant!r})"

    def __getstate__(self) -> tuple[LookupPorts, str, str]:
        """Pickled without its cache: the copy starts with a cache of its own."""
        return self._ports, self._company_sso_id, self._tenant

    def __setstate__(self, state: tuple[LookupPorts, str, str]) -> None:
        self._ports, self._company_sso_id, self._tenant = state
        self._cache = LookupCache()

    def for_worker(self) -> RunLookups | None:
        """These lookups for a worker process: each port's ``worker_copy`` (``ports.WorkerCopy``) and
        an empty cache; None when a port has none (the lookups are then made in this process)."""
        users = _worker_copy(self._ports.users)
        sso = _worker_copy(self._ports.sso)
        contacts = _worker_copy(self._ports.contacts)
        if users is None or sso is None or contacts is None:
            return None
        return RunLookups(
            LookupPorts(users, sso, contacts), company_sso_id=self._company_sso_id, tenant=self._tenant
        )

    def close(self) -> None:
        """Close what each port opened (those with a ``close``): a worker's copy, at its run's end."""
        for port in (self._ports.users, self._ports.sso, self._ports.contacts):
            close = getattr(port, "close", None)
            if callable(close):
                close()
