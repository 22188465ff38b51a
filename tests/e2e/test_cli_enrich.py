"""``crm-audit-migrate enrich`` and the run's enrichment, end to end: PostgreSQL corpus, mongomock, USMAN.

Entity names come from the corpus loaded into PostgreSQL (``PostgresEntityDirectory``); the CDP is
one shared ``mongomock.MongoClient`` injected through ``Overrides(mongo_client=...)``.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from typing import Any

import cli_world
import mongomock
import pytest
from bson import ObjectId
from cli_world import COMPANY, TENANT, Cli

from crm_audit_adapters.cli import exit_codes
from crm_audit_adapters.mongo import decode_activity_log
from crm_audit_transform.enrichment import DELETED_REFERENCE
from crm_audit_transform.testing.enrichment import activity_log_document
from crm_audit_transform.usecases import RunSettings
from support.corpus_account import World, contact_docs

pytestmark = pytest.mark.postgres
usman, client, run_cli = cli_world.usman, cli_world.client, cli_world.run_cli  # the CLI world's fixtures

T0 = dt.datetime(2025, 3, 1, 9, 0, tzinfo=dt.UTC)
PERSON = 1
CUSTOMER = next(d["_id"] for d in contact_docs(TENANT) if d["crm_data"]["id"] == PERSON)
LIVE_DEAL, GONE_DEAL = 3, 1  # deal 3 exists in the acme corpus, deal 1 was deleted
LIVE_DEAL_NAME = "Renewal شركة المثال"


def deal_log(*, at: dt.datetime = T0, external_id: str = "", **metadata: Any) -> dict[str, Any]:
    return activity_log_document(
        company_sso_id=COMPANY,
        customer_id=CUSTOMER,
        category="deal",
        action="link",
        timestamp=at,
        external_id=external_id,
        metadata=metadata,
    )


def seed_cdp(client: mongomock.MongoClient) -> dict[str, ObjectId]:
    """Association logs of both shapes, a colliding pair, a deleted referent and a native log."""
    logs = client["cdp"]["activity_logs"]
    docs = {
        "ours": deal_log(
            external_id="crm:acme:audit:900001",
            crm_tenant=TENANT,
            linked_entity_type="Crm::Deal",
            linked_entity_id=LIVE_DEAL,
        ),
        "live": deal_log(
            at=T0 + dt.timedelta(hours=1), linked_entity_type="Crm::Deal", linked_entity_id=str(LIVE_DEAL)
        ),
        "gone": deal_log(
            at=T0 + dt.timedelta(hours=2), linked_entity_type="Crm::Deal", linked_entity_id=GONE_DEAL
        ),
        "twin_a": deal_log(at=T0 + dt.timedelta(hours=3), linked_entity_id=LIVE_DEAL),
        "twin_b": deal_log(at=T0 + dt.timedelta(hours=3, seconds=2), linked_entity_id=LIVE_DEAL),
        "note": {"company_sso_id": COMPANY, "customer_id": CUSTOMER, "category": "note", "action": "create"},
    }
    return {name: logs.insert_one(copy.deepcopy(doc)).inserted_id for name, doc in docs.items()}


def metadata_of(client: mongomock.MongoClient, doc_id: ObjectId) -> dict[str, Any]:
    doc = client["cdp"]["activity_logs"].find_one({"_id": doc_id})
    assert doc is not None
    return dict(doc.get("metadata") or {})


def snapshot(client: mongomock.MongoClient) -> list[dict[str, Any]]:
    return list(client["cdp"]["activity_logs"].find({}, sort=[("_id", 1)]))


class TestEnrichCommand:
    def test_dry_run_prints_the_plan_and_changes_nothing(
        self, run_cli: Cli, client: mongomock.MongoClient
    ) -> None:
        """--dry-run shows every patch and skip of the plan; the collection stays byte-for-byte the same."""
        ids = seed_cdp(client)
        before = snapshot(client)
        result = run_cli("enrich", "--company-sso-id", COMPANY, "--tenant", TENANT, "--dry-run")
        assert result.exit_code == 0, result.output
        out = result.stdout
        assert "enrichment plan: 3 patches" in out
        assert f"patch doc {ids['ours']}" in out
        assert f"set metadata.linked_entity_name = {json.dumps(LIVE_DEAL_NAME, ensure_ascii=False)}" in out
        assert "enrich_ambiguous" in out
        assert "nothing changed" in out
        assert snapshot(client) == before

    def test_enrich_fills_missing_referents_in_place(
        self, run_cli: Cli, client: mongomock.MongoClient
    ) -> None:
        """Ours and live-feed logs gain only their missing keys; no document is added or removed."""
        ids = seed_cdp(client)
        count = client["cdp"]["activity_logs"].count_documents({})
        result = run_cli("enrich", "--company-sso-id", COMPANY, "--tenant", TENANT)
        assert result.exit_code == 0, result.output
        assert "patched 3" in result.stdout
        assert client["cdp"]["activity_logs"].count_documents({}) == count
        assert metadata_of(client, ids["ours"]) == {
            "crm_tenant": TENANT,
            "linked_entity_type": "Crm::Deal",
            "linked_entity_id": LIVE_DEAL,
            "crm_person_id": PERSON,
            "linked_entity_name": LIVE_DEAL_NAME,
        }
        live = metadata_of(client, ids["live"])
        assert live["linked_entity_id"] == str(LIVE_DEAL)  # what the feed wrote stays as written
        assert (live["crm_person_id"], live["linked_entity_name"]) == (PERSON, LIVE_DEAL_NAME)
        assert metadata_of(client, ids["gone"])["linked_entity_name"] == DELETED_REFERENCE
        assert metadata_of(client, ids["twin_a"]) == {"linked_entity_id": LIVE_DEAL}
        assert metadata_of(client, ids["twin_b"]) == {"linked_entity_id": LIVE_DEAL}
        assert "metadata" not in client["cdp"]["activity_logs"].find_one({"_id": ids["note"]})

    def test_a_second_enrich_patches_nothing(self, run_cli: Cli, client: mongomock.MongoClient) -> None:
        """Enrichment is idempotent: the second pass plans and sets nothing."""
        seed_cdp(client)
        assert run_cli("enrich", "--company-sso-id", COMPANY, "--tenant", TENANT).exit_code == 0
        after_first = snapshot(client)
        again = run_cli("enrich", "--company-sso-id", COMPANY, "--tenant", TENANT, "--json")
        assert again.exit_code == 0, again.output
        report = json.loads(again.stdout)["report"]
        assert (report["planned_patches"], report["patched_docs"], report["keys_set"]) == (0, 0, 0)
        assert report["skipped"] == {"enrich_ambiguous": 2}
        assert snapshot(client) == after_first

    def test_json_dry_run_lists_the_plans(self, run_cli: Cli, client: mongomock.MongoClient) -> None:
        """--json --dry-run gives the report and each page's plan as reviewable JSON."""
        seed_cdp(client)
        result = run_cli("enrich", "--company-sso-id", COMPANY, "--tenant", TENANT, "--dry-run", "--json")
        assert result.exit_code == 0, result.output
        doc = json.loads(result.stdout)
        assert doc["dry_run"] is True
        assert doc["report"]["planned_patches"] == 3
        assert doc["report"]["patched_docs"] == 0
        [plan] = doc["plans"]
        sets = [patch["set"] for patch in plan["patches"]]
        assert {"metadata.linked_entity_name": DELETED_REFERENCE, "metadata.crm_person_id": PERSON} in sets

    def test_without_a_job_or_binding_the_tenant_must_be_given(self, run_cli: Cli) -> None:
        """Unbound and without a job, the tenant must be given: the command refuses in one line."""
        result = run_cli("enrich", "--company-sso-id", COMPANY, CRM_AUDIT_TENANTS="")
        assert result.exit_code == exit_codes.REFUSED
        assert "pass --tenant" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1

    def test_an_unbound_account_may_not_name_another_accounts_tenant(
        self, run_cli: Cli, client: mongomock.MongoClient
    ) -> None:
        """--tenant naming a tenant bound to another account is TENANT_MISMATCH, and nothing is patched."""
        logs = client["cdp"]["activity_logs"]
        unbound = {**deal_log(linked_entity_type="Crm::Deal", linked_entity_id=LIVE_DEAL)}
        unbound["company_sso_id"] = "unbound2"
        logs.insert_one(unbound)
        before = logs.find_one({"_id": unbound["_id"]})
        result = run_cli("enrich", "--company-sso-id", "unbound2", "--tenant", TENANT)
        assert result.exit_code == exit_codes.REFUSED, result.output
        assert "TENANT_MISMATCH" in result.stderr
        assert logs.find_one({"_id": unbound["_id"]}) == before


class TestRunEnriches:
    def test_run_enriches_what_it_migrates_and_status_shows_it(
        self, run_cli: Cli, client: mongomock.MongoClient
    ) -> None:
        """The CLI run names linked entities like the in-memory enriched run; enrich then finds nothing."""
        assert run_cli("trigger", "--company-sso-id", COMPANY, "--tenant", TENANT).exit_code == 0
        ran = run_cli("run", "--company-sso-id", COMPANY, "--no-progress")
        assert ran.exit_code == 0, ran.output

        clean = World(TENANT, enrich=True)
        clean.trigger()
        clean.run(settings=RunSettings(halt_threshold=1.0))
        expected = clean.jobs.latest(clean.company)
        assert expected is not None

        status = json.loads(run_cli("status", "--company-sso-id", COMPANY, "--json").stdout)
        assert status["enrichment"] == expected.enrichment.as_dict()
        assert status["enrichment"]["keys_set"] > 0
        table = run_cli("status", "--company-sso-id", COMPANY).stdout
        assert f"({expected.enrichment.keys_set} keys), complete {expected.enrichment.complete}" in table

        stored = client["cdp"]["activity_logs"].find({"source_tag": "crm_migration"}, {"_id": 0})
        names = {
            log.external_id: log.metadata.get("linked_entity_name")
            for log in map(decode_activity_log, stored)
        }
        assert names == {log.external_id: log.metadata.get("linked_entity_name") for log in clean.logs.logs}

        again = run_cli("enrich", "--company-sso-id", COMPANY, "--json")
        assert again.exit_code == 0, again.output
        report = json.loads(again.stdout)
        assert report["tenant"] == TENANT
        assert report["report"]["keys_set"] == 0
