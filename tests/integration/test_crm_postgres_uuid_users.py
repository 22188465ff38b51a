"""UUID user ids (audited's ``--audited-user-id-column-type uuid``) from audits to actor, on a real server."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import psycopg
import pytest

from crm_audit_adapters.crm_postgres import PostgresAuditSource, PostgresUserDirectory, ReadOnlySession
from crm_audit_transform.config import load_default_config
from crm_audit_transform.domain import Contact, CrmUser, Migrated
from crm_audit_transform.lookup import LookupPorts, fetch_lookups
from crm_audit_transform.testing import InMemoryContactDirectory, InMemorySsoDirectory
from crm_audit_transform.transformer import Transformer
from support.postgres import throwaway_database

pytestmark = pytest.mark.postgres

USER = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
GONE = "00000000-0000-4000-8000-000000000000"
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def uuid_dsn(pg_server: str) -> Iterator[str]:
    with throwaway_database(pg_server, "uuid") as dsn:
        with psycopg.connect(dsn) as conn:
            conn.execute("CREATE SCHEMA uuid_crm")
            conn.execute(
                "CREATE TABLE uuid_crm.users (id uuid PRIMARY KEY, email varchar, full_name varchar,"
                " deleted_at timestamp)"
            )
            conn.execute(
                "CREATE TABLE uuid_crm.audits (id bigint PRIMARY KEY, auditable_id integer,"
                " auditable_type varchar, associated_id integer, associated_type varchar, user_id uuid,"
                " user_type varchar, username varchar, action varchar, audited_changes text,"
                " version integer, comment varchar, remote_address varchar, request_uuid varchar,"
                " created_at timestamp)"
            )
            conn.execute("INSERT INTO uuid_crm.users VALUES (%s, 'ani@example.test', 'Ani', NULL)", (USER,))
            for audit_id, user_id in ((1, USER), (2, GONE)):
                conn.execute(
                    "INSERT INTO uuid_crm.audits (id, auditable_id, auditable_type, user_id, user_type,"
                    " action, audited_changes, created_at) VALUES (%s, 7, 'Crm::Person', %s, 'User',"
                    " 'update', %s, '2020-01-01')",
                    (audit_id, user_id, "---\nfirst_name:\n- A\n- B\n"),
                )
        yield dsn


@pytest.fixture(scope="module")
def session(uuid_dsn: str) -> Iterator[ReadOnlySession]:
    with ReadOnlySession.from_dsn(uuid_dsn) as session:
        yield session


class TestUuidUserIds:
    def test_audit_rows_carry_the_uuid_as_an_opaque_string(self, session: ReadOnlySession) -> None:
        """A uuid user_id column arrives as its text, compared as is."""
        rows = PostgresAuditSource(session).page(
            "uuid_crm", ("Crm::Person",), after_id=0, cutoff=EPOCH, limit=5
        )
        assert [row.user_id for row in rows] == [USER, GONE]

    def test_users_lookup_answers_uuid_ids(self, session: ReadOnlySession) -> None:
        """The users lookup finds a UUID user and leaves a missing one out."""
        found = PostgresUserDirectory(session).users_by_ids("uuid_crm", [USER, GONE])
        assert found == {USER: CrmUser(USER, "ani@example.test", "Ani", None)}

    def test_the_actor_resolves_as_for_any_user(self, session: ReadOnlySession) -> None:
        """A UUID user with an SSO id is that SSO user; a UUID whose row is gone is a deleted user."""
        rows = PostgresAuditSource(session).page(
            "uuid_crm", ("Crm::Person",), after_id=0, cutoff=EPOCH, limit=5
        )
        transformer = Transformer(load_default_config())
        prepared = transformer.prepare(rows)
        contact = Contact("c7", "co", 7, dt.datetime(2030, 1, 1, tzinfo=dt.UTC))
        ctx = fetch_lookups(
            transformer.plan(prepared),
            company_sso_id="co",
            tenant="uuid_crm",
            ports=LookupPorts(
                PostgresUserDirectory(session),
                InMemorySsoDirectory({"ani@example.test": "sso-ani"}),
                InMemoryContactDirectory([contact]),
            ),
        )
        outcomes = transformer.transform(prepared, ctx, company_sso_id="co").outcomes
        assert all(isinstance(o, Migrated) for o in outcomes)
        actors = [o.log.actor for o in outcomes if isinstance(o, Migrated)]
        assert [(a.kind, a.name, a.sso_id) for a in actors] == [
            ("user", "Ani", "sso-ani"),
            ("deleted_user", "[Deleted CRM User]", None),
        ]
