"""``support.file_order``: its measured list names test files that exist, each once.

A renamed or removed file would otherwise drop out of the list silently, and the long file it became
would run in its collection place, at the end of the session, where one process runs it alone."""

from __future__ import annotations

from pathlib import Path

from support.file_order import LONGEST

ROOT = Path(__file__).parents[2]


class TestLongest:
    def test_every_listed_file_exists(self) -> None:
        assert [path for path in LONGEST if not (ROOT / path).is_file()] == []

    def test_each_file_is_listed_once(self) -> None:
        assert len(set(LONGEST)) == len(LONGEST)
