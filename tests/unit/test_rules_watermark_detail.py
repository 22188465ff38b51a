"""An unreadable ``created_at``'s failure detail: bounded and escaped, whatever text the row held."""

from __future__ import annotations

from crm_audit_transform.domain import UnreadableTime
from crm_audit_transform.rules.verdict import NAME_SHOWN, shown_name
from crm_audit_transform.rules.watermark import time_rejection


class TestUnreadableTimeDetail:
    def test_a_short_text_is_named_whole(self) -> None:
        rejected = time_rejection(UnreadableTime("10000-01-01 00:00:00"))
        assert rejected.detail.startswith("created_at '10000-01-01 00:00:00' is not a time")

    def test_a_huge_hostile_text_is_cut_and_escaped(self) -> None:
        """A file's ``created_at`` may be any string: 1 MB with control characters stays bounded."""
        text = "\x1b]0;pwned\x07" + "9" * 1_000_000
        rejected = time_rejection(UnreadableTime(text))
        assert len(rejected.detail) < 600
        assert rejected.detail.startswith("created_at '\\x1b]0;pwned\\x079999")
        assert f"({len(text)} characters)" in rejected.detail
        assert rejected.detail.isprintable()


class TestShownName:
    def test_a_name_at_the_limit_is_whole_and_one_past_it_is_cut(self) -> None:
        assert shown_name("a" * NAME_SHOWN) == repr("a" * NAME_SHOWN)
        assert shown_name("a" * (NAME_SHOWN + 1)) == f"{'a' * NAME_SHOWN!r}… ({NAME_SHOWN + 1} characters)"
