"""Tally sums and the halt rule's check points, as a run adds them up once per batch."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from crm_audit_transform.halting import HaltRule
from crm_audit_transform.tally import Tally

REASONS = st.sampled_from(["contact_not_found", "post_sync_live_feed", "write_error"])
COUNTS = st.dictionaries(REASONS, st.integers(-5, 50))


def tallies() -> st.SearchStrategy[Tally]:
    return st.builds(Tally, st.integers(0, 10_000), st.integers(0, 10_000), COUNTS, COUNTS)


def counted(a: dict[str, int], b: dict[str, int], sign: int) -> dict[str, int]:
    total = Counter(a)
    for key, value in b.items():
        total[key] += sign * value
    return {key: value for key, value in sorted(total.items()) if value}


class TestSums:
    @given(tallies(), tallies())
    def test_a_sum_and_a_difference_count_every_reason(self, a: Tally, b: Tally) -> None:
        """Either side may have no reason at all (most batches): the counts are still those of a
        Counter, zeros dropped and keys sorted."""
        plus, minus = a + b, a - b
        assert (plus.processed, plus.migrated) == (a.processed + b.processed, a.migrated + b.migrated)
        assert dict(plus.skipped) == counted(dict(a.skipped), dict(b.skipped), 1)
        assert dict(plus.failed) == counted(dict(a.failed), dict(b.failed), 1)
        assert dict(minus.skipped) == counted(dict(a.skipped), dict(b.skipped), -1)
        assert list(plus.skipped) == sorted(plus.skipped)

    def test_a_sum_with_an_empty_side_does_not_share_the_other_sides_counts(self) -> None:
        """The counts handed back alone are still copied: a caller's dict changed later changes no tally."""
        skipped = {"contact_not_found": 2}
        total = Tally(2, 0, skipped) + Tally(1, 1)
        skipped["contact_not_found"] = 99
        assert total.skipped == {"contact_not_found": 2}
        assert total.skipped is not skipped


class TestCheckPoints:
    @given(st.integers(1, 500), st.integers(0, 5_000))
    def test_decide_answers_only_where_checks_at_says(self, sample: int, processed: int) -> None:
        """A run builds the tally since the basis only where ``checks_at`` is true: everywhere else
        ``decide`` answers None whatever the counts."""
        rule = HaltRule(threshold=0.0, sample=sample)
        every_row_failed = Tally(processed, 0, {}, {"write_error": processed} if processed else {})
        halts = rule.decide(every_row_failed) is not None
        assert halts == rule.checks_at(processed)
        assert rule.checks_at(processed) == (processed > 0 and processed % sample == 0)
