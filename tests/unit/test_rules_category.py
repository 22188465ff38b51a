"""CategoryMapper: audit type and action to CDP category and action, from configuration."""

from __future__ import annotations

from crm_audit_transform.config import load_config, load_default_config
from crm_audit_transform.rules import MappedCategory, Rejection
from crm_audit_transform.rules.category import CategoryMapper

MAPPER = CategoryMapper(load_default_config())


class TestCategoryMapper:
    def test_plain_actions_map_to_created_updated_deleted(self) -> None:
        """create / update / destroy of an entity become created / updated / deleted of its category."""
        assert MAPPER.map("acme", "Crm::Company", 1, "create", {"name": "X"}) == MappedCategory(
            "company", "created"
        )
        assert MAPPER.map("acme", "Crm::Person", 1, "update", {}) == MappedCategory("contact", "updated")
        assert MAPPER.map("acme", "Crm::Task", 1, "destroy", {}) == MappedCategory("task", "deleted")

    def test_join_create_and_destroy_link_and_unlink_the_entity(self) -> None:
        """A join row names the linked entity by its id column."""
        assert MAPPER.map("acme", "Crm::TicketPerson", 9, "create", {"crm_ticket_id": 4}) == MappedCategory(
            "ticket", "link", "Crm::Ticket", 4
        )
        assert MAPPER.map("acme", "Crm::TaskPerson", 9, "destroy", {"crm_task_id": "5"}) == MappedCategory(
            "task", "unlink", "Crm::Task", 5
        )

    def test_status_into_the_tenants_set_wins_and_points_at_the_entity(self) -> None:
        """A deal entering a won stage is ``won``; the log links to the deal itself."""
        category = MAPPER.map("globex", "Crm::Deal", 8, "update", {"crm_stage_id": [100, 213]})
        assert category == MappedCategory("deal", "won", "Crm::Deal", 8)

    def test_status_leaving_or_outside_the_set_is_an_update(self) -> None:
        """Leaving a won stage, or moving elsewhere, is a plain update and no fallthrough."""
        assert MAPPER.map("globex", "Crm::Deal", 8, "update", {"crm_stage_id": [213, 207]}) == MappedCategory(
            "deal", "updated"
        )

    def test_status_change_of_an_unconfigured_tenant_falls_through(self) -> None:
        """Without an id-set the row is an update flagged as fallthrough (counted, never dropped)."""
        category = MAPPER.map("initech", "Crm::Ticket", 2, "update", {"ticket_status_id": [1, 2]})
        assert category == MappedCategory("ticket", "updated", fallthrough=True)

    def test_unmapped_type_and_action_are_rejected(self) -> None:
        """An unknown auditable_type or action is a skip with reason unmapped_action_type."""
        for auditable_type, action in (("Crm::Note", "create"), ("Crm::Deal", "touch")):
            rejected = MAPPER.map("acme", auditable_type, 1, action, {})
            assert isinstance(rejected, Rejection)
            assert (rejected.reason, rejected.skip) == ("unmapped_action_type", True)

    def test_a_huge_hostile_type_or_action_is_named_cut_and_escaped(self) -> None:
        """audited's ``auditable_type`` and ``action`` are unbounded: a 1 MB name with control
        characters is named in the detail escaped and cut, never whole."""
        hostile = "\x1b[2J\n\x00evil" + "k" * 1_000_000
        for auditable_type, action in ((hostile, "create"), ("Crm::Deal", hostile)):
            rejected = MAPPER.map("acme", auditable_type, 1, action, {})
            assert isinstance(rejected, Rejection)
            assert len(rejected.detail) < 600
            assert "'\\x1b[2J\\n\\x00evilkkk" in rejected.detail
            assert f"({len(hostile)} characters)" in rejected.detail
            assert rejected.detail.isprintable()

    def test_per_type_actions_override_the_defaults(self) -> None:
        """A type's own ``actions`` table replaces the default name of that action only."""
        mapper = CategoryMapper(
            load_config("types:\n  Crm::Person:\n    category: contact\n    actions: {destroy: archived}\n")
        )
        assert mapper.map("t", "Crm::Person", 1, "destroy", {}) == MappedCategory("contact", "archived")
        assert mapper.map("t", "Crm::Person", 1, "create", {}) == MappedCategory("contact", "created")
