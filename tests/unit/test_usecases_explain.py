"""Explain: each stage's decision for one audit row, with the lookups a run would make."""

from __future__ import annotations

from crm_audit_transform.domain import Migrated, Skipped
from crm_audit_transform.usecases import Explanation
from crm_audit_transform.usecases.explain import ExplainPorts, explain_audit
from support.corpus_account import World


def explain(world: World, audit_id: int, tenant: str = "acme") -> Explanation:
    ports = ExplainPorts(world.source, world.users, world.sso, world.contacts)
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
