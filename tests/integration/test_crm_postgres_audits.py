"""PostgresAuditSource against a real server loaded with the audited 5.8.0 corpus."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
import pytest
from psycopg import sql

from crm_audit_adapters.crm_postgres import PostgresAuditSource, ReadOnlySession, text_columns
from crm_audit_transform.domain import AuditRow, ScopeBounds
from crm_audit_transform.errors import UnknownTenant
from crm_audit_transform.usecases.pages import PageSpan
from support.postgres import corpus_records, expected_audit_row

pytestmark = pytest.mark.postgres

TENANTS = ("acme", "globex", "nusantara_retail")
ALL_TYPES = (
    "Crm::Company", "Crm::CompanyPerson", "Crm::Deal", "Crm::DealPerson", "Crm::Person",
    "Crm::Task", "Crm::TaskPerson", "Crm::Ticket", "Crm::TicketPerson",
)  # fmt: skip
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def source(crm_dsn: str) -> Iterator[PostgresAuditSource]:
    with ReadOnlySession.from_dsn(crm_dsn) as session:
        yield PostgresAuditSource(session)


def read_all(
    source: PostgresAuditSource, tenant: str, scope: Sequence[str], *, cutoff: dt.datetime, limit: int
) -> list[AuditRow]:
    rows: list[AuditRow] = []
    after_id = 0
    while page := source.page(tenant, scope, after_id=after_id, cutoff=cutoff, limit=limit):
        assert len(page) <= limit
        rows.extend(page)
        after_id = page[-1].id
    return rows


def expected(tenant: str, scope: Sequence[str], cutoff: dt.datetime = EPOCH) -> list[AuditRow]:
    rows = (expected_audit_row(r) for r in corpus_records("audits.jsonl") if r["tenant"] == tenant)
    return [row for row in rows if row.auditable_type in scope and row.created_at >= cutoff]


class TestPages:
    @pytest.mark.parametrize("limit", [7, 500])
    @pytest.mark.parametrize("tenant", TENANTS)
    def test_pages_return_every_row_once_in_id_order_with_every_column(
        self, source: PostgresAuditSource, tenant: str, limit: int
    ) -> None:
        """Keyset pages of 7 and 500 return each audit of the tenant exactly once, byte-exact."""
        rows = read_all(source, tenant, ALL_TYPES, cutoff=EPOCH, limit=limit)
        assert rows == expected(tenant, ALL_TYPES)

    def test_a_query_is_built_once_for_each_table_and_read(
        self, crm_dsn: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Pages, page ids and spans over two tenants build each tenant's query once for each kind
        of read (~0.2 ms a page rebuilt), and still read every row once."""
        built: list[str] = []
        bounded = text_columns.bounded

        def counting(*args: Any, **kwargs: Any) -> Any:
            built.append("built")
            return bounded(*args, **kwargs)

        monkeypatch.setattr(text_columns, "bounded", counting)
        with ReadOnlySession.from_dsn(crm_dsn) as session:
            source = PostgresAuditSource(session)
            for tenant in ("acme", "globex"):
                assert read_all(source, tenant, ALL_TYPES, cutoff=EPOCH, limit=7) == expected(
                    tenant, ALL_TYPES
                )
                ids = source.page_ids(tenant, ALL_TYPES, after_id=0, cutoff=EPOCH, limit=7)
                ids = source.page_ids(tenant, ALL_TYPES, after_id=ids[-1], cutoff=EPOCH, limit=7)
                for _ in range(2):
                    span = PageSpan(tenant, tuple(ALL_TYPES), EPOCH, tuple(ids))
                    assert [row.id for row in source.span_rows(span)] == ids
        assert len(built) == 2 * 3

    def test_created_at_is_aware_utc(self, source: PostgresAuditSource) -> None:
        """created_at comes back timezone-aware in UTC although the column has no time zone."""
        (row,) = source.page("acme", ALL_TYPES, after_id=0, cutoff=EPOCH, limit=1)
        assert row.created_at == dt.datetime(2019, 1, 4, 5, 44, 28, 125496, tzinfo=dt.UTC)
        assert row.created_at.utcoffset() == dt.timedelta(0)

    def test_scope_keeps_only_the_listed_auditable_types(self, source: PostgresAuditSource) -> None:
        """Only rows whose auditable_type is in scope are returned."""
        scope = ("Crm::Deal", "Crm::DealPerson")
        rows = read_all(source, "globex", scope, cutoff=EPOCH, limit=50)
        assert {row.auditable_type for row in rows} == set(scope)
        assert rows == expected("globex", scope)

    def test_empty_scope_reads_nothing(self, source: PostgresAuditSource) -> None:
        """An empty scope is an empty page, not every row."""
        assert source.page("acme", (), after_id=0, cutoff=EPOCH, limit=10) == ()

    def test_cutoff_is_inclusive_and_excludes_older_rows(self, source: PostgresAuditSource) -> None:
        """Rows created before the cutoff are left out; a row created exactly at it is kept."""
        middle = expected("nusantara_retail", ALL_TYPES)[400]
        rows = read_all(source, "nusantara_retail", ALL_TYPES, cutoff=middle.created_at, limit=100)
        assert middle in rows
        assert all(row.created_at >= middle.created_at for row in rows)
        assert rows == expected("nusantara_retail", ALL_TYPES, middle.created_at)

    def test_cutoff_in_another_zone_means_the_same_instant(self, source: PostgresAuditSource) -> None:
        """A cutoff given in UTC+7 selects the same rows as the same instant in UTC."""
        middle = expected("acme", ALL_TYPES)[300].created_at
        jakarta = middle.astimezone(dt.timezone(dt.timedelta(hours=7)))
        assert read_all(source, "acme", ALL_TYPES, cutoff=jakarta, limit=500) == expected(
            "acme", ALL_TYPES, middle
        )

    def test_naive_cutoff_is_refused(self, source: PostgresAuditSource) -> None:
        """A naive cutoff is ambiguous and raises instead of guessing a zone."""
        with pytest.raises(ValueError, match="timezone-aware"):
            source.page("acme", ALL_TYPES, after_id=0, cutoff=dt.datetime(2020, 1, 1), limit=5)

    def test_cursor_past_the_last_id_gives_an_empty_page(self, source: PostgresAuditSource) -> None:
        """After the highest id there is nothing more to read."""
        assert source.page("acme", ALL_TYPES, after_id=759, cutoff=EPOCH, limit=5) == ()


class TestTenants:
    def test_each_tenant_reads_only_its_own_schema(self, source: PostgresAuditSource) -> None:
        """Ids restart per tenant, yet audit 1 of each tenant is that tenant's own row."""
        firsts = [source.audit_by_id(tenant, 1) for tenant in TENANTS]
        assert firsts == [expected(tenant, ALL_TYPES)[0] for tenant in TENANTS]
        assert len({row.request_uuid for row in firsts if row is not None}) == len(TENANTS)

    def test_audit_by_id_returns_none_for_a_missing_id(self, source: PostgresAuditSource) -> None:
        """An id beyond the table is None, not an error."""
        assert source.audit_by_id("acme", 10_000) is None

    @pytest.mark.parametrize(
        "tenant",
        [
            'acme"; DROP SCHEMA globex CASCADE; --',
            "acme.audits",
            "acme; SELECT 1",
            "ACME",
            "pg_catalog",
            "information_schema",
            "",
            "acme\x00",
            "missing_tenant",
            "public",  # a schema, but without the CRM's tables
        ],
    )
    def test_a_name_that_is_not_a_tenant_schema_is_refused(
        self, source: PostgresAuditSource, crm_dsn: str, tenant: str
    ) -> None:
        """Hostile or unknown tenant names raise UnknownTenant and touch nothing."""
        with pytest.raises(UnknownTenant) as refused:
            source.page(tenant, ALL_TYPES, after_id=0, cutoff=EPOCH, limit=5)
        assert refused.value.tenant == tenant
        with psycopg.connect(crm_dsn) as conn:
            counts = [
                conn.execute(sql.SQL("SELECT count(*) FROM {}.audits").format(sql.Identifier(t))).fetchone()
                for t in TENANTS
            ]
        assert counts == [(759,), (843,), (801,)]

    def test_scope_values_that_look_like_sql_stay_data(self, source: PostgresAuditSource) -> None:
        """Quotes and statements in scope values match no type and run nothing."""
        scope = ("Crm::Task", "x' OR '1'='1", "Crm::Deal'); DROP TABLE acme.audits; --", "%", "Crm::%")
        rows = read_all(source, "acme", scope, cutoff=EPOCH, limit=100)
        assert rows == expected("acme", ("Crm::Task",))
        assert source.audit_by_id("acme", 759) is not None


class TestScopeBounds:
    def test_bounds_span_the_in_scope_rows_after_the_cutoff(self, source: PostgresAuditSource) -> None:
        """min/max id, oldest created_at and count describe exactly the rows pages will return."""
        scope = ("Crm::Ticket", "Crm::TicketPerson")
        cutoff = expected("globex", ALL_TYPES)[200].created_at
        rows = expected("globex", scope, cutoff)
        assert source.scope_bounds("globex", scope, cutoff) == ScopeBounds(
            min_id=rows[0].id,
            max_id=rows[-1].id,
            oldest_created_at=min(row.created_at for row in rows),
            count=len(rows),
        )

    def test_without_cutoff_the_oldest_in_scope_audit_starts(self, source: PostgresAuditSource) -> None:
        """No cutoff means every in-scope row counts."""
        bounds = source.scope_bounds("acme", ALL_TYPES, None)
        assert bounds is not None
        assert (bounds.min_id, bounds.max_id, bounds.count) == (1, 759, 759)
        assert bounds.oldest_created_at == dt.datetime(2019, 1, 4, 5, 44, 28, 125496, tzinfo=dt.UTC)

    def test_no_in_scope_rows_gives_none(self, source: PostgresAuditSource) -> None:
        """A scope or cutoff that selects nothing has no bounds."""
        assert source.scope_bounds("acme", ("Crm::Nothing",), None) is None
        assert source.scope_bounds("acme", ALL_TYPES, dt.datetime(2030, 1, 1, tzinfo=dt.UTC)) is None
        assert source.scope_bounds("acme", (), None) is None
