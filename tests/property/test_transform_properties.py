"""Properties of the Transformer over arbitrary audit rows (hypothesis)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crm_audit_transform import load_audited_changes
from crm_audit_transform.config import load_default_config
from crm_audit_transform.domain import AuditRow, Contact, CrmUser, Failed, Migrated, Skipped
from crm_audit_transform.lookup import LookupContext, LookupPorts, fetch_lookups
from crm_audit_transform.testing import (
    InMemoryContactDirectory,
    InMemorySsoDirectory,
    InMemoryUserDirectory,
)
from crm_audit_transform.transformer import Transformer

COMPANY = "company-acme"
TRANSFORMER = Transformer(load_default_config())
USERS = {
    "acme": [
        CrmUser(1, "a@x.example", "A"),
        CrmUser(2, "b@x.example", "B", dt.datetime(2020, 1, 1, tzinfo=dt.UTC)),
    ]
}
SSO = {"a@x.example": "sso-a", "b@x.example": "sso-b"}
SYNC = dt.datetime(2022, 1, 1, tzinfo=dt.UTC)
CONTACTS = [Contact(f"contact-{i}", COMPANY, i, SYNC) for i in range(1, 6)]
PROFILE = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
columns = st.sampled_from(["name", "crm_person_id", "crm_stage_id", "crm_deal_id", "job_title", "updated_at"])
update_changes = st.dictionaries(columns, st.lists(json_values, min_size=2, max_size=2), max_size=4)
plain_changes = st.dictionaries(columns, json_values, max_size=4)
anything = st.none() | st.booleans() | st.integers() | st.text(max_size=5) | st.floats() | st.just([1])
maybe_int = st.none() | st.integers(-3, 8)
comments = (
    st.none()
    | st.text(max_size=30)
    | st.builds(lambda v: json.dumps({"crm_person_id": v}), st.integers(0, 8) | st.text(max_size=3))
)
times = st.datetimes(
    min_value=dt.datetime(2019, 1, 1), max_value=dt.datetime(2025, 1, 1), timezones=st.just(dt.UTC)
)


@st.composite
def audit_rows(draw: st.DrawFn, *, wild: bool = True) -> AuditRow:
    action = draw(st.sampled_from(["create", "update", "destroy"] + (["touch"] if wild else [])))
    changes = draw(update_changes if action == "update" else plain_changes)
    raw: Any = changes
    if wild:
        raw = draw(st.just(changes) | st.text(max_size=40) | st.none() | st.binary(max_size=20))
    row = AuditRow(
        tenant="acme",
        id=draw(st.integers(1, 10**12)),
        auditable_type=draw(st.sampled_from([*TRANSFORMER.scope, "Crm::Note"])),
        auditable_id=draw(maybe_int),
        action=action,
        audited_changes=raw,
        created_at=draw(times),
        associated_id=draw(maybe_int),
        associated_type=draw(st.sampled_from([None, "Crm::Person", "Crm::Company"])),
        user_id=draw(maybe_int),
        user_type=draw(st.sampled_from([None, "User", "Admin"])),
        username=draw(st.none() | st.just("import-bot")),
        comment=draw(comments),
        request_uuid=draw(st.none() | st.uuids().map(str)),
    )
    if wild and draw(st.booleans()):
        # Sources can hand over anything; attrs does not check types, so neither may we assume them.
        name = draw(st.sampled_from(["id", "auditable_id", "user_id", "tenant", "comment", "auditable_type"]))
        object.__setattr__(row, name, draw(anything))
    return row


def lookups(prepared: Any, *, sso_failing: bool = False) -> LookupContext:
    return fetch_lookups(
        TRANSFORMER.plan(prepared),
        company_sso_id=COMPANY,
        tenant="acme",
        ports=LookupPorts(
            InMemoryUserDirectory(USERS),
            InMemorySsoDirectory(SSO, failing=sso_failing),
            InMemoryContactDirectory(CONTACTS),
        ),
    )


class TestTransformerProperties:
    @PROFILE
    @given(st.lists(audit_rows(), max_size=8))
    def test_every_row_gets_exactly_one_outcome_and_nothing_raises(self, rows: list[AuditRow]) -> None:
        """Whatever a row holds, transform returns one outcome per row, in order, and raises nothing."""
        prepared = TRANSFORMER.prepare(rows)
        result = TRANSFORMER.transform(prepared, lookups(prepared), company_sso_id=COMPANY)
        assert len(result.outcomes) == len(rows) == result.tally.processed
        for row, outcome in zip(rows, result.outcomes, strict=True):
            assert isinstance(outcome, Migrated | Skipped | Failed)
            if type(row.id) is int:
                assert outcome.audit_id == row.id

    @PROFILE
    @given(st.lists(audit_rows(), max_size=8))
    def test_transforming_twice_gives_equal_results(self, rows: list[AuditRow]) -> None:
        """The same rows and lookups give equal outcomes and tallies, also from a fresh Transformer."""
        prepared = TRANSFORMER.prepare(rows)
        first = TRANSFORMER.transform(prepared, lookups(prepared), company_sso_id=COMPANY)
        other = Transformer(load_default_config())
        again = other.prepare(rows)
        assert other.transform(again, lookups(again), company_sso_id=COMPANY) == first

    @PROFILE
    @given(st.lists(audit_rows(wild=False), max_size=8))
    def test_migrated_changes_are_the_loaders_values(self, rows: list[AuditRow]) -> None:
        """Each field change of a migrated log carries exactly the loaded value(s) of its column."""
        prepared = TRANSFORMER.prepare(rows)
        result = TRANSFORMER.transform(prepared, lookups(prepared), company_sso_id=COMPANY)
        for row, outcome in zip(rows, result.outcomes, strict=True):
            if not isinstance(outcome, Migrated):
                continue
            loaded = load_audited_changes(row.audited_changes)
            expected = {k: v for k, v in loaded.items() if k not in ("id", "created_at", "updated_at")}
            assert [c.field for c in outcome.log.changes] == list(expected)
            for change in outcome.log.changes:
                value = expected[change.field]
                if row.action == "update":
                    assert isinstance(value, list)
                    assert [change.from_, change.to] == value
                elif row.action == "destroy":
                    assert (change.from_, change.to) == (value, None)
                else:
                    assert (change.from_, change.to) == (None, value)

    @PROFILE
    @given(st.lists(audit_rows(), max_size=8))
    def test_failing_sso_never_turns_a_migration_into_a_skip_or_failure(self, rows: list[AuditRow]) -> None:
        """With SSO down every outcome keeps its kind and reason; only user actors degrade."""
        prepared = TRANSFORMER.prepare(rows)
        healthy = TRANSFORMER.transform(prepared, lookups(prepared), company_sso_id=COMPANY)
        degraded = TRANSFORMER.transform(
            prepared, lookups(prepared, sso_failing=True), company_sso_id=COMPANY
        )
        for ok, down in zip(healthy.outcomes, degraded.outcomes, strict=True):
            assert type(ok) is type(down)
            if isinstance(ok, Migrated) and isinstance(down, Migrated):
                assert down.log.actor.kind != "user"
                assert ok.log.changes == down.log.changes
            else:
                assert ok == down
