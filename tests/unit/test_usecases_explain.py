"""Explain: each stage's decision for one audit row, with the lookups a run would make."""

from __future__ import annotations

import attrs
import mongomock

from crm_audit_adapters.mongo.verification import MongoMigratedLogReader
from crm_audit_transform.domain import Failed, Migrated, Skipped
from crm_audit_transform.ports import MigratedLogReader
from crm_audit_transform.service import MigrationService
from crm_audit_transform.usecases import Explanation
from crm_audit_transform.usecases.explain import ExplainPorts, explain_audit
from support.corpus_account import World, WorldPorts, audit_rows


def explain(
    world: World, audit_id: int, tenant: str = "acme", reader: MigratedLogReader | None = None
) -> Explanation:
    ports = ExplainPorts(world.source, world.users, world.sso, world.contacts, reader)
    return explain_audit(
        audit_id, company_sso_id=world.company, tenant=tenant, ports=ports, transformer=world.transformer
    )


class TestExplain:
    def test_every_stage_is_listed_and_the_outcome_matches_a_run(self) -> None:
        """The stages end in the row's outcome, the same outcome a run gives that row."""
        world = World()
        world.trigger()
        world.run()
        migrated = {log.metadata["crm_audit_id"] for log in world.logs.logs}
        audit_id = min(int(str(i)) for i in migrated)
        explanation = explain(world, audit_id)
        stages = [s.stage for s in explanation.stages]
        assert stages[:2] == ["row", "scope"]
        assert explanation.stages[-1].verdict == "migrated"
        assert isinstance(explanation.outcome, Migrated)

    def test_a_skipped_row_names_the_stage_and_reason(self) -> None:
        """A row without a CDP contact stops at the contact stage with contact_not_found."""
        world = World()
        world.contacts = type(world.contacts)()  # no contact at all
        explanation = explain(world, 2)  # a plain company create: loads, then finds no contact
        outcome = explanation.outcome
        assert isinstance(outcome, Skipped)
        assert outcome.reason == "contact_not_found"
        assert explanation.stages[-1].stage == "contact"

    def test_an_unknown_audit_id_has_nothing_to_explain(self) -> None:
        """A missing row gives an explanation without a row or stages."""
        explanation = explain(World(), 999_999)
        assert explanation.row is None
        assert explanation.stages == ()

    def test_explain_reads_nothing_it_would_not_read_in_a_run(self) -> None:
        """Explaining asks the SSO directory at most once, like one page of a run."""
        world = World()
        explain(world, 1)
        assert len(world.sso.calls) <= 1

    def test_a_log_the_store_can_never_hold_ends_in_the_runs_write_error(self) -> None:
        """A row whose log is past MongoDB's 16 MiB migrates in the transform, and the store fails it
        ``write_error`` (as a run counts it and verify too): explain says so, not ``migrated``."""
        world, audit_id, other = _with_a_huge_log()
        reader = MongoMigratedLogReader(mongomock.MongoClient().cdp.activity_logs)
        assert isinstance(explain(world, audit_id).outcome, Migrated)  # the transform alone
        explanation = explain(world, audit_id, reader=reader)
        outcome = explanation.outcome
        assert isinstance(outcome, Failed)
        assert (outcome.reason, explanation.stages[-1].stage, explanation.stages[-1].verdict) == (
            "write_error",
            "write",
            "failed",
        )
        assert "exceeds MongoDB's 16777216-byte limit" in outcome.detail
        assert isinstance(explain(world, other, reader=reader).outcome, Migrated)  # any other row

    def test_the_service_explains_with_its_stores_reader(self) -> None:
        """``MigrationService.explain`` (the runner's ``explain``) hands its reader to explain."""
        world, audit_id, _ = _with_a_huge_log()
        ports = WorldPorts(  # the World's ports, with the MongoDB adapter's reader
            source=world.source,
            users=world.users,
            sso=world.sso,
            contacts=world.contacts,
            people=world.people,
            logs=world.logs,
            jobs=world.jobs,
            flags=world.flags,
            clock=world.clock,
            indexes=world.indexes,
            entities=None,
            enrichment=None,
            reader=MongoMigratedLogReader(mongomock.MongoClient().cdp.activity_logs),
        )
        service = MigrationService(ports, world.transformer, tenants={world.company: world.tenant})
        outcome = service.explain(world.company, audit_id).outcome
        assert isinstance(outcome, Failed)
        assert outcome.reason == "write_error"


def _with_a_huge_log() -> tuple[World, int, int]:
    """A World whose first migrated row's log is past MongoDB's 16 MiB; that row's id and another's."""
    world = World()
    world.trigger()
    world.run()
    audit_id, other = sorted(int(str(log.metadata["crm_audit_id"])) for log in world.logs.logs)[:2]
    huge = "---\nnotes:\n- old\n- " + "x" * (17 * 1024 * 1024) + "\n"
    rows = [
        attrs.evolve(row, action="update", audited_changes=huge) if row.id == audit_id else row
        for row in audit_rows("acme")
    ]
    return World(rows=rows), audit_id, other
