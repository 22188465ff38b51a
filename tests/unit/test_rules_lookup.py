"""Batched lookups: plan names every id of a page, fetch_lookups asks each port at most once."""

from __future__ import annotations

import datetime as dt

from crm_audit_transform.config import load_default_config
from crm_audit_transform.domain import AuditRow, Contact, CrmUser
from crm_audit_transform.lookup import LookupPorts, LookupRequest, fetch_lookups
from crm_audit_transform.testing import (
    InMemoryContactDirectory,
    InMemorySsoDirectory,
    InMemoryUserDirectory,
)
from crm_audit_transform.transformer import Transformer

T0 = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
TRANSFORMER = Transformer(load_default_config())


def audit(audit_id: int, **fields: object) -> AuditRow:
    values: dict[str, object] = {
        "tenant": "acme",
        "id": audit_id,
        "auditable_type": "Crm::Deal",
        "auditable_id": 1,
        "action": "update",
        "audited_changes": {"crm_person_id": [3, None]},
        "created_at": T0,
    }
    values.update(fields)
    return AuditRow(**values)  # type: ignore[arg-type]


class TestPlan:
    def test_names_every_user_and_person_of_the_page_once(self) -> None:
        """Comment, changes (new else old), associated and auditable person ids are all planned."""
        rows = [
            audit(1, user_id=4, user_type="User", comment='{"crm_person_id": "8"}'),
            audit(2, user_id=4, user_type="User", associated_type="Crm::Person", associated_id=9),
            audit(3, auditable_type="Crm::Person", auditable_id=10, audited_changes={}, user_id=6),
        ]
        request = TRANSFORMER.plan(TRANSFORMER.prepare(rows))
        assert request == LookupRequest(user_ids=(4,), person_ids=(3, 8, 9, 10))

    def test_out_of_scope_and_broken_rows_need_nothing(self) -> None:
        """Rows that cannot migrate do not cost lookups."""
        rows = [audit(1, auditable_type="Crm::Note", user_id=1, user_type="User"), audit(2, id="x")]
        assert TRANSFORMER.plan(TRANSFORMER.prepare(rows)) == LookupRequest()


class TestFetchLookups:
    def test_asks_each_port_once_with_only_active_users_emails(self) -> None:
        """Users, then SSO for the emails of found non-deleted users, then contacts: one call each."""
        users = InMemoryUserDirectory(
            {"acme": [CrmUser(1, "a@x.example"), CrmUser(2, "b@x.example", deleted_at=T0)]}
        )
        sso = InMemorySsoDirectory({"a@x.example": "sso-a"})
        contacts = InMemoryContactDirectory([Contact("c3", "co", 3, T0), Contact("other", "co-2", 4, T0)])
        ctx = fetch_lookups(
            LookupRequest(user_ids=(1, 2, 7), person_ids=(3, 4)),
            company_sso_id="co",
            tenant="acme",
            ports=LookupPorts(users, sso, contacts),
        )
        assert users.calls == [("acme", (1, 2, 7))]
        assert sso.calls == [("co", ("a@x.example",))]
        assert contacts.calls == [("co", (3, 4))]
        assert set(ctx.users) == {1, 2}
        assert ctx.sso_ids == {"a@x.example": "sso-a"}
        assert set(ctx.contacts) == {3}  # never another company's contact

    def test_sso_outage_degrades_instead_of_raising(self) -> None:
        """DirectoryUnavailable from SSO leaves no SSO ids and marks the context."""
        ctx = fetch_lookups(
            LookupRequest(user_ids=(1,)),
            company_sso_id="co",
            tenant="acme",
            ports=LookupPorts(
                InMemoryUserDirectory({"acme": [CrmUser(1, "a@x.example")]}),
                InMemorySsoDirectory({"a@x.example": "sso-a"}, failing=True),
                InMemoryContactDirectory(),
            ),
        )
        assert (ctx.sso_ids, ctx.sso_available) == ({}, False)

    def test_empty_request_calls_no_port(self) -> None:
        """A page needing nothing makes no round trip."""
        users, sso, contacts = InMemoryUserDirectory(), InMemorySsoDirectory(), InMemoryContactDirectory()
        fetch_lookups(
            LookupRequest(), company_sso_id="co", tenant="acme", ports=LookupPorts(users, sso, contacts)
        )
        assert users.calls == sso.calls == contacts.calls == []
