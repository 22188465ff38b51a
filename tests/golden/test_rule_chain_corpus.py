"""A user-supplied rule over the whole audited 5.8.0 corpus: it changes exactly the rows it targets,
and every other row's outcome is the default chain's."""

from __future__ import annotations

from crm_audit_transform.chain import RowDraft, RuleChain, Stage
from crm_audit_transform.config import load_default_config
from crm_audit_transform.domain import Migrated, Skipped
from crm_audit_transform.rules import MappedCategory, Rejection
from crm_audit_transform.testing.golden import (
    CorpusTenant,
    corpus_tenant,
    corpus_tenants,
    log_snapshot,
    outcome_snapshot,
    transform_corpus,
)

CONFIG = load_default_config()
DEFAULT = RuleChain.from_config(CONFIG)
default_category = DEFAULT["category"].run


def ticket_priority(draft: RowDraft) -> Rejection | None:
    """A team's own rule: a ticket update that touches ``priority`` is a ``ticket/reprioritized``."""
    row = draft.row
    if row.auditable_type == "Crm::Ticket" and row.action == "update" and "priority" in draft.changes:
        draft.category = MappedCategory("ticket", "reprioritized")
        return None
    return default_category(draft)


def no_system_changes(draft: RowDraft) -> Rejection | None:
    """A team's own gate: changes the CRM made by itself (no user) are not migrated."""
    if draft.row.user_id is None:
        return Rejection("system_change", "made by the CRM itself")
    return None


TENANTS = [corpus_tenant(name) for name in corpus_tenants()]


class TestUserRuleOverTheCorpus:
    def test_a_custom_category_rule_changes_only_its_rows(self) -> None:
        """Ticket updates touching priority become ``reprioritized``; every other outcome is unchanged."""
        changed = 0
        for data in TENANTS:
            changed += self._compare(data)
        assert changed > 0  # the corpus has such rows, so the rule was exercised

    @staticmethod
    def _compare(data: CorpusTenant) -> int:
        default = transform_corpus(CONFIG, data).outcomes
        custom = transform_corpus(CONFIG, data, chain=DEFAULT.replacing("category", ticket_priority)).outcomes
        assert len(custom) == len(default) == len(data.rows)
        changed = 0
        for row, before, after in zip(data.rows, default, custom, strict=True):
            if (
                isinstance(before, Migrated)
                and row.auditable_type == "Crm::Ticket"
                and row.action == "update"
            ):
                assert isinstance(after, Migrated)
                fields = {change.field for change in before.log.changes}
                if "priority" in fields:
                    assert (after.log.category, after.log.action) == ("ticket", "reprioritized")
                    assert log_snapshot(after.log)["changes"] == log_snapshot(before.log)["changes"]
                    changed += 1
                    continue
            # Compared as snapshots: the corpus holds NaN values, which are never equal to themselves.
            assert outcome_snapshot(after) == outcome_snapshot(before)
        return changed

    def test_an_added_gate_skips_exactly_the_system_rows(self) -> None:
        """A stage added before the actor skips the rows that would have migrated as system changes."""
        chain = DEFAULT.inserting(Stage("no_system_changes", no_system_changes), before="actor")
        skipped = 0
        for data in TENANTS:
            default = transform_corpus(CONFIG, data).outcomes
            custom = transform_corpus(CONFIG, data, chain=chain).outcomes
            for before, after in zip(default, custom, strict=True):
                if isinstance(before, Migrated) and before.log.actor.kind == "system":
                    assert after == Skipped(before.audit_id, "system_change", "made by the CRM itself")
                    skipped += 1
                else:
                    assert outcome_snapshot(after) == outcome_snapshot(before)
        assert skipped > 0
