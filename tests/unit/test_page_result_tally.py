"""A page's tally is counted where it is read: a run counts each row's outcome once (its steps'),
not twice (its page's too), and a ``PageResult`` reads, compares and pickles as before."""

from __future__ import annotations

import pickle
from collections.abc import Iterable
from typing import Any

import pytest

from crm_audit_transform.domain import Failed, Outcome, Skipped
from crm_audit_transform.tally import Tally
from crm_audit_transform.transformer import PageResult
from crm_audit_transform.usecases import RunSettings
from support.corpus_account import World

OUTCOMES: tuple[Outcome, ...] = (
    Skipped(1, "contact_not_found", ""),
    Failed(2, "invalid_audit_row", "x"),
    Skipped(3, "contact_not_found", ""),
)


class TestPageResultTally:
    def test_an_unread_tally_is_the_outcomes_and_flags_counted(self) -> None:
        """Left out, the tally is Tally.of over the outcomes, with the flags' sums."""
        result = PageResult(OUTCOMES, None, (True, False, True), (False, True, False))
        assert result.tally == Tally.of(OUTCOMES, 2, 1)
        assert result.tally.skipped == {"contact_not_found": 2}

    def test_a_given_tally_is_kept_as_given(self) -> None:
        """A tally passed in (a worker's, sent back) is the one read, even one the outcomes would not give."""
        given = Tally(7, 7)
        assert PageResult(OUTCOMES, given).tally is given

    def test_equality_compares_tallies_counted_or_given(self) -> None:
        """Equal when outcomes, flags and tallies are, whether a tally was given or counted."""
        counted = PageResult(OUTCOMES, None, (False,) * 3, (False,) * 3)
        given = PageResult(OUTCOMES, Tally.of(OUTCOMES), (False,) * 3, (False,) * 3)
        assert counted == given
        assert counted != PageResult(OUTCOMES, Tally(3, 3), (False,) * 3, (False,) * 3)
        assert counted != PageResult(OUTCOMES[:2], None, (False,) * 2, (False,) * 2)

    def test_a_result_pickles_with_or_without_its_tally_read(self) -> None:
        """A result crosses processes (the page pool) the same whether its tally was read or not."""
        fresh = PageResult(OUTCOMES, None, (False,) * 3, (False,) * 3)
        assert pickle.loads(pickle.dumps(fresh)) == fresh
        _ = fresh.tally
        assert pickle.loads(pickle.dumps(fresh)).tally == Tally.of(OUTCOMES)


class TestARunCountsOnce:
    def test_each_row_is_counted_once(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Tally.of sees each row's outcome once over a whole run (its step's count), where it saw
        each twice when every transformed page counted itself too."""
        counted: list[int] = []
        count = Tally.of.__func__

        def of(cls: type[Tally], outcomes: Iterable[Outcome], *args: Any, **kwargs: Any) -> Tally:
            outcomes = tuple(outcomes)
            counted.append(len(outcomes))
            return count(cls, outcomes, *args, **kwargs)

        monkeypatch.setattr(Tally, "of", classmethod(of))
        world = World("acme")
        world.trigger()
        job = world.run(settings=RunSettings(halt_threshold=1.0)).job
        assert job.tally.processed > 500  # more than one page
        assert job.tally.migrated > 0
        assert sum(counted) == job.tally.processed
