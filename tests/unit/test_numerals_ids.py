"""One reading of CRM ids from loaded or stored values, shared by the rules, enrichment and MongoDB."""

from __future__ import annotations

import pytest

from crm_audit_transform.enrichment.model import as_referent_id
from crm_audit_transform.numerals import as_id


class TestAsId:
    @pytest.mark.parametrize(("value", "expected"), [(42, 42), ("42", 42), (" 42 ", 42), (-3, -3), (0, 0)])
    def test_ints_and_plain_digit_text_are_ids(self, value: object, expected: int) -> None:
        """An int is taken as it is; text of plain ASCII digits (spaces around allowed) is parsed."""
        assert as_id(value) == expected

    @pytest.mark.parametrize("value", [True, None, 4.0, "-3", "1_000", "+7", "١٢٣", "12a", "", "9" * 20, [1]])
    def test_anything_else_names_no_id(self, value: object) -> None:
        """Bools, floats, signs, underscores, non-ASCII digits, overlong text and containers are not ids."""
        assert as_id(value) is None

    def test_enrichment_reads_referent_ids_the_same_way(self) -> None:
        """A live feed's text id is read by the same rule (Arabic-Indic digits are not an id)."""
        assert as_referent_id(" 17 ") == as_id(" 17 ") == 17
        assert as_referent_id("١٧") is None
