"""An ``audited_changes`` above the loader's byte limit is measured by PostgreSQL, never fetched.

Before, a 150 MiB value was fetched whole (``explain`` peaked at ~507 MiB, a run at ~706 MiB) for
the loader to refuse it as ``LimitExceeded``. Now the query sends its size instead and the row
carries ``OmittedChanges``: the same refusal (reason, limit, the size the loader would have seen),
the same pages and the same run, for every column type the session accepts.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from crm_audit_adapters.bootstrap import Runtime
from crm_audit_adapters.crm_postgres import PostgresAuditSource, PostgresUserDirectory, ReadOnlySession
from crm_audit_adapters.settings import load_settings
from crm_audit_transform import Transformer, load_default_config
from crm_audit_transform.errors import AuditedChangesError, LimitExceeded
from crm_audit_transform.jobs import COMPLETED
from crm_audit_transform.loading import LoaderLimits, OmittedChanges, load_audited_changes
from crm_audit_transform.ports import AuditSource
from crm_audit_transform.usecases import RunSettings
from crm_audit_transform.usecases.pages import PageSpan
from support.corpus_account import World
from support.postgres import create_audits, throwaway_database

pytestmark = pytest.mark.postgres

SCOPE = ("Crm::Person",)
CUTOFF = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
LIMIT = 1000
"""The loader's ``max_bytes`` in these tests, and the source's ``max_changes_bytes``."""
NEVER = LoaderLimits.MAXIMA["max_bytes"]
"""A source limit no value here reaches: every value fetched, as before."""
TYPES = {
    "text": "text",
    "varchar": "varchar",
    "citext": "citext",
    "padded": "character(6000)",
    "json": "json",
    "jsonb": "jsonb",
    "jsonb_domain": "changes_doc",
    "bytea": "bytea",
}
"""Each tenant's ``audited_changes`` type: every one the session accepts (a domain over jsonb too)."""


def yaml_of(body: str) -> str:
    return f"---\nnotes: {body}\n"


def json_of(body: str) -> str:
    return json.dumps({"notes": body}, ensure_ascii=False)  # jsonb renders this very text


def values(kind: str) -> dict[int, str | None]:
    """Row id → value: small, far over, exactly at the limit, one byte over, over in bytes while
    under in characters (two-byte ``é``), and NULL."""
    build = json_of if kind in ("json", "jsonb", "jsonb_domain") else yaml_of
    fixed = len(build(""))
    return {
        1: build("a"),
        2: build("x" * 5000),
        3: build("y" * (LIMIT - fixed)),
        4: build("z" * (LIMIT - fixed + 1)),
        5: build("é" * 600),
        6: None,
    }


@pytest.fixture(scope="module")
def sized_dsn(pg_server: str) -> Iterator[str]:
    with throwaway_database(pg_server, "omitted") as dsn:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION citext; CREATE DOMAIN changes_doc AS jsonb")
            for schema, kind in TYPES.items():
                create_audits(conn, schema, audited_changes=kind)
                for audit_id, value in values(schema).items():
                    stored: Any = value.encode() if schema == "bytea" and value is not None else value
                    conn.execute(
                        sql.SQL(
                            "INSERT INTO {}.audits (id, auditable_id, auditable_type, action,"
                            " audited_changes, created_at) VALUES (%s, 7, 'Crm::Person', 'update', %s, %s)"
                        ).format(sql.Identifier(schema)),
                        (audit_id, stored, dt.datetime(2021, 1, 1)),
                    )
        yield dsn


def outcome(value: object) -> tuple[str, Any]:
    """What the transformer's loader makes of a row's value under ``LIMIT``."""
    try:
        return "loaded", load_audited_changes(value, LoaderLimits(max_bytes=LIMIT))  # type: ignore[arg-type]
    except LimitExceeded as exc:
        return exc.reason, (exc.limit, exc.maximum, exc.actual)
    except AuditedChangesError as exc:
        return exc.reason, str(exc)


def same_refusal(before: tuple[str, Any], after: tuple[str, Any]) -> bool:
    """Equal outcomes; a ``LimitExceeded`` whose fetched text did not say its size may now say it."""
    if before[0] == after[0] == "limit_exceeded" and before[1][2] is None:
        return bool(before[1][:2] == after[1][:2] and after[1][2] is not None)
    return before == after


def pages(source: AuditSource, tenant: str) -> list[list[int]]:
    """The ids of each page a run reads, to the first empty page."""
    found: list[list[int]] = []
    after = 0
    while rows := source.page(tenant, SCOPE, after_id=after, cutoff=CUTOFF, limit=4):
        found.append([row.id for row in rows])
        after = rows[-1].id
    return found


@pytest.mark.parametrize("tenant", list(TYPES))
class TestOmittedChanges:
    def test_a_value_over_the_limit_comes_as_its_size(self, sized_dsn: str, tenant: str) -> None:
        """Rows 2, 4 and 5 (over by characters, by one byte, by bytes alone) come as their UTF-8 size;
        row 3, exactly at the limit, and the others come as their values."""
        with ReadOnlySession.from_dsn(sized_dsn) as session:
            rows = PostgresAuditSource(session, max_changes_bytes=LIMIT).page(
                tenant, SCOPE, after_id=0, cutoff=CUTOFF, limit=10
            )
        omitted = {
            row.id: row.audited_changes for row in rows if isinstance(row.audited_changes, OmittedChanges)
        }
        expected = {
            audit_id: OmittedChanges(len(value.encode()), LIMIT)
            for audit_id, value in values(tenant).items()
            if value is not None and len(value.encode()) > LIMIT
        }
        if tenant == "padded":  # character(6000): every value is sent padded to 6000 characters
            expected = {
                audit_id: OmittedChanges(6000 + len(value.encode()) - len(value), LIMIT)
                for audit_id, value in values(tenant).items()
                if value is not None
            }
        assert omitted == expected
        assert set(expected) >= {2, 4, 5}

    def test_every_read_refuses_each_row_as_the_fetched_text_was(self, sized_dsn: str, tenant: str) -> None:
        """A page, a span (the page pool's read by id) and explain's read by id: each row's loader
        outcome is the one of its fetched value, and the pages are the same pages."""
        with ReadOnlySession.from_dsn(sized_dsn) as session:
            short = [
                PostgresAuditSource(session, max_changes_bytes=m, page_bytes=2500) for m in (NEVER, LIMIT)
            ]
            assert pages(short[1], tenant) == pages(short[0], tenant)
            before = PostgresAuditSource(session, max_changes_bytes=NEVER)
            after = PostgresAuditSource(session, max_changes_bytes=LIMIT)
            ids = after.page_ids(tenant, SCOPE, after_id=0, cutoff=CUTOFF, limit=10)
            assert ids == before.page_ids(tenant, SCOPE, after_id=0, cutoff=CUTOFF, limit=10)
            span = PageSpan(tenant, SCOPE, CUTOFF, tuple(range(1, 7)))
            for read in (
                lambda source: source.page(tenant, SCOPE, after_id=0, cutoff=CUTOFF, limit=10),
                lambda source: source.span_rows(span),
                lambda source: [source.audit_by_id(tenant, audit_id) for audit_id in range(1, 7)],
            ):
                old = [outcome(row.audited_changes) for row in read(before)]
                new = [outcome(row.audited_changes) for row in read(after)]
                assert len(old) == len(new) == 6
                assert all(same_refusal(o, n) for o, n in zip(old, new, strict=True)), (old, new)
                assert [kind for kind, _ in new].count("limit_exceeded") >= 3

    def test_the_runner_gives_the_source_the_loaders_limit(self, sized_dsn: str, tenant: str) -> None:
        """``CRM_AUDIT_LOADER_MAX_BYTES`` is also ``Runtime.source``'s limit."""
        environ = {"CRM_AUDIT_DATABASE_URL": sized_dsn, "CRM_AUDIT_LOADER_MAX_BYTES": str(LIMIT)}
        with Runtime(load_settings(None, environ)) as runtime:
            row = runtime.source.audit_by_id(tenant, 2)
        assert row is not None
        assert isinstance(row.audited_changes, OmittedChanges)
        assert row.audited_changes.limit == LIMIT


def test_a_source_limit_below_the_loaders_names_its_own() -> None:
    """A source set lower than the loader still refuses what it omitted, naming its own limit."""
    with pytest.raises(LimitExceeded) as refused:
        load_audited_changes(OmittedChanges(1500, 1000), LoaderLimits(max_bytes=2000))
    assert (refused.value.maximum, refused.value.actual) == (1000, 1500)
    with pytest.raises(LimitExceeded) as refused:
        load_audited_changes(OmittedChanges(3000, 1000), LoaderLimits(max_bytes=2000))
    assert (refused.value.maximum, refused.value.actual) == (2000, 3000)


def test_a_source_limit_must_be_positive(sized_dsn: str) -> None:
    with ReadOnlySession.from_dsn(sized_dsn) as session, pytest.raises(ValueError, match="max_changes_bytes"):
        PostgresAuditSource(session, max_changes_bytes=0)


def test_a_run_over_omitted_values_is_the_run_over_fetched_ones(
    scratch_database: Callable[..., str],
) -> None:
    """The corpus with three rows made 2 KB, a loader limit of 1 KB: the same job (counts, cursor,
    failures) and the same logs whether the values are fetched or omitted."""
    dsn = scratch_database(corpus=True)
    with psycopg.connect(dsn, autocommit=True) as conn:
        ids = [
            row[0]
            for row in conn.execute(
                "SELECT id FROM acme.audits WHERE auditable_type = 'Crm::Person' ORDER BY id LIMIT 3"
            )
        ]
        conn.execute(
            "UPDATE acme.audits SET audited_changes = %s WHERE id = ANY(%s)", (yaml_of("w" * 2000), ids)
        )

    def run(max_changes_bytes: int) -> tuple[Any, ...]:
        with ReadOnlySession.from_dsn(dsn) as session:
            world = World("acme")
            world.transformer = Transformer(load_default_config(), limits=LoaderLimits(max_bytes=LIMIT))
            world.source = PostgresAuditSource(session, max_changes_bytes=max_changes_bytes)  # type: ignore[assignment]
            world.users = PostgresUserDirectory(session)  # type: ignore[assignment]
            world.trigger()
            job = world.run(settings=RunSettings(page_size=50, halt_threshold=1.0)).job
            assert job.status == COMPLETED
            return job.tally, job.last_audit_id, repr(world.logs.logs)

    omitted = run(LIMIT)
    assert omitted == run(NEVER)
    assert omitted[0].failed["malformed_audited_changes"] >= len(ids)
