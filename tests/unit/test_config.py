"""The mapping configuration: the shipped default, and clear errors for bad files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from crm_audit_transform.config import load_config, load_default_config
from crm_audit_transform.errors import ConfigError
from support.blocking import in_a_thread

MINIMAL = "types:\n  Crm::Person:\n    category: contact\n"


class TestDefaultConfig:
    def test_scope_lists_every_model_of_the_corpus(self) -> None:
        """The default maps all nine audited models of the corpus, people first."""
        assert load_default_config().scope == (
            "Crm::Person",
            "Crm::Company",
            "Crm::Deal",
            "Crm::Ticket",
            "Crm::Task",
            "Crm::DealPerson",
            "Crm::CompanyPerson",
            "Crm::TicketPerson",
            "Crm::TaskPerson",
        )

    def test_carries_the_corpus_tenants_id_sets(self) -> None:
        """The won / resolved / done id-sets of the fixture README are configured per tenant."""
        tenants = load_default_config().tenants
        assert tenants["globex"].id_sets["won_stage_ids"] == frozenset({204, 213, 215})
        assert tenants["acme"].id_sets["resolved_ticket_status_ids"] == frozenset({33, 34})
        assert tenants["nusantara_retail"].id_sets["done_task_status_ids"] == frozenset({52})

    def test_is_parsed_once_a_process_and_each_call_gets_a_configuration_of_its_own(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A service built per step (a dry run resumed step by step) parsed the shipped YAML each time."""
        parsed: list[str] = []
        safe_load = yaml.safe_load

        def counted(text: str) -> object:
            parsed.append(text)
            return safe_load(text)

        monkeypatch.setattr(yaml, "safe_load", counted)
        first, second = load_default_config(), load_default_config()
        assert len(parsed) <= 1  # none when an earlier test of this process loaded it
        assert first == second
        assert first is not second
        assert first.actions is not second.actions
        assert first.tenants["acme"].id_sets is not second.tenants["acme"].id_sets


class TestLoadConfig:
    def test_minimal_text_gets_documented_defaults(self) -> None:
        """Only ``types`` is required; actions, actor names and ignored columns default."""
        config = load_config(MINIMAL)
        assert config.actions == {"create": "created", "update": "updated", "destroy": "deleted"}
        assert config.actor.deleted_user_name == "[Deleted CRM User]"
        assert config.actor.system_name == "Qontak System"
        assert config.columns.ignored == ("created_at", "updated_at")

    def test_reads_a_path(self, tmp_path: Path) -> None:
        """A Path (or a one-line str) names a file to read."""
        path = tmp_path / "mapping.yaml"
        path.write_text(MINIMAL, encoding="utf-8")
        assert load_config(path).scope == ("Crm::Person",)
        assert load_config(str(path)).scope == ("Crm::Person",)

    def test_a_file_past_one_mib_is_refused_without_reading_it_all(self, tmp_path: Path) -> None:
        """A 2 MiB mapping file is a ConfigError naming the file: at most 1 MiB and one byte are read
        (a mapping is a few KiB)."""
        path = tmp_path / "mapping.yaml"
        path.write_text(MINIMAL + "# padding\n" * 200_000, encoding="utf-8")
        with pytest.raises(ConfigError, match="larger than 1048576 bytes") as raised:
            load_config(path)
        assert str(path) in str(raised.value)

    @pytest.mark.parametrize("kind", ["device", "fifo"])
    def test_a_device_or_a_fifo_is_refused_before_it_is_opened(self, tmp_path: Path, kind: str) -> None:
        """/dev/zero never ends and a FIFO with no writer blocks open() for ever: both are a
        ConfigError naming the file, at once (a FIFO hung the reader in open())."""
        path = Path("/dev/zero")
        if kind == "fifo":
            path = tmp_path / "mapping.yaml"
            os.mkfifo(path)
        elif not path.exists():
            pytest.skip("no /dev/zero here")
        raised = in_a_thread(lambda: load_config(path))
        assert isinstance(raised, ConfigError)
        assert "not a regular file" in str(raised)
        assert str(path) in str(raised)

    def test_a_document_nested_past_the_recursion_limit_is_a_config_error(self) -> None:
        """YAML nested 100,000 deep is a ConfigError saying so, not a RecursionError."""
        text = "scope: " + "[" * 100_000 + "]" * 100_000 + "\n"
        with pytest.raises(ConfigError, match="nests collections too deep to read"):
            load_config(text)

    def test_an_alias_bomb_is_refused_before_it_is_expanded(self) -> None:
        """Nested aliases that expand a 1 KiB file past a million values are a ConfigError saying so;
        the structuring never builds them (it used to take memory and time exponential in the depth)."""
        bomb = "&y0 [a, a, a, a, a, a, a, a, a, a]"
        for level in range(1, 6):
            bomb = f"&y{level} [" + ", ".join([bomb] + [f"*y{level - 1}"] * 9) + "]"
        text = MINIMAL + "columns:\n  redacted: " + bomb + "\n"
        assert len(text) < 2048
        with pytest.raises(ConfigError, match="expands to more than 1048576 values"):
            load_config(text)

    def test_a_self_referencing_alias_is_refused(self) -> None:
        """``&a [*a]`` would expand without end: a ConfigError, not a hang or a RecursionError."""
        with pytest.raises(ConfigError, match="expands to more than"):
            load_config(MINIMAL + "columns:\n  redacted: &a [*a]\n")

    def test_aliases_that_expand_modestly_still_load(self) -> None:
        """A mapping that shares one label table between two types through an alias loads as written."""
        text = (
            "types:\n"
            "  Crm::Person:\n    category: contact\n    labels: &shared {name: Name, email: Email}\n"
            "  Crm::Company:\n    category: company\n    labels: *shared\n"
        )
        config = load_config(text)
        assert config.types["Crm::Company"].labels == config.types["Crm::Person"].labels
        assert config.types["Crm::Company"].labels == {"name": "Name", "email": "Email"}

    def test_type_errors_name_every_bad_key_together(self) -> None:
        """Wrong types and unknown keys are all reported at once, each with its path."""
        text = (
            "types:\n"
            "  Crm::Deal:\n"
            "    category: 5\n"
            "    colour: red\n"
            "    status_rules:\n"
            "      - {column: crm_stage_id, id_set: won, action: [won]}\n"
        )
        with pytest.raises(ConfigError) as caught:
            load_config(text)
        paths = [path for path, _ in caught.value.problems]
        assert "$.types['Crm::Deal'].category" in paths
        assert "$.types['Crm::Deal']" in paths  # the extra key "colour"
        assert "$.types['Crm::Deal'].status_rules[0].action" in paths

    def test_semantic_errors_name_every_bad_key_together(self) -> None:
        """Unknown audit actions, empty categories and unused id-sets are reported together."""
        text = (
            "actions: {create: created, update: updated, destroy: deleted, touch: touched}\n"
            "types:\n"
            "  Crm::Deal:\n"
            "    category: ''\n"
            "tenants:\n"
            "  acme: {id_sets: {won_stage_ids: [10]}}\n"
        )
        with pytest.raises(ConfigError) as caught:
            load_config(text)
        assert dict(caught.value.problems).keys() == {
            "$.actions['touch']",
            "$.types['Crm::Deal'].category",
            "$.tenants['acme'].id_sets['won_stage_ids']",
        }

    def test_strings_are_not_numbers(self) -> None:
        """An id-set written as strings is an error, not silently converted."""
        text = (
            MINIMAL.replace("contact", "deal") + "    status_rules: [{column: s, id_set: won, action: won}]\n"
        )
        text += "tenants: {acme: {id_sets: {won: ['10']}}}\n"
        with pytest.raises(ConfigError) as caught:
            load_config(text)
        assert caught.value.problems[0][0].startswith("$.tenants['acme'].id_sets['won']")

    @pytest.mark.parametrize("text", ["types: [unclosed\n", "- a\n- b\n"])
    def test_unreadable_yaml_is_a_config_error(self, text: str) -> None:
        """Broken YAML or a non-mapping document is a ConfigError at path ``$``."""
        with pytest.raises(ConfigError) as caught:
            load_config(text)
        assert caught.value.problems[0][0] == "$"

    def test_missing_file_is_a_config_error(self, tmp_path: Path) -> None:
        """A path that cannot be read is reported, not raised as OSError."""
        with pytest.raises(ConfigError, match="cannot read"):
            load_config(tmp_path / "missing.yaml")
