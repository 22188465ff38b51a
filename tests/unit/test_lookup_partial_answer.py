"""A USMAN answer that is no answer for some emails only: those actors degrade, the rest resolve."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping

from crm_audit_transform.config import load_default_config
from crm_audit_transform.domain import AuditRow, CrmUser
from crm_audit_transform.errors import DirectoryUnavailable
from crm_audit_transform.lookup import LookupContext, LookupPorts, LookupRequest, fetch_lookups
from crm_audit_transform.lookup_cache import LookupCache
from crm_audit_transform.rules.actor import ActorResolver
from crm_audit_transform.testing import InMemoryContactDirectory, InMemoryUserDirectory

T0 = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
ANN = CrmUser(1, "ann@x.example", "Ann")  # answered: an SSO id
BOB = CrmUser(2, "bob@x.example", "Bob")  # answered: unknown to USMAN
CY = CrmUser(3, "cy@x.example", "Cy")  # an entry that is no answer (its sso_id is no id)
RESOLVER = ActorResolver(load_default_config())


class PartlyAnswering:
    """USMAN whose answer is sound but for ``bad`` emails: ``DirectoryUnavailable`` with the rest."""

    def __init__(self, known: Mapping[str, str], bad: Collection[str]) -> None:
        self.known = dict(known)
        self.bad = set(bad)
        self.calls: list[tuple[str, ...]] = []

    def sso_ids_by_emails(self, company_sso_id: str, emails: Collection[str]) -> Mapping[str, str]:
        self.calls.append(tuple(emails))
        found = {email: self.known[email] for email in emails if email in self.known}
        bad = [email for email in emails if email in self.bad]
        if bad:
            raise DirectoryUnavailable("an entry is no answer", answered=found, unanswered=bad)
        return found


def row(audit_id: int, user_id: int) -> AuditRow:
    return AuditRow(
        tenant="acme",
        id=audit_id,
        auditable_type="Crm::Deal",
        auditable_id=1,
        action="update",
        audited_changes={"name": ["a", "b"]},
        created_at=T0,
        user_id=user_id,
        user_type="User",
    )


def fetch(sso: PartlyAnswering, cache: LookupCache) -> LookupContext:
    return fetch_lookups(
        LookupRequest(user_ids=(1, 2, 3)),
        company_sso_id="co",
        tenant="acme",
        ports=LookupPorts(InMemoryUserDirectory({"acme": [ANN, BOB, CY]}), sso, InMemoryContactDirectory()),
        cache=cache,
    )


class TestPartialAnswer:
    def test_only_the_unanswered_emails_actor_degrades(self) -> None:
        """Ann resolves to her SSO user, Bob (unknown) is the deleted user and not degraded, Cy (no
        answer) is the deleted user and degraded. Before, the one bad entry degraded all three
        (the whole answer refused): this test fails there."""
        sso = PartlyAnswering({"ann@x.example": "sso-ann"}, bad={"cy@x.example"})
        ctx = fetch(sso, LookupCache())
        assert dict(ctx.sso_ids) == {"ann@x.example": "sso-ann"}
        assert (ctx.sso_available, ctx.sso_unanswered) == (False, frozenset({"cy@x.example"}))
        ann, bob, cy = (RESOLVER.resolve_counted(row(n, n), ctx) for n in (1, 2, 3))
        assert (ann[0].kind, ann[0].sso_id, ann[1]) == ("user", "sso-ann", False)
        assert (bob[0].kind, bob[1]) == ("deleted_user", False)
        assert (cy[0].kind, cy[1]) == ("deleted_user", True)

    def test_the_answered_emails_are_remembered_and_only_the_others_asked_again(self) -> None:
        """The next page asks USMAN about Cy only; Ann and Bob's answers are kept for the run."""
        sso = PartlyAnswering({"ann@x.example": "sso-ann", "cy@x.example": "sso-cy"}, bad={"cy@x.example"})
        cache = LookupCache()
        fetch(sso, cache)
        sso.bad.clear()
        second = fetch(sso, cache)
        assert sso.calls == [("ann@x.example", "bob@x.example", "cy@x.example"), ("cy@x.example",)]
        assert dict(second.sso_ids) == {"ann@x.example": "sso-ann", "cy@x.example": "sso-cy"}
        assert second.sso_available

    def test_a_whole_outage_does_not_degrade_an_email_already_answered_unknown(self) -> None:
        """USMAN down on a later page: an email it answered "unknown" before is no degraded actor (its
        answer is the run's), the emails it has not answered are."""
        sso = PartlyAnswering({}, bad=())
        cache = LookupCache()
        fetch_lookups(
            LookupRequest(user_ids=(2,)),
            company_sso_id="co",
            tenant="acme",
            ports=LookupPorts(InMemoryUserDirectory({"acme": [BOB]}), sso, InMemoryContactDirectory()),
            cache=cache,
        )
        sso.bad = {"ann@x.example", "cy@x.example"}  # every email it is asked: a whole outage
        ctx = fetch(sso, cache)
        assert sso.calls[-1] == ("ann@x.example", "cy@x.example")
        assert not RESOLVER.resolve_counted(row(2, 2), ctx)[1]
        assert RESOLVER.resolve_counted(row(1, 1), ctx)[1]

    def test_a_plain_outage_leaves_every_asked_email_unanswered(self) -> None:
        """A ``DirectoryUnavailable`` without ``unanswered`` is the whole call's: all three asked degrade."""

        class Down(PartlyAnswering):
            def sso_ids_by_emails(self, company_sso_id: str, emails: Collection[str]) -> Mapping[str, str]:
                raise DirectoryUnavailable("down")

        ctx = fetch(Down({}, ()), LookupCache())
        assert ctx.sso_unanswered == {"ann@x.example", "bob@x.example", "cy@x.example"}
        assert [RESOLVER.resolve_counted(row(n, n), ctx)[1] for n in (1, 2, 3)] == [True, True, True]
