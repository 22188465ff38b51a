"""Every audited 5.8.0 row loads to exactly what Ruby read back from it (the corpus truth)."""

from __future__ import annotations

import datetime as dt
import decimal
import math
from typing import Any

import pytest

from crm_audit_transform.loading import available_backends, load_audited_changes
from support.truth import JSONB_ROWS, JSONB_TRUTH, TEXT_ROWS, TEXT_TRUTH, canonical, decode, rows_with_truth

TEXT = rows_with_truth(TEXT_ROWS, TEXT_TRUTH)
JSONB = rows_with_truth(JSONB_ROWS, JSONB_TRUTH)
BY_ID = {(row["tenant"], row["id"]): row for row, _ in TEXT}


def _mismatches(pairs: list[tuple[dict[str, Any], Any]], backend: str) -> list[str]:
    found = []
    for row, truth in pairs:
        loaded = load_audited_changes(row["audited_changes"], backend=backend)
        if canonical(loaded) != canonical(decode(truth)):
            found.append(f"{row['tenant']}#{row['id']}")
    return found


@pytest.mark.parametrize("backend", available_backends())
class TestCorpusTruth:
    def test_every_text_row_loads_to_its_truth(self, backend: str) -> None:
        """All 2,403 YAML rows equal their typed truth, with hash key order, on this parser."""
        assert len(TEXT) == 2403
        assert _mismatches(TEXT, backend) == []

    def test_every_jsonb_row_loads_to_its_truth(self, backend: str) -> None:
        """All 168 jsonb rows (already-decoded mappings) equal their typed truth."""
        assert len(JSONB) == 168
        assert _mismatches(JSONB, backend) == []


class TestCorpusShapes:
    def test_a_symbol_key_beside_the_same_string_key_keeps_both_values(self) -> None:
        """acme#4 prefs has ``:theme`` and ``"theme"``: the symbol takes ``:theme``, nothing is dropped."""
        prefs = load_audited_changes(BY_ID[("acme", 4)]["audited_changes"])["prefs"]
        assert list(prefs) == ["timezone", ":theme", "theme"]
        assert prefs[":theme"] == dt.datetime(2019, 12, 29, 17, 42, 38, 489661, tzinfo=dt.UTC)
        assert prefs["theme"] == {"4": None, "notify": math.inf}

    def test_time_with_zone_is_read_from_utc_not_from_the_local_time(self) -> None:
        """acme#5 ``last_contacted_at`` is the ``utc:`` instant; ``time:`` (Jakarta wall clock) is ignored."""
        changes = load_audited_changes(BY_ID[("acme", 5)]["audited_changes"])
        assert changes["last_contacted_at"] == dt.datetime(2018, 12, 22, 15, 37, 15, tzinfo=dt.UTC)

    def test_big_decimal_keeps_its_exact_digits(self) -> None:
        """``!ruby/object:BigDecimal 18:0.30113e3`` is ``Decimal('301.13')``, not a float."""
        changes = load_audited_changes(BY_ID[("acme", 4)]["audited_changes"])
        assert changes["annual_revenue"] == decimal.Decimal("301.13")
        assert type(changes["annual_revenue"]) is decimal.Decimal

    def test_every_loaded_time_is_aware_utc(self) -> None:
        """No naive or non-UTC datetime reaches the value model from any corpus row."""
        offsets = set()
        for row, _ in TEXT:
            todo: list[Any] = [load_audited_changes(row["audited_changes"])]
            while todo:
                value = todo.pop()
                if isinstance(value, dict):
                    todo.extend(value.values())
                elif isinstance(value, list):
                    todo.extend(value)
                elif isinstance(value, dt.datetime):
                    offsets.add(value.utcoffset())
        assert offsets == {dt.timedelta(0)}
