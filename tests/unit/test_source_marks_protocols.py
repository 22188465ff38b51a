"""``ports.SourceMarks`` and ``ports.GrowingSourceMarks``: a marked source written before a mark
could grow is still checked; only a source that can grow a mark has it grown."""

from __future__ import annotations

import datetime as dt
from typing import Any, NoReturn

import pytest

from crm_audit_transform.errors import SourceChanged
from crm_audit_transform.jobs import IN_PROGRESS, MigrationJob
from crm_audit_transform.ports import GrowingSourceMarks, SourceMarks
from crm_audit_transform.usecases._source_check import check_source, grow_source_mark

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
