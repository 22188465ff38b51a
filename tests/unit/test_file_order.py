"""``support.file_order``: the recorded seconds name test files that exist, the files are handed out
longest first, a session writes its own seconds when asked, and one whose seconds moved a file's
place says so.

A renamed or removed file would otherwise drop out of the record silently, and the long file it became
would run where an unrecorded file runs; an order no one refreshes would go stale unseen."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import pytest

from support.file_order import DURATIONS, MOVED, NOTABLE_S, ordered, read_durations, stale

ROOT = Path(__file__).parents[2]


class TestTheRecord:
    def test_every_recorded_file_exists(self) -> None:
        recorded = read_durations(ROOT / DURATIONS)
        assert recorded, f"{DURATIONS} is missing or empty"
        assert [path for path in recorded if not (ROOT / path).is_file()] == []

    def test_it_lists_the_files_longest_first(self) -> None:
        """As ``scripts/file-durations`` writes it, so a reader sees the order it gives."""
        seconds = list(read_durations(ROOT / DURATIONS).values())
        assert seconds == sorted(seconds, reverse=True)

    def test_a_record_of_another_shape_is_refused(self, tmp_path: Path) -> None:
        bad = tmp_path / "durations.json"
        bad.write_text(json.dumps({"seconds": {"tests/test_a.py": "long"}}))
        with pytest.raises(ValueError, match="seconds"):
            read_durations(bad)

    def test_no_record_is_no_order(self, tmp_path: Path) -> None:
        assert read_durations(tmp_path / "none.json") == {}


class TestOrdered:
    def test_unrecorded_files_first_then_the_longest(self) -> None:
        files = ["a.py", "new.py", "b.py", "c.py", "newer.py"]
        recorded = {"a.py": 1.0, "b.py": 30.0, "c.py": 1.0}
        assert ordered(files, recorded) == ["new.py", "newer.py", "b.py", "a.py", "c.py"]


class TestStale:
    RECORDED: ClassVar = {"long.py": 60.0, "mid.py": 20.0, "other.py": 10.0, "short.py": 1.0, "tiny.py": 0.5}

    def test_a_session_slower_alike_everywhere_is_not_stale(self) -> None:
        measured = {path: 2.5 * seconds for path, seconds in self.RECORDED.items()}
        assert stale(measured, self.RECORDED) == []

    def test_a_file_that_became_long_is_stale(self) -> None:
        measured = {**self.RECORDED, "short.py": 12.0}
        assert stale(measured, self.RECORDED) == ["short.py: 12.0 s, recorded 1.0 s"]

    def test_a_long_file_that_became_short_is_not_stale(self) -> None:
        """It is handed out early: that costs little, and a noisy machine does it often."""
        measured = {**self.RECORDED, "mid.py": 4.0}
        assert stale(measured, self.RECORDED) == []

    def test_a_file_slower_than_the_pace_by_less_than_moved_is_not_stale(self) -> None:
        measured = {**self.RECORDED, "mid.py": (MOVED - 0.1) * self.RECORDED["mid.py"]}
        assert stale(measured, self.RECORDED) == []

    def test_a_long_unrecorded_file_is_stale_and_a_short_one_is_not(self) -> None:
        measured = {**self.RECORDED, "new.py": NOTABLE_S + 1, "small.py": NOTABLE_S - 1}
        assert stale(measured, self.RECORDED) == [f"new.py: {NOTABLE_S + 1:.1f} s, not recorded"]

    def test_short_files_that_moved_among_themselves_are_not_stale(self) -> None:
        measured = {**self.RECORDED, "tiny.py": 3.0}
        assert stale(measured, self.RECORDED) == []

    def test_the_files_handed_out_at_the_start_are_never_stale(self) -> None:
        """With three test processes the three longest files start at once, whatever their seconds: as
        a full check under load measured, the third longest at 3.9 times its record (127 s, 32.8 s
        recorded) while the files about its length kept theirs. The fourth is named as before."""
        recorded = {
            "first.py": 80.0,
            "second.py": 60.0,
            "third.py": 33.0,
            "fourth.py": 30.0,
            "fifth.py": 28.0,
        }
        third = {**recorded, "third.py": 127.0}
        assert stale(third, recorded, at_once=3) == []
        assert stale(third, recorded) == ["third.py: 127.0 s, recorded 33.0 s"]
        fourth = {**recorded, "fourth.py": 127.0}
        assert stale(fourth, recorded, at_once=3) == ["fourth.py: 127.0 s, recorded 30.0 s"]

    def test_a_load_that_slows_the_short_files_most_is_not_stale_but_a_moved_one_is(self) -> None:
        """As a full check under load measured (16:20 UTC, 2026-12-03): the long process-driving files
        at 1.3 times their record, the short CPU-bound ones at 4.5 times (1.6-2.4 s recorded, 7-11 s
        measured), none of them changed. Paced by the long files, as before, eleven of them were named;
        paced by the files of their own length, only the one that moved 5 times past the others is."""
        long = {f"long_{i}.py": 5.0 + 3.0 * i for i in range(25)}
        short = {f"short_{i}.py": 1.6 + 0.02 * i for i in range(40)}
        tiny = {f"tiny_{i}.py": 0.05 + 0.01 * i for i in range(60)}
        recorded = {**long, **short, **tiny}
        measured = {
            **{path: 1.3 * seconds for path, seconds in long.items()},
            **{path: 4.5 * seconds for path, seconds in short.items()},
            **{path: 3.0 * seconds for path, seconds in tiny.items()},
        }
        assert stale(measured, recorded) == []
        moved = {**measured, "short_7.py": 5 * 4.5 * short["short_7.py"]}
        assert stale(moved, recorded) == [f"short_7.py: {5 * short['short_7.py']:.1f} s, recorded 1.7 s"]


def _session(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """pytest over ``tmp_path``'s test files with this plugin, in a process of its own."""
    # No plugins but this one: the installed ones (xdist, hypothesis, ...) would cost their start-up.
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests"), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "support.file_order", "-p", "no:cacheprovider", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


class TestASession:
    @pytest.fixture
    def tree(self, tmp_path: Path) -> Path:
        (tmp_path / "pytest.ini").write_text("[pytest]\n")
        (tmp_path / "test_quick.py").write_text("def test_quick():\n    pass\n")
        (tmp_path / "test_slow.py").write_text(
            "import time\n\n\ndef test_slow():\n    time.sleep(0.3)\n\n\ndef test_slower():\n"
            "    time.sleep(0.3)\n"
        )
        return tmp_path

    def test_it_writes_each_files_seconds_longest_first(self, tree: Path) -> None:
        out = tree / "durations.json"
        done = _session(tree, "-q", f"--file-durations={out}")
        assert done.returncode == 0, done.stdout + done.stderr
        record = json.loads(out.read_text())
        assert list(record["seconds"]) == ["test_slow.py", "test_quick.py"]
        assert record["seconds"]["test_slow.py"] >= 0.6
        assert (record["run"]["tests"], record["run"]["exit"]) == (3, 0)

    def test_it_hands_out_the_recorded_longest_first(self, tree: Path) -> None:
        listed = _session(tree, "-q", "--collect-only")
        assert listed.stdout.index("test_quick.py") < listed.stdout.index("test_slow.py")
        record = tree / DURATIONS
        record.parent.mkdir(parents=True)
        record.write_text(json.dumps({"seconds": {"test_slow.py": 1.0, "test_quick.py": 0.1}}))
        listed = _session(tree, "-q", "--collect-only")
        assert listed.stdout.index("test_slow.py") < listed.stdout.index("test_quick.py")

    def test_a_full_session_that_moved_a_file_says_so(self, tree: Path) -> None:
        """A file handed out too late is named (``NOTABLE_S`` lowered to this tree's 0.6 s file)."""
        (tree / "conftest.py").write_text("import support.file_order\n\nsupport.file_order.NOTABLE_S = 0.1\n")
        record = tree / DURATIONS
        record.parent.mkdir(parents=True)
        recorded = {"test_quick.py": 0.0, "test_slow.py": 1.0}
        record.write_text(json.dumps({"seconds": recorded}))
        stays = _session(tree, "-q")
        assert stays.returncode == 0, stays.stdout + stays.stderr
        assert "file order" not in stays.stdout, stays.stdout

        record.write_text(json.dumps({"seconds": {**recorded, "test_slow.py": 0.01}}))
        moved = _session(tree, "-q")
        assert moved.returncode == 0, moved.stdout + moved.stderr
        assert "test file order: 1 file(s) moved" in moved.stdout
        assert "refresh it with scripts/file-durations" in moved.stdout
