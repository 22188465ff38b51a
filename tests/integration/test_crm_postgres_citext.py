"""``citext`` text columns are read, as they were before the audits table's types were checked.

Since that check, an ``audits`` table whose ``auditable_type``, ``audited_changes`` or ``comment`` is
the citext extension's type was refused as ``UNKNOWN_TENANT`` ("its audits.auditable_type is
public.citext, not …"): the extension's type is text to every query. A domain over it is read too;
an array of it, or another type that is merely named ``citext``, is still refused.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from crm_audit_adapters.crm_postgres import PostgresAuditSource, ReadOnlySession
from crm_audit_transform.errors import UnknownTenant
from crm_audit_transform.loading import load_audited_changes
from support.postgres import create_audits, throwaway_database

pytestmark = pytest.mark.postgres

SCOPE = ("Crm::Person",)
CUTOFF = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
READ = {
    # The extension in a schema off the search_path: format_type names it "ext.citext".
    "off_path": ("ext.citext", "ext.citext", "ext.citext"),
    "domain": ("ext_name", "ext.citext", "varchar"),
}
"""Tenant → the types of auditable_type, audited_changes and comment."""
REFUSED = {
    "array": ("ext.citext[]", "auditable_type", "ext.citext[]"),
    "impostor": ("fake.citext", "auditable_type", "fake.citext"),
}
"""Tenant → (auditable_type's type, the column named, the type named in the refusal)."""


@pytest.fixture(scope="module")
def citext_dsn(pg_server: str) -> Iterator[str]:
    with throwaway_database(pg_server, "citext") as dsn:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE SCHEMA ext; CREATE EXTENSION citext SCHEMA ext")
            conn.execute("CREATE DOMAIN ext_name AS ext.citext")
            conn.execute("CREATE SCHEMA fake; CREATE TYPE fake.citext AS ENUM ('Crm::Person')")
            tables = {
                **READ,
                **{tenant: (kind, "text", "varchar") for tenant, (kind, _, _) in REFUSED.items()},
            }
            for tenant, (type_kind, changes_kind, comment_kind) in tables.items():
                create_audits(
                    conn, tenant, auditable_type=type_kind, audited_changes=changes_kind, comment=comment_kind
                )
            for tenant in READ:
                conn.execute(
                    sql.SQL(
                        "INSERT INTO {}.audits (id, auditable_id, auditable_type, action, audited_changes,"
                        " comment, created_at) VALUES (1, 7, 'Crm::Person', 'update', %s, 'Said so', %s)"
                    ).format(sql.Identifier(tenant)),
                    ("---\nname:\n- Ann\n- Anne\n", dt.datetime(2021, 1, 1)),
                )
        yield dsn


@pytest.mark.parametrize("tenant", list(READ))
def test_citext_columns_are_read_as_text(citext_dsn: str, tenant: str) -> None:
    with ReadOnlySession.from_dsn(citext_dsn) as session:
        source = PostgresAuditSource(session)
        bounds = source.scope_bounds(tenant, SCOPE, CUTOFF)
        [row] = source.page(tenant, SCOPE, after_id=0, cutoff=CUTOFF, limit=10)
        assert source.audit_by_id(tenant, 1) == row
    assert bounds is not None
    assert bounds.count == 1
    assert (row.auditable_type, row.comment) == ("Crm::Person", "Said so")
    assert load_audited_changes(row.audited_changes) == {"name": ["Ann", "Anne"]}


@pytest.mark.parametrize("tenant", list(REFUSED))
def test_an_array_of_citext_or_a_type_merely_named_so_is_refused(citext_dsn: str, tenant: str) -> None:
    _, column, named = REFUSED[tenant]
    with ReadOnlySession.from_dsn(citext_dsn) as session, pytest.raises(UnknownTenant) as refused:
        PostgresAuditSource(session).page(tenant, SCOPE, after_id=0, cutoff=CUTOFF, limit=10)
    assert f"its audits.{column} is {named}, not " in str(refused.value)
