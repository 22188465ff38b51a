"""``ports.SourceMarks`` and ``ports.GrowingSourceMarks``: a marked source written before a mark
could grow is still checked; only a source that can grow a mark has it grown."""

from __future__ import annotations

import datetime as dt
from typing import Any, NoReturn

import attrs
import pytest

from crm_audit_transform.errors import JobAlreadyRunning, SourceChanged
from crm_audit_transform.jobs import IN_PROGRESS, MigrationJob
from crm_audit_transform.ports import GrowingSourceMarks, SourceMarks
from crm_audit_transform.usecases._source_check import GROW_TRIES, check_source, grow_source_mark

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


class MarkedOnly:
    """A third party's marked source with the two methods ``SourceMarks`` first had."""

    def __init__(self, reason: str | None) -> None:
        self.reason = reason

    def source_mark(self) -> str | None:
        return "mark:1"

    def mark_changed(self, mark: str) -> str | None:
        return self.reason


class Growing(MarkedOnly):
    def grown_mark(self, mark: str) -> str | None:
        return "mark:2"

    def mark_covers(self, mark: str, grown: str) -> bool:
        return mark >= grown


class NoWrites:
    def __getattr__(self, name: str) -> NoReturn:
        raise AssertionError(f"the job store was asked to {name}")


def job() -> MigrationJob:
    return MigrationJob("j", "co", "acme", IN_PROGRESS, T0, T0, T0, 1, 1000, 10, source_mark="mark:1")


class TestAMarkedSourceWithoutGrowth:
    def test_it_is_still_a_marked_source(self) -> None:
        assert isinstance(MarkedOnly(None), SourceMarks)
        assert not isinstance(MarkedOnly(None), GrowingSourceMarks)
        assert isinstance(Growing(None), GrowingSourceMarks)

    def test_its_mark_is_still_checked(self) -> None:
        """A rewritten source of the older kind is refused, as before the growth existed; it was
        skipped silently when ``SourceMarks`` itself required ``grown_mark``."""
        source: Any = MarkedOnly("the file was rewritten")
        with pytest.raises(SourceChanged, match="rewritten"):
            check_source(source, job())
        check_source(MarkedOnly(None), job())  # type: ignore[arg-type]

    def test_its_mark_is_never_grown(self) -> None:
        source: Any = MarkedOnly(None)
        assert grow_source_mark(source, NoWrites(), job(), "owner") == job()  # type: ignore[arg-type]


class Appended(MarkedOnly):
    """A source of ``size`` bytes that grow by 10 at each look; its marks are ``mark:{size}``."""

    def __init__(self) -> None:
        super().__init__(None)
        self.size = 1

    def grown_mark(self, mark: str) -> str | None:
        self.size += 10
        return f"mark:{self.size}"

    def mark_covers(self, mark: str, grown: str) -> bool:
        return int(mark.split(":")[1]) >= int(grown.split(":")[1])


class OtherRunsFirst:
    """A job store where another shard's run stores its growth first, ``ahead`` bytes past ours,
    every time this run tries to store its own."""

    def __init__(self, ahead: int) -> None:
        self.ahead = ahead
        self.writes: list[tuple[str, str]] = []

    def grow_source_mark(self, job_id: str, owner: str, mark: str, *, previous: str) -> MigrationJob:
        self.writes.append((mark, previous))
        theirs = f"mark:{int(mark.split(':')[1]) + self.ahead}"
        return attrs.evolve(job(), source_mark=theirs)


class TestAnotherRunsGrowthFirst:
    def test_one_that_covers_this_runs_is_taken_as_it_is(self) -> None:
        """Another run stored a growth past this one's: it stands for both, no second write; the
        run stopped with ``JobAlreadyRunning`` after 5 such losses while rows were appended."""
        store = OtherRunsFirst(ahead=5)
        grown = grow_source_mark(Appended(), store, job(), "owner")  # type: ignore[arg-type]
        assert grown.source_mark == "mark:16"
        assert store.writes == [("mark:11", "mark:1")]

    def test_one_short_of_this_runs_is_grown_again(self) -> None:
        """Another run's growth short of this one's: this run grows that one and stores it, and
        stops (``JobAlreadyRunning``) only when that happens ``GROW_TRIES`` times."""
        store = OtherRunsFirst(ahead=-5)
        with pytest.raises(JobAlreadyRunning, match="short of this run's"):
            grow_source_mark(Appended(), store, job(), "owner")  # type: ignore[arg-type]
        assert len(store.writes) == GROW_TRIES
        assert store.writes[1] == ("mark:21", "mark:6")
