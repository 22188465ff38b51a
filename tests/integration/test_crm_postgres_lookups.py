"""Users, entity names and the people count, read from the corpus on a real server."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest

from crm_audit_adapters.crm_postgres import (
    PostgresEntityDirectory,
    PostgresPeopleCounter,
    PostgresUserDirectory,
    ReadOnlySession,
)
from crm_audit_transform.domain import CrmUser, EntityRef
from crm_audit_transform.errors import UnknownTenant
from support.postgres import corpus_records

pytestmark = pytest.mark.postgres

TENANTS = ("acme", "globex", "nusantara_retail")
ENTITY_TYPES = ("Crm::Person", "Crm::Company", "Crm::Deal", "Crm::Ticket", "Crm::Task")
HARD_DELETED_USERS = {"acme": {3}, "globex": {5, 6}, "nusantara_retail": {10}}
SOFT_DELETED_USERS = {"acme": {6}, "globex": {2}, "nusantara_retail": {2}}


@pytest.fixture(scope="module")
def session(crm_dsn: str) -> Iterator[ReadOnlySession]:
    with ReadOnlySession.from_dsn(crm_dsn) as session:
        yield session


def corpus_users(tenant: str) -> dict[int, CrmUser]:
    return {
        r["id"]: CrmUser(
            r["id"],
            r["email"],
            r["full_name"],
            None if r["deleted_at"] is None else dt.datetime.fromisoformat(r["deleted_at"]),
        )
        for r in corpus_records("users.jsonl")
        if r["tenant"] == tenant
    }


class TestUsers:
    @pytest.mark.parametrize("tenant", TENANTS)
    def test_users_by_ids_match_the_corpus_with_hard_deleted_ones_absent(
        self, session: ReadOnlySession, tenant: str
    ) -> None:
        """Every referenced id comes back as the tenant's user, except ids whose row is gone."""
        users = corpus_users(tenant)
        asked = set(range(1, max(users) + 3))
        found = PostgresUserDirectory(session).users_by_ids(tenant, asked)
        assert found == users
        assert HARD_DELETED_USERS[tenant] <= asked - found.keys()

    @pytest.mark.parametrize("tenant", TENANTS)
    def test_soft_deleted_users_are_returned_with_an_aware_deleted_at(
        self, session: ReadOnlySession, tenant: str
    ) -> None:
        """A soft-deleted user is present, with deleted_at in UTC."""
        found = PostgresUserDirectory(session).users_by_ids(tenant, SOFT_DELETED_USERS[tenant])
        assert found.keys() == SOFT_DELETED_USERS[tenant]
        assert all(
            user.deleted_at is not None and user.deleted_at.tzinfo is dt.UTC for user in found.values()
        )

    def test_no_ids_asks_nothing(self, session: ReadOnlySession) -> None:
        """An empty id set is an empty answer (and needs no valid tenant)."""
        assert PostgresUserDirectory(session).users_by_ids("no_such_tenant", []) == {}

    def test_unknown_tenant_is_refused(self, session: ReadOnlySession) -> None:
        """A tenant that is not a schema raises UnknownTenant."""
        with pytest.raises(UnknownTenant):
            PostgresUserDirectory(session).users_by_ids("acme; DROP TABLE acme.users", [1])

    def test_a_schema_without_the_crm_tables_is_an_unknown_tenant(self, session: ReadOnlySession) -> None:
        """``public`` exists but holds no CRM table: UnknownTenant (never retried), not an outage."""
        with pytest.raises(UnknownTenant, match="no table 'users'"):
            PostgresUserDirectory(session).users_by_ids("public", [1])
        with pytest.raises(UnknownTenant, match="no table 'crm_people'") as refused:
            PostgresPeopleCounter(session).count_people("public")
        assert refused.value.tenant == "public"


class TestEntities:
    @pytest.mark.parametrize("entity_type", ENTITY_TYPES)
    @pytest.mark.parametrize("tenant", TENANTS)
    def test_names_of_live_and_deleted_entities_match_the_corpus(
        self, session: ReadOnlySession, tenant: str, entity_type: str
    ) -> None:
        """Live entities carry their name (people: first and last); deleted ones are exists=False."""
        records = [
            r for r in corpus_records("entities.jsonl") if r["tenant"] == tenant and r["type"] == entity_type
        ]
        expected = {
            r["id"]: EntityRef(entity_type, r["id"], r["name"] if r["exists"] else None, exists=r["exists"])
            for r in records
        }
        found = PostgresEntityDirectory(session).entities_by_ids(tenant, entity_type, expected.keys())
        assert found == expected

    def test_deleted_entities_are_present_in_the_corpus(self) -> None:
        """The corpus really holds deleted entities of every type, so the test above exercises them."""
        gone = {r["type"] for r in corpus_records("entities.jsonl") if not r["exists"]}
        assert gone == set(ENTITY_TYPES)

    @pytest.mark.parametrize("entity_type", ["Crm::DealPerson", "User", "crm_deals", 'Crm::Deal"; --', ""])
    def test_types_outside_the_allowlist_are_never_queried(
        self, session: ReadOnlySession, entity_type: str
    ) -> None:
        """An entity type the allowlist does not name gives an empty answer, not a table name."""
        assert PostgresEntityDirectory(session).entities_by_ids("acme", entity_type, [1, 2]) == {}


class TestPeopleCounter:
    @pytest.mark.parametrize("tenant", TENANTS)
    def test_people_count_is_the_number_of_live_people(self, session: ReadOnlySession, tenant: str) -> None:
        """count_people counts the rows of crm_people: every person that still exists."""
        live = [
            r
            for r in corpus_records("entities.jsonl")
            if r["tenant"] == tenant and r["type"] == "Crm::Person" and r["exists"]
        ]
        assert PostgresPeopleCounter(session).count_people(tenant) == len(live)
