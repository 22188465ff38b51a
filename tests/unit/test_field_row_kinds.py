"""Row kinds real ``audits`` tables hold beyond the corpus: combined audits, legacy redacted scalars,
binary values and large values, each migrated with the right values."""

from __future__ import annotations

import datetime as dt
from typing import Any

from crm_audit_transform.config import load_config, load_default_config
from crm_audit_transform.domain import AuditRow, Contact, FieldChange, Migrated, Outcome
from crm_audit_transform.loading import LoaderLimits, load_audited_changes
from crm_audit_transform.lookup import LookupContext
from crm_audit_transform.rules._combined import COMBINED_SUFFIX, is_combined, own_comment
from crm_audit_transform.transformer import Transformer

T0 = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
LATER = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
COMBINED = "\n" + COMBINED_SUFFIX


def person_update(changes: str, **fields: Any) -> AuditRow:
    values: dict[str, Any] = {
        "tenant": "acme",
        "id": 10,
        "auditable_type": "Crm::Person",
        "auditable_id": 7,
        "action": "update",
        "audited_changes": changes,
        "created_at": T0,
    }
    values.update(fields)
    return AuditRow(**values)


def outcome_of(row: AuditRow, transformer: Transformer | None = None) -> Outcome:
    transformer = transformer or Transformer(load_default_config())
    contacts = {pid: Contact(f"c{pid}", "co", pid, LATER) for pid in (7, 42)}
    ctx = LookupContext(contacts=contacts)
    page = transformer.transform(transformer.prepare([row]), ctx, company_sso_id="co")
    return page.outcomes[0]


def changes_of(outcome: Outcome) -> list[tuple[str, Any, Any]]:
    assert isinstance(outcome, Migrated), outcome
    return [(c.field, c.from_, c.to) for c in outcome.log.changes]


class TestCombinedAudits:
    EXAMPLE = "---\nfirst_name:\n- Citra\n- Citra A.\nemail: citra@example.test\n"

    def test_scalars_are_set_to_and_pairs_are_changes(self) -> None:
        """A combined row migrates: its bare create-time value is a set-to, its pair a change."""
        outcome = outcome_of(person_update(self.EXAMPLE, comment=COMBINED))
        assert changes_of(outcome) == [
            ("first_name", "Citra", "Citra A."),
            ("email", None, "citra@example.test"),
        ]

    def test_metadata_says_the_row_was_combined(self) -> None:
        """The log of a combined row carries ``metadata.combined``; an ordinary one does not."""
        combined = outcome_of(person_update(self.EXAMPLE, comment=COMBINED))
        plain = outcome_of(person_update("---\nfirst_name:\n- Citra\n- Citra A.\n"))
        assert isinstance(combined, Migrated)
        assert isinstance(plain, Migrated)
        assert combined.log.metadata["combined"] is True
        assert "combined" not in plain.log.metadata

    def test_the_json_part_of_the_comment_still_names_the_person(self) -> None:
        """``{"crm_person_id": 42}`` followed by audited's sentence resolves contact 42."""
        comment = '{"crm_person_id": 42}' + COMBINED
        row = person_update(self.EXAMPLE, auditable_type="Crm::Deal", auditable_id=3, comment=comment)
        outcome = outcome_of(row)
        assert isinstance(outcome, Migrated)
        assert outcome.log.customer_id == "c42"

    def test_a_flat_list_of_a_declared_array_column_is_a_set_to(self) -> None:
        """``tags: [vip, lead]`` in a combined row is the created value, not a change vip → lead."""
        changes = "---\ntags:\n- vip\n- lead\nfirst_name:\n- A\n- B\n"
        assert changes_of(outcome_of(person_update(changes, comment=COMBINED)))[0] == (
            "tags",
            None,
            ["vip", "lead"],
        )

    def test_a_pair_of_arrays_is_still_a_change(self) -> None:
        """``tags: [[vip], [vip, lead]]`` in a combined row is a change of the array."""
        changes = "---\ntags:\n- - vip\n- - vip\n  - lead\n"
        assert changes_of(outcome_of(person_update(changes, comment=COMBINED))) == [
            ("tags", ["vip"], ["vip", "lead"])
        ]

    def test_an_undeclared_column_with_a_two_item_list_stays_a_pair(self) -> None:
        """Without an array declaration a two-item list is read as audited's [old, new]."""
        config = load_config("version: 1\ntypes:\n  Crm::Person: {category: contact}\n")
        changes = "---\ntags:\n- vip\n- lead\n"
        outcome = outcome_of(person_update(changes, comment=COMBINED), Transformer(config))
        assert changes_of(outcome) == [("tags", "vip", "lead")]

    def test_comment_helpers_strip_only_auditeds_sentence(self) -> None:
        """The author's comment is kept; a combined row without one has no comment of its own."""
        assert is_combined('{"a": 1}' + COMBINED)
        assert not is_combined("combined by hand")
        assert own_comment('{"a": 1}' + COMBINED) == '{"a": 1}'
        assert own_comment(COMBINED) is None
        assert own_comment("plain") == "plain"


class TestLegacyRedactedScalars:
    def test_the_change_migrates_and_the_redacted_column_shows_redacted(self) -> None:
        """audited < 5.1's bare ``"[REDACTED]"`` beside a real change keeps the change."""
        changes = '---\nfirst_name:\n- Budi\n- Budi S.\npassword: "[REDACTED]"\n'
        assert changes_of(outcome_of(person_update(changes))) == [
            ("first_name", "Budi", "Budi S."),
            ("password", "[REDACTED]", "[REDACTED]"),
        ]

    def test_a_configured_redacted_column_may_hold_any_bare_value(self) -> None:
        """A column configured as redacted is shown with the configured marker whatever audited wrote."""
        config = load_config(
            "version: 1\ncolumns: {redacted: [pin], redaction_marker: '***'}\n"
            "types:\n  Crm::Person: {category: contact}\n"
        )
        outcome = outcome_of(person_update("---\npin: xxxx\nname:\n- a\n- b\n"), Transformer(config))
        assert changes_of(outcome) == [("pin", "***", "***"), ("name", "a", "b")]

    def test_any_other_bare_scalar_in_an_update_still_fails_the_row(self) -> None:
        """An uncombined update with a bare value that is no redaction stays malformed."""
        outcome = outcome_of(person_update("---\nemail: x@example.test\n"))
        assert not isinstance(outcome, Migrated)
        assert outcome.reason == "malformed_audited_changes"
        assert "email" in outcome.detail


class TestBinaryValues:
    def test_binary_that_is_not_utf8_loads_as_bytes(self) -> None:
        """A ``!binary`` bytea value keeps its bytes; the row's other columns load as usual."""
        loaded = load_audited_changes("---\navatar: !binary |-\n  /9j/4A==\nname: Ani\n")
        assert loaded == {"avatar": b"\xff\xd8\xff\xe0", "name": "Ani"}

    def test_binary_that_is_utf8_stays_text(self) -> None:
        """A ``!binary`` whose bytes are UTF-8 is the ``str`` it spells."""
        assert load_audited_changes("---\nv: !binary |-\n  aMOpbGxv\n") == {"v": "héllo"}

    def test_a_binary_row_migrates_with_bytes_in_its_change(self) -> None:
        """The transformed log carries the bytes as the change's value."""
        changes = "---\navatar:\n- !binary |-\n  /w==\n- !binary |-\n  /v8=\n"
        assert changes_of(outcome_of(person_update(changes))) == [("avatar", b"\xff", b"\xfe\xff")]


class TestLargeValues:
    def test_a_rich_text_value_over_a_mebibyte_loads_under_the_defaults(self) -> None:
        """A 1.26 MB inline-image ``notes`` value on both sides of an update loads by default."""
        image = "data:image/png;base64," + "A" * 1_260_000
        loaded = load_audited_changes(f"---\nnotes:\n- '{image}'\n- ''\n")
        assert loaded["notes"][0] == image

    def test_defaults_allow_sixteen_mebibytes_per_value(self) -> None:
        """The payload limit leaves room for a 16 MiB value on each side of an update."""
        assert LoaderLimits().max_bytes >= 2 * (16 << 20)

    def test_field_change_keeps_bytes(self) -> None:
        """``FieldChange`` holds bytes as a value of the value model."""
        assert FieldChange("a", "A", None, b"\x00").to == b"\x00"
