"""ChangesExtractor: the three shapes of audited_changes, labels, ignored and redacted columns."""

from __future__ import annotations

from crm_audit_transform.config import load_config, load_default_config
from crm_audit_transform.domain import FieldChange
from crm_audit_transform.rules import Rejection
from crm_audit_transform.rules.changes import ChangesExtractor

EXTRACTOR = ChangesExtractor(load_default_config())


class TestChangesExtractor:
    def test_update_gives_old_and_new(self) -> None:
        """``{f: [old, new]}`` becomes from old to new, labelled from the config."""
        assert EXTRACTOR.extract("Crm::Deal", "update", {"crm_stage_id": [3, 10]}) == (
            FieldChange("crm_stage_id", "Stage", 3, 10),
        )

    def test_create_and_destroy_give_one_side(self) -> None:
        """create has no from, destroy has no to."""
        assert EXTRACTOR.extract("Crm::Task", "create", {"name": "Call"}) == (
            FieldChange("name", "Name", None, "Call"),
        )
        assert EXTRACTOR.extract("Crm::Task", "destroy", {"name": "Call"}) == (
            FieldChange("name", "Name", "Call", None),
        )

    def test_ignored_columns_are_dropped_and_order_is_kept(self) -> None:
        """updated_at is ignored by default; the other columns keep the row's order."""
        changes = {"b_col": [1, 2], "updated_at": [1, 2], "a_col": [None, 1]}
        assert [c.field for c in EXTRACTOR.extract("Crm::Person", "update", changes)] == ["b_col", "a_col"]

    def test_unlabelled_columns_get_a_readable_label(self) -> None:
        """A column with no configured label is shown as words."""
        (change,) = EXTRACTOR.extract("Crm::Person", "update", {"favourite_colour_id": [1, 2]})
        assert change.label == "Favourite colour id"

    def test_redacted_columns_hide_values_but_not_presence(self) -> None:
        """A redacted column's values become the marker; None stays None."""
        config = load_config(
            "columns: {redacted: [email], redaction_marker: '***'}\n"
            "types: {Crm::Person: {category: contact}}\n"
        )
        (change,) = ChangesExtractor(config).extract(
            "Crm::Person", "update", {"email": [None, "a@b.example"]}
        )
        assert (change.from_, change.to) == (None, "***")

    def test_update_value_that_is_not_a_pair_fails(self) -> None:
        """An update column not holding [old, new] is malformed, a failure (not a skip)."""
        rejected = EXTRACTOR.extract("Crm::Person", "update", {"name": "only one"})
        assert isinstance(rejected, Rejection)
        assert (rejected.reason, rejected.skip) == ("malformed_audited_changes", False)

    def test_a_huge_hostile_column_name_is_shown_cut_and_escaped(self) -> None:
        """A 1 MB key with control characters is named in the detail, escaped and cut to a bounded size."""
        column = "\x1b[2J\n\x00evil" + "k" * 1_000_000
        rejected = EXTRACTOR.extract("Crm::Person", "update", {column: "only one"})
        assert isinstance(rejected, Rejection)
        assert len(rejected.detail) < 600
        assert rejected.detail.startswith("update value of '\\x1b[2J\\n\\x00evilkkk")
        assert f"({len(column)} characters)" in rejected.detail
        assert rejected.detail.isprintable()

    def test_a_configured_columns_name_is_escaped_in_the_detail(self) -> None:
        """An array column's bad update names the column escaped, whole when it is short."""
        config = load_config('columns: {arrays: ["tab\\tkey"]}\ntypes: {Crm::Person: {category: contact}}\n')
        rejected = ChangesExtractor(config).extract("Crm::Person", "update", {"tab\tkey": 5})
        assert isinstance(rejected, Rejection)
        assert rejected.detail == "update value of 'tab\\tkey' is not [old, new]"

    def test_a_label_is_its_own_types_after_the_other_type_met_the_column(self) -> None:
        """Labels are remembered per type: a column labelled for one type keeps its default in another."""
        config = load_config(
            "types:\n"
            "  Crm::Deal: {category: deal, labels: {crm_stage_id: Deal stage}}\n"
            "  Crm::Person: {category: contact}\n"
        )
        extractor = ChangesExtractor(config)
        (deal,) = extractor.extract("Crm::Deal", "update", {"crm_stage_id": [3, 10]})
        (person,) = extractor.extract("Crm::Person", "update", {"crm_stage_id": [3, 10]})
        (again,) = extractor.extract("Crm::Deal", "update", {"crm_stage_id": [4, 11]})
        assert (deal.label, person.label, again.label) == ("Deal stage", "Crm stage id", "Deal stage")

    def test_remembered_labels_are_bounded(self) -> None:
        """Rows inventing columns grow the remembered labels no further than their bound."""
        extractor = ChangesExtractor(load_default_config())
        changes = {f"column_{n}": [n, n + 1] for n in range(5_000)}
        extracted = extractor.extract("Crm::Person", "update", changes)
        assert not isinstance(extracted, Rejection)
        assert [c.label for c in extracted[-2:]] == ["Column 4998", "Column 4999"]
        assert sum(len(known) for known in extractor._known_labels.values()) <= 4096
