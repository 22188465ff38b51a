"""What one run already learned from the CRM user directory and USMAN, so it never asks twice.

A run's pages keep naming the same few users: without a memory every page would ask the user
directory and USMAN again. :class:`LookupCache` keeps every *answer* — a user or "no such user", an
SSO id or "USMAN does not know this email" — for the run that owns it (no globals: the run loop
makes one per run, so a new run sees the directories afresh). A ``DirectoryUnavailable`` is not an
answer: nothing is remembered from it, and the next page asks USMAN again.

Contacts are never cached: each page's persons differ, and a contact's ``created_at`` (the sync
watermark) must be read fresh. The cache is pure bookkeeping; :func:`~.lookup.fetch_lookups` is
still the one place that calls the ports.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .domain import CrmUser, UserId


class LookupCache:
    """Users by ``(tenant, id)`` and SSO ids by ``(company_sso_id, email)``, "not found" included.

    Memory grows with the distinct users and emails a run meets (one small entry each), never
    with the number of rows.
    """

    __slots__ = ("_sso_ids", "_users")

    def __init__(self) -> None:
        self._users: dict[tuple[str, UserId], CrmUser | None] = {}
        self._sso_ids: dict[tuple[str, str], str | None] = {}

    def __len__(self) -> int:
        return len(self._users) + len(self._sso_ids)

    def known_users(
        self, tenant: str, ids: Iterable[UserId]
    ) -> tuple[dict[UserId, CrmUser], tuple[UserId, ...]]:
        """The users already known among ``ids``, and the ids never asked about (in the given order)."""
        known: dict[UserId, CrmUser] = {}
        unknown: list[UserId] = []
        for user_id in ids:
            key = (tenant, user_id)
            if key not in self._users:
                unknown.append(user_id)
                continue
            user = self._users[key]
            if user is not None:
                known[user_id] = user
        return known, tuple(unknown)

    def remember_users(self, tenant: str, asked: Iterable[UserId], found: Mapping[UserId, CrmUser]) -> None:
        """Remember the directory's answer for every id asked: the user, or that there is none."""
        for user_id in asked:
            self._users[(tenant, user_id)] = found.get(user_id)

    def known_sso_ids(
        self, company_sso_id: str, emails: Iterable[str]
    ) -> tuple[dict[str, str], tuple[str, ...]]:
        """The SSO ids already known among ``emails``, and the emails never answered (given order)."""
        known: dict[str, str] = {}
        unknown: list[str] = []
        for email in emails:
            key = (company_sso_id, email)
            if key not in self._sso_ids:
                unknown.append(email)
                continue
            sso_id = self._sso_ids[key]
            if sso_id is not None:
                known[email] = sso_id
        return known, tuple(unknown)

    def remember_sso_ids(self, company_sso_id: str, asked: Iterable[str], found: Mapping[str, str]) -> None:
        """Remember USMAN's answer for every email asked; call it only when USMAN did answer."""
        for email in asked:
            self._sso_ids[(company_sso_id, email)] = found.get(email)
