"""What ``load_audited_changes`` accepts: text and bytes columns, jsonb mappings, and what it refuses."""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any

import pytest

from crm_audit_transform.errors import LimitExceeded, MalformedYaml, NotAMapping, UnsupportedTag
from crm_audit_transform.loading import LoaderLimits, available_backends, load_audited_changes


class TestTextColumn:
    def test_bytes_and_str_of_the_same_text_load_alike(self) -> None:
        """A bytes column value is UTF-8 YAML, exactly like its str form."""
        text = "---\nname: Zoë\nscore: 0.5\n"
        assert (
            load_audited_changes(text.encode()) == load_audited_changes(text) == {"name": "Zoë", "score": 0.5}
        )

    def test_an_empty_change_set_is_an_empty_dict(self) -> None:
        """``--- {}`` (a comment-only save) loads as ``{}``."""
        assert load_audited_changes("--- {}\n") == {}

    def test_only_the_first_document_is_read(self) -> None:
        """Like Psych's safe_load, a second document is never parsed, on either parser."""
        for backend in available_backends():
            assert load_audited_changes("---\na: 1\n--- [unclosed\n", backend=backend) == {"a": 1}

    @pytest.mark.parametrize(
        ("value", "found"),
        [
            (None, "nil"),
            ("", "String"),
            ("name: x\n", "String"),
            ("---\n", "nil"),
            ("--- []\n", "Array"),
            ("--- 12\n", "Integer"),
            ("--- !ruby/object:ActiveSupport::TimeZone\nname: UTC\n", "String"),
            (42, "Integer"),
            (["a"], "Array"),
        ],
    )
    def test_anything_but_a_hash_is_not_a_mapping(self, value: Any, found: str) -> None:
        """NULL, text Rails would not parse (no leading ``---``) and non-hash documents are NotAMapping."""
        with pytest.raises(NotAMapping) as caught:
            load_audited_changes(value)
        assert caught.value.found.startswith(found)

    def test_a_top_level_indifferent_hash_is_a_mapping(self) -> None:
        """HashWithIndifferentAccess is a Hash, so it is a valid top level."""
        text = "--- !ruby/hash:ActiveSupport::HashWithIndifferentAccess\n:name: x\n"
        assert load_audited_changes(text) == {"name": "x"}

    def test_backends_are_named_and_validated(self) -> None:
        """libyaml is present in this environment (the compiled builder before it when it was built),
        and an unknown backend is a caller's ValueError."""
        assert available_backends() in (("compiled", "libyaml", "python"), ("libyaml", "python"))
        with pytest.raises(ValueError, match="unknown YAML backend"):
            load_audited_changes("--- {}\n", backend="java")  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        "text",
        [
            "---\na: 1\n\ufeffb: 2\n",  # a BOM indents the key one column: not a key of the mapping
            "---\n\ufeffa: 1\nb: x\rc\n",
            "---\n\ufeffa: 1\n",
            "---\na: 1\n\ufeff# note\nb: 2\n",
            "---\na: |\n  x\n\ufeff  y\n",
        ],
    )
    def test_a_bom_at_the_start_of_a_line_reads_alike_on_every_parser(self, text: str) -> None:
        """libyaml (Psych's parser) skips a BOM at a line's start as one column of indentation; the
        pure-Python parser counted none, so it loaded or refused such rows otherwise."""
        outcomes = set()
        for backend in available_backends():
            try:
                outcomes.add(repr(load_audited_changes(text, backend=backend)))
            except MalformedYaml as exc:
                outcomes.add(f"MalformedYaml at {exc.line}:{exc.column}")
        assert len(outcomes) == 1, outcomes


class TestJsonbColumn:
    def test_a_decoded_mapping_is_copied_not_shared(self) -> None:
        """The result is a fresh tree: changing it never touches the caller's mapping."""
        source = {"prefs": {"tags": ["a"]}, "n": 9007199254740993}
        loaded = load_audited_changes(source)
        assert loaded == source
        assert loaded["prefs"] is not source["prefs"]
        assert loaded["prefs"]["tags"] is not source["prefs"]["tags"]

    def test_time_strings_stay_strings(self) -> None:
        """Ruby's JSON decode leaves ISO times as strings, so the loader does too."""
        source = {"closed_at": ["2020-11-19T07:45:33.341-03:30", None]}
        assert load_audited_changes(source) == source

    def test_value_model_scalars_are_accepted_and_times_normalised_to_utc(self) -> None:
        """Decimals, dates and aware datetimes pass; an aware datetime is converted to UTC."""
        jakarta = dt.timezone(dt.timedelta(hours=7))
        source = {
            "a": decimal.Decimal("1.5"),
            "b": dt.date(2020, 1, 1),
            "c": dt.datetime(2020, 1, 1, 7, tzinfo=jakarta),
        }
        assert load_audited_changes(source) == {
            "a": decimal.Decimal("1.5"),
            "b": dt.date(2020, 1, 1),
            "c": dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
        }

    @pytest.mark.parametrize("value", [{1, 2}, object(), dt.datetime(2020, 1, 1), b"raw"])
    def test_objects_outside_the_value_model_are_refused(self, value: Any) -> None:
        """Sets, arbitrary objects, naive datetimes and bytes are not JSON values."""
        with pytest.raises(UnsupportedTag):
            load_audited_changes({"v": value})

    def test_depth_and_size_limits_apply_and_cycles_end(self) -> None:
        """Deep, large or cyclic mappings stop at the limits instead of looping or recursing."""
        deep: dict[str, Any] = {}
        cursor = deep
        for _ in range(10_000):
            cursor["d"] = cursor = {}
        cyclic: dict[str, Any] = {}
        cyclic["self"] = cyclic
        for value in (deep, cyclic, {"v": list(range(200_000))}):
            with pytest.raises(LimitExceeded):
                load_audited_changes(value)
        with pytest.raises(LimitExceeded):
            load_audited_changes({"v": [1, 2, 3]}, LoaderLimits(max_nodes=3))
