"""A tenant naming a PostgreSQL system schema is refused as one, before any query."""

from __future__ import annotations

import psycopg
import pytest

from crm_audit_adapters.crm_postgres.session import ReadOnlySession
from crm_audit_transform.errors import UnknownTenant


def no_connection() -> psycopg.Connection:
    raise AssertionError("a name refused by its spelling opens no connection")


class TestNamesRefusedWithoutAQuery:
    @pytest.mark.parametrize("tenant", ["pg_catalog", "pg_toast", "pg_temp_3", "information_schema"])
    def test_a_system_schema_is_refused_as_a_system_schema(self, tenant: str) -> None:
        """``pg_catalog`` exists, so its refusal says it is PostgreSQL's own, not "no such schema"."""
        with pytest.raises(UnknownTenant) as refused:
            ReadOnlySession(no_connection).schema(tenant, "audits")
        assert refused.value.tenant == tenant
        assert str(refused.value) == (
            f"unknown CRM tenant {tenant!r}: a PostgreSQL system schema (the pg_ prefix and "
            "information_schema are PostgreSQL's own), never a CRM tenant schema"
        )

    @pytest.mark.parametrize("tenant", ["", "acme\x00"])
    def test_a_name_no_schema_can_have_is_no_such_schema(self, tenant: str) -> None:
        """An empty name, or one with a NUL, names no schema at all."""
        with pytest.raises(UnknownTenant, match=r"no such schema\Z") as refused:
            ReadOnlySession(no_connection).schema(tenant, "audits")
        assert refused.value.tenant == tenant

    def test_a_capitalised_prefix_is_no_system_schema(self) -> None:
        """PostgreSQL reserves ``pg_`` as written: ``PG_catalog`` is an ordinary name, asked of the
        catalog (here: a connection is opened for it)."""
        with pytest.raises(AssertionError, match="opens no connection"):
            ReadOnlySession(no_connection).schema("PG_catalog", "audits")
