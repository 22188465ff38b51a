"""The per-run lookup cache: each CRM user id and each email is asked at most once per run."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping

from crm_audit_transform.domain import AuditRow, Contact, CrmUser
from crm_audit_transform.errors import DirectoryUnavailable
from crm_audit_transform.lookup import LookupContext, LookupPorts, LookupRequest, fetch_lookups
from crm_audit_transform.lookup_cache import LookupCache
from crm_audit_transform.testing import (
    InMemoryContactDirectory,
    InMemorySsoDirectory,
    InMemoryUserDirectory,
)
from crm_audit_transform.usecases import RunSettings
from support.corpus_account import World

T0 = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
COMPANY = "co"
ANN = CrmUser(1, "ann@x.example", "Ann")
BOB = CrmUser(2, "bob@x.example", "Bob")
GONE = CrmUser(3, "gone@x.example", "Gone", deleted_at=T0)


class FailingOnce:
    """USMAN that is down for its first ``failures`` calls, then answers from ``inner``."""

    def __init__(self, inner: InMemorySsoDirectory, failures: int = 1) -> None:
        self.inner = inner
        self.failures = failures
        self.calls: list[tuple[str, tuple[str, ...]]] = []

    def sso_ids_by_emails(self, company_sso_id: str, emails: Collection[str]) -> Mapping[str, str]:
        self.calls.append((company_sso_id, tuple(emails)))
        if len(self.calls) <= self.failures:
            raise DirectoryUnavailable("USMAN timed out")
        return self.inner.sso_ids_by_emails(company_sso_id, emails)


def directories() -> tuple[InMemoryUserDirectory, InMemorySsoDirectory, InMemoryContactDirectory]:
    users = InMemoryUserDirectory({"acme": [ANN, BOB, GONE]})
    sso = InMemorySsoDirectory({"ann@x.example": "sso-ann"})  # Bob is unknown to USMAN
    contacts = InMemoryContactDirectory([Contact("c7", COMPANY, 7, T0)])
    return users, sso, contacts


def fetch(
    request: LookupRequest,
    cache: LookupCache,
    users: InMemoryUserDirectory,
    sso: InMemorySsoDirectory | FailingOnce,
    contacts: InMemoryContactDirectory,
) -> LookupContext:
    return fetch_lookups(
        request, company_sso_id=COMPANY, tenant="acme", ports=LookupPorts(users, sso, contacts), cache=cache
    )


class TestLookupCache:
    def test_remembers_found_and_not_found_users_per_tenant(self) -> None:
        """A user and "no such user" are both answers; another tenant's ids are still unknown."""
        cache = LookupCache()
        cache.remember_users("acme", [1, 9], {1: ANN})
        assert cache.known_users("acme", [1, 9, 4]) == ({1: ANN}, (4,))
        assert cache.known_users("globex", [1]) == ({}, (1,))

    def test_remembers_sso_answers_per_company(self) -> None:
        """An unknown email is remembered as unknown, within its company only."""
        cache = LookupCache()
        cache.remember_sso_ids(COMPANY, ["ann@x.example", "bob@x.example"], {"ann@x.example": "sso-ann"})
        assert cache.known_sso_ids(COMPANY, ["bob@x.example", "ann@x.example", "cy@x.example"]) == (
            {"ann@x.example": "sso-ann"},
            ("cy@x.example",),
        )
        assert cache.known_sso_ids("other", ["ann@x.example"]) == ({}, ("ann@x.example",))
        assert len(cache) == 2


class TestFetchLookupsWithCache:
    def test_a_second_page_with_the_same_users_asks_neither_users_nor_usman(self) -> None:
        """Page two names only users page one resolved: no user or SSO call, the same answers."""
        users, sso, contacts = directories()
        cache = LookupCache()
        request = LookupRequest(user_ids=(1, 2, 3, 99), person_ids=(7,))
        first = fetch(request, cache, users, sso, contacts)
        second = fetch(request, cache, users, sso, contacts)
        assert users.calls == [("acme", (1, 2, 3, 99))]
        assert sso.calls == [(COMPANY, ("ann@x.example", "bob@x.example"))]
        assert second == first
        assert len(contacts.calls) == 2  # contacts are read fresh for every page

    def test_only_ids_and_emails_never_answered_are_asked(self) -> None:
        """A page with one new user asks the directory and USMAN about that user alone."""
        users, sso, contacts = directories()
        cache = LookupCache()
        fetch(LookupRequest(user_ids=(1,)), cache, users, sso, contacts)
        ctx = fetch(LookupRequest(user_ids=(1, 2)), cache, users, sso, contacts)
        assert users.calls == [("acme", (1,)), ("acme", (2,))]
        assert sso.calls == [(COMPANY, ("ann@x.example",)), (COMPANY, ("bob@x.example",))]
        assert dict(ctx.users) == {1: ANN, 2: BOB}
        assert dict(ctx.sso_ids) == {"ann@x.example": "sso-ann"}

    def test_a_usman_failure_is_not_cached_and_the_next_page_asks_again(self) -> None:
        """USMAN down on page one degrades that page; page two asks USMAN again and resolves."""
        users, inner, contacts = directories()
        sso = FailingOnce(inner)
        cache = LookupCache()
        request = LookupRequest(user_ids=(1,))
        first = fetch(request, cache, users, sso, contacts)
        second = fetch(request, cache, users, sso, contacts)
        assert (first.sso_available, dict(first.sso_ids)) == (False, {})
        assert (second.sso_available, dict(second.sso_ids)) == (True, {"ann@x.example": "sso-ann"})
        assert sso.calls == [(COMPANY, ("ann@x.example",)), (COMPANY, ("ann@x.example",))]
        assert users.calls == [("acme", (1,))]  # the users' answer was kept

    def test_without_a_cache_every_call_asks_again(self) -> None:
        """Callers that pass no cache (explain, one-off lookups) get the plain one-call-per-port lookup."""
        users, sso, contacts = directories()
        for _ in range(2):
            fetch_lookups(
                LookupRequest(user_ids=(1,)),
                company_sso_id=COMPANY,
                tenant="acme",
                ports=LookupPorts(users, sso, contacts),
            )
        assert len(users.calls) == len(sso.calls) == 2


def row(audit_id: int, user_id: int) -> AuditRow:
    return AuditRow(
        tenant="acme",
        id=audit_id,
        auditable_type="Crm::Person",
        auditable_id=1,
        action="create",
        audited_changes="---\nfirst_name: Ann\n",
        created_at=T0 + dt.timedelta(minutes=audit_id),
        user_id=user_id,
        user_type="User",
    )


class TestRunLoopCache:
    def test_a_run_asks_for_each_user_and_email_once_across_pages(self) -> None:
        """Three pages by the same user: one user call and one SSO call, but contacts every page."""
        world = World(rows=[row(i, 1) for i in range(1, 7)])
        world.trigger()
        world.contacts.calls.clear()  # the coverage guard's own lookup, before the run
        job = world.run(settings=RunSettings(page_size=2, halt_threshold=1.0)).job
        assert job.tally.processed == 6
        assert world.users.calls == [("acme", (1,))]
        assert len(world.sso.calls) == 1
        assert len(world.contacts.calls) == 3
        assert {log.actor.kind for log in world.logs.logs} == {"user"}

    def test_a_usman_failure_on_page_one_is_retried_on_page_two(self) -> None:
        """Page one's actors degrade while USMAN is down; page two asks again and resolves them."""
        world = World(rows=[row(i, 1) for i in range(1, 5)])
        world.sso = FailingOnce(world.sso)  # type: ignore[assignment]
        world.trigger()
        world.run(settings=RunSettings(page_size=2, halt_threshold=1.0))
        assert len(world.sso.calls) == 2
        kinds = [log.actor.kind for log in world.logs.logs]
        assert kinds == ["deleted_user", "deleted_user", "user", "user"]

    def test_a_new_run_starts_with_an_empty_cache(self) -> None:
        """The cache belongs to one run: a resumed job asks the directories afresh."""
        world = World(rows=[row(i, 1) for i in range(1, 5)])
        world.trigger()
        world.run(settings=RunSettings(page_size=2, halt_threshold=1.0), should_stop=lambda: True)
        world.run(settings=RunSettings(page_size=2, halt_threshold=1.0))
        assert world.users.calls == [("acme", (1,)), ("acme", (1,))]
