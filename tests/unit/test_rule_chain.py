"""The rule chain: library users replace or add stages; the Transformer runs whatever chain it is
given, and explain reports each stage through its observer."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from crm_audit_transform.chain import RowDraft, RuleChain, Stage
from crm_audit_transform.config import load_default_config
from crm_audit_transform.domain import AuditRow, Contact, Failed, Migrated, Outcome, Skipped
from crm_audit_transform.lookup import LookupContext
from crm_audit_transform.rules import MappedCategory, Rejection
from crm_audit_transform.transformer import Transformer

T0 = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
LATER = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
CONFIG = load_default_config()
CTX = LookupContext(contacts={7: Contact("c7", "co", 7, LATER)})
DEFAULT_NAMES = ("category", "contact", "watermark", "changes", "actor")


def person_update(**fields: Any) -> AuditRow:
    values: dict[str, Any] = {
        "tenant": "acme",
        "id": 10,
        "auditable_type": "Crm::Person",
        "auditable_id": 7,
        "action": "update",
        "audited_changes": "---\njob_title:\n- Sales\n- Head of Sales\n",
        "created_at": T0,
    }
    values.update(fields)
    return AuditRow(**values)


def outcome_of(chain: RuleChain, row: AuditRow | None = None) -> Outcome:
    transformer = Transformer(CONFIG, chain=chain)
    page = transformer.transform(transformer.prepare([row or person_update()]), CTX, company_sso_id="co")
    return page.outcomes[0]


def explained(chain: RuleChain, row: AuditRow | None = None) -> list[tuple[str, str, str]]:
    transformer = Transformer(CONFIG, chain=chain)
    return [
        (d.stage, d.verdict, d.detail)
        for d in transformer.explain(row or person_update(), CTX, company_sso_id="co")
    ]


def skip_titles(draft: RowDraft) -> Rejection | None:
    if "job_title" in draft.changes:
        return Rejection("title_only", "job titles are not migrated")
    return None


class TestBuildingAChain:
    def test_default_chain_runs_the_plans_rules_in_order(self) -> None:
        """The default chain from a MappingConfig is category, contact, watermark, changes, actor."""
        assert RuleChain.from_config(CONFIG).names == DEFAULT_NAMES

    def test_replacing_keeps_the_place_and_the_reported_name(self) -> None:
        """A replaced stage keeps its position and the name explain reports it under."""
        chain = RuleChain.from_config(CONFIG).replacing("category", skip_titles)
        assert chain.names == DEFAULT_NAMES
        assert chain["category"].run is skip_titles
        assert chain["category"].reported_as == "scope"

    def test_inserting_before_and_after(self) -> None:
        """A new stage goes right before or right after the named one."""
        chain = RuleChain.from_config(CONFIG)
        before = chain.inserting(Stage("titles", skip_titles), before="contact")
        after = chain.inserting(Stage("titles", skip_titles), after="actor")
        assert before.names == ("category", "titles", "contact", "watermark", "changes", "actor")
        assert after.names == (*DEFAULT_NAMES, "titles")

    def test_misuse_is_refused(self) -> None:
        """Unknown names, repeated names and an ambiguous place are errors, not silent no-ops."""
        chain = RuleChain.from_config(CONFIG)
        with pytest.raises(KeyError):
            chain.replacing("nope", skip_titles)
        with pytest.raises(ValueError, match="repeated: contact"):
            chain.inserting(Stage("contact", skip_titles), after="actor")
        with pytest.raises(ValueError, match="exactly one"):
            chain.inserting(Stage("titles", skip_titles))
        with pytest.raises(ValueError, match="exactly one"):
            chain.inserting(Stage("titles", skip_titles), before="actor", after="actor")


class TestRunningAChain:
    def test_a_replaced_category_rule_decides_the_log(self) -> None:
        """A user's category rule sets the category and action of the log the row becomes."""

        def titles_are_promotions(draft: RowDraft) -> Rejection | None:
            draft.category = MappedCategory("contact", "promoted")
            return None

        outcome = outcome_of(RuleChain.from_config(CONFIG).replacing("category", titles_are_promotions))
        assert isinstance(outcome, Migrated)
        assert (outcome.log.category, outcome.log.action) == ("contact", "promoted")

    def test_an_added_stage_can_skip_a_row(self) -> None:
        """An inserted stage's rejection is the row's outcome, and later stages do not run."""
        ran: list[str] = []

        def later(draft: RowDraft) -> Rejection | None:
            ran.append("later")
            return None

        chain = (
            RuleChain.from_config(CONFIG)
            .inserting(Stage("titles", skip_titles), after="category")
            .inserting(Stage("later", later), after="actor")
        )
        assert outcome_of(chain) == Skipped(10, "title_only", "job titles are not migrated")
        assert ran == []

    def test_a_stage_that_raises_fails_only_its_row(self) -> None:
        """A stage's exception becomes its row's failure (invalid_audit_row), never the page's; the
        detail names the exception's type and place, not its message (it may quote the row)."""

        def broken(draft: RowDraft) -> Rejection | None:
            raise RuntimeError(f"boom: {draft.row.audited_changes}")

        outcome = outcome_of(RuleChain.from_config(CONFIG).inserting(Stage("broken", broken), before="actor"))
        line = broken.__code__.co_firstlineno + 1
        detail = f"unexpected RuntimeError in broken (test_rule_chain.py:{line})"
        assert outcome == Failed(10, "invalid_audit_row", detail)

    def test_a_chain_that_sets_no_category_fails_the_row(self) -> None:
        """A replacement that never sets the category fails the row, naming what is unset."""
        outcome = outcome_of(RuleChain.from_config(CONFIG).replacing("category", lambda draft: None))
        assert isinstance(outcome, Failed)
        assert outcome.detail == "the rule chain left unset: category"


class TestExplainObservesTheChain:
    def test_explain_reports_an_added_stage_in_its_place(self) -> None:
        """A user stage's describe line appears between the stages it was inserted between."""
        chain = RuleChain.from_config(CONFIG).inserting(
            Stage("audit_trail", lambda draft: None, describe=lambda draft: f"row {draft.row.id}"),
            after="watermark",
        )
        stages = [stage for stage, _, _ in explained(chain)]
        assert stages == [
            "row",
            "scope",
            "load",
            "contact",
            "watermark",
            "audit_trail",
            "changes",
            "actor",
            "log",
        ]
        assert ("audit_trail", "pass", "row 10") in explained(chain)

    def test_explain_reports_a_rejection_under_the_stage_name(self) -> None:
        """A rejection by an added stage is reported under that stage's name, and ends the trace."""
        chain = RuleChain.from_config(CONFIG).inserting(Stage("titles", skip_titles), before="actor")
        assert explained(chain)[-1] == ("titles", "skipped", "title_only: job titles are not migrated")
