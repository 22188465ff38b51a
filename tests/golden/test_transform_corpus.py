"""Golden: the whole audited 5.8.0 corpus through the default mapping, one snapshot per tenant.

The corpus, its lookups and the snapshot shape come from the public kit
(``crm_audit_transform.testing.golden``); its derived data is regenerated with tests/data/derive.py
and the snapshots with ``pytest --snapshot-update``.
"""

from __future__ import annotations

import functools
from typing import Any

import pytest
from syrupy.extensions.json import JSONSnapshotExtension

from crm_audit_transform.config import load_default_config
from crm_audit_transform.domain import Migrated
from crm_audit_transform.testing.golden import (
    CorpusTenant,
    corpus_tenant,
    corpus_tenants,
    snapshot_of,
    transform_corpus,
)
from crm_audit_transform.transformer import PageResult

TENANTS = corpus_tenants()
JSONB_TENANTS = tuple(t for t in TENANTS if t.endswith("_jsonb"))


@pytest.fixture
def snapshot_json(snapshot: Any) -> Any:
    return snapshot.use_extension(JSONSnapshotExtension)


@functools.cache  # one run per tenant serves every test of this module
def run_tenant(tenant: str) -> tuple[CorpusTenant, PageResult]:
    data = corpus_tenant(tenant)
    return data, transform_corpus(load_default_config(), data)


class TestCorpusGolden:
    @pytest.mark.parametrize("tenant", TENANTS)
    def test_every_row_of_the_tenant_matches_its_snapshot(self, tenant: str, snapshot_json: Any) -> None:
        """Each audit row's outcome (and each migrated log's content) is what the snapshot shows."""
        _, result = run_tenant(tenant)
        assert snapshot_json == snapshot_of(result)

    @pytest.mark.parametrize("tenant", TENANTS)
    def test_every_row_has_exactly_one_outcome_in_row_order(self, tenant: str) -> None:
        """No row is lost or duplicated: outcome i belongs to row i."""
        data, result = run_tenant(tenant)
        assert [o.audit_id for o in result.outcomes] == [r.id for r in data.rows]
        assert result.tally.processed == len(data.rows)

    @pytest.mark.parametrize("tenant", TENANTS)
    def test_migrated_logs_carry_the_row_they_came_from(self, tenant: str) -> None:
        """external_id, audit id, tenant, request uuid and timestamp are copies of the audit row."""
        data, result = run_tenant(tenant)
        by_id = {r.id: r for r in data.rows}
        migrated = [o for o in result.outcomes if isinstance(o, Migrated)]
        assert migrated
        for outcome in migrated:
            row, log = by_id[outcome.audit_id], outcome.log
            assert log.external_id == f"crm:{tenant}:audit:{row.id}"
            assert log.metadata["crm_audit_id"] == row.id
            assert log.metadata["crm_tenant"] == tenant
            assert log.metadata.get("request_uuid") == row.request_uuid
            assert log.timestamp == row.created_at
            assert log.company_sso_id == data.company_sso_id

    def test_tenants_without_id_sets_count_their_status_fallthroughs(self) -> None:
        """The jsonb tenants have no id-sets in the default config: status changes fall through, counted."""
        assert JSONB_TENANTS == ("acme_jsonb", "globex_jsonb")
        for tenant in JSONB_TENANTS:
            _, result = run_tenant(tenant)
            assert result.tally.fallthrough > 0
            actions = {o.log.action for o in result.outcomes if isinstance(o, Migrated)}
            assert actions.isdisjoint({"won", "resolved", "completed"})
