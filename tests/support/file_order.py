"""The order the suite's test files are handed to pytest-xdist's workers: the longest first, by the
seconds each took in a recorded run (``tests/support/file_durations.json``).

``scripts/check`` runs ``pytest -n N --dist loadfile --no-loadscope-reorder``: each worker takes a
whole test file at a time, in collection order. pytest-xdist's own reorder (its default) puts the
files with the most tests first, which left the long process-driving files, a few tests each, to
the end of the session, where one worker ran them while the others had nothing left. Handing the
longest files out first (longest processing time first) lets the short ones fill in around them.

The seconds are recorded, not guessed: ``scripts/file-durations`` runs the suite as ``scripts/check``
does with ``--file-durations=tests/support/file_durations.json``, and this plugin writes each file's
seconds there at the session's end (the sum of its tests' set-up, call and tear-down, as its worker
spent them). A file the record does not name (a new one) is handed out first of all, as if long,
until a refresh measures it. Every session that runs at least ``FULL_SHARE`` of the recorded files
compares what it measured with the record and, where a long file is handed out too late
(``stale``), says so in its terminal summary with the command that refreshes the record;
tests/unit/test_file_order.py fails when the record names a file that no longer exists. Timings are
noisy on a shared machine, so a moved place is reported, never a failure. The order changes which
worker runs a file and when, never what a test does: every file still runs whole in one process.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import statistics
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path

import pytest

__all__ = [
    "DURATIONS",
    "FULL_SHARE",
    "MOVED",
    "NEIGHBOURS",
    "NOTABLE_S",
    "PACED_BY",
    "ordered",
    "pytest_addoption",
    "pytest_collection_modifyitems",
    "pytest_configure",
    "read_durations",
    "stale",
]

DURATIONS = Path("tests/support/file_durations.json")
"""The record, relative to the repository's root: ``{"run": {...how it was measured},
"seconds": {test file path: seconds}}``, the files in descending order of seconds."""
FULL_SHARE = 0.9
"""The share of the recorded files a session must run for its seconds to be compared with the record."""
NOTABLE_S = 5.0
"""A file measured under this many seconds (paced) never makes the order stale: its place among the
short files that fill in at the end matters little."""
PACED_BY = 3
"""The fewest files a pace against the record is taken from (see ``stale``)."""
NEIGHBOURS = 20
"""How many recorded files of about its length a recorded file's pace is taken from: the nearest in
the record's order, as many longer as shorter where the record allows."""
MOVED = 3.0
"""The factor by which a file's seconds, scaled by the session's pace against the record, must
exceed its recorded seconds for its place to count as moved. Not 2: load from other work on the
2-core machine slows the process-driving files more than the rest, and a full check under such load
(07:05 UTC, 2026-12-03) found five files 2.1-2.7 times their record, paced, none of them changed."""


def read_durations(path: Path) -> dict[str, float]:
    """The recorded seconds per test file (``path`` as ``DURATIONS`` describes it); ``{}`` when the
    file is missing. ``ValueError`` for a record of another shape (a hand edit gone wrong)."""
    if not path.is_file():
        return {}
    seconds = json.loads(path.read_text(encoding="utf-8")).get("seconds")
    if not isinstance(seconds, dict) or not all(
        isinstance(k, str) and isinstance(v, int | float) and v >= 0 for k, v in seconds.items()
    ):
        raise ValueError(f"{path}: 'seconds' must map test file paths to seconds")
    return {k: float(v) for k, v in seconds.items()}


def ordered(files: list[str], recorded: Mapping[str, float]) -> list[str]:
    """``files`` (in collection order) as they are handed out: those ``recorded`` does not name first,
    in their order, then the others by recorded seconds, descending (a stable sort: ties keep theirs)."""
    return sorted(files, key=lambda path: -recorded.get(path, float("inf")))


def stale(measured: Mapping[str, float], recorded: Mapping[str, float], *, at_once: int = 0) -> list[str]:
    """The files a session's ``measured`` seconds say are handed out too late, one line each.

    A loaded machine slows every file, and the short ones, mostly CPU-bound, more than the long
    process-driving ones, which wait on the commands and servers they start: a full check under load
    (16:20 UTC, 2026-12-03) found eleven files of 1.6-2.4 s recorded at 3-7 times their record scaled by
    the long files' pace, none of them changed. So each recorded file is scaled by its own pace: the
    median ratio of measured to recorded seconds over its ``NEIGHBOURS`` files of about its length
    (itself left out), 1 with fewer than ``PACED_BY`` of them. A file that moved stands out among them;
    a load that slows them all alike does not. A recorded file counts when its paced seconds are at
    least ``NOTABLE_S`` and ``MOVED`` times its recorded seconds: a long file left among the short ones
    at the end of the session. A file that became shorter is handed out early, which costs little, and
    is not named; nor is one of the ``at_once`` longest recorded files (one a test process): they
    are all handed out as the session starts, whatever their seconds (a full check under load,
    18:47 UTC, 2026-12-03, named the third longest, paced at 3.9 times its record). A file the record
    does not name counts when its seconds, scaled by the pace of the files with at least
    ``NOTABLE_S`` recorded, are at least ``NOTABLE_S``."""
    ranked = sorted((p for p in measured if recorded.get(p, 0.0) > 0.0), key=lambda p: recorded[p])
    ratios = [measured[p] / recorded[p] for p in ranked]
    place = {path: i for i, path in enumerate(ranked)}
    notable = [ratio for path, ratio in zip(ranked, ratios, strict=True) if recorded[path] >= NOTABLE_S]
    unrecorded_pace = statistics.median(notable) if len(notable) >= PACED_BY else 1.0

    def pace_of(path: str) -> float:
        i = place.get(path, -1)  # -1: recorded at 0 s, paced as the shortest files are
        first = max(0, min(i - NEIGHBOURS // 2, len(ranked) - NEIGHBOURS - 1))
        around = [ratios[j] for j in range(first, min(len(ranked), first + NEIGHBOURS + 1)) if j != i]
        return statistics.median(around[:NEIGHBOURS]) if len(around) >= PACED_BY else 1.0

    at_start = set(ranked[-at_once:]) if at_once > 0 else set()
    lines = []
    for path, seconds in sorted(measured.items(), key=lambda item: -item[1]):
        if path not in recorded:
            paced = seconds / unrecorded_pace
            if paced >= NOTABLE_S:
                lines.append(f"{path}: {paced:.1f} s, not recorded")
            continue
        paced = seconds / pace_of(path)
        before = recorded[path]
        if paced >= NOTABLE_S and paced >= MOVED * before and path not in at_start:
            lines.append(f"{path}: {paced:.1f} s, recorded {before:.1f} s")
    return lines


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--file-durations",
        metavar="PATH",
        default=None,
        help="write each test file's seconds in this session to PATH, as tests/support/file_order.py "
        "reads them (scripts/file-durations)",
    )


def pytest_configure(config: pytest.Config) -> None:
    # In pytest-xdist's workers the controller orders nothing and sees every report: it alone counts.
    if not hasattr(config, "workerinput"):
        config.pluginmanager.register(_FileSeconds(config), "file_order_seconds")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Hand the files out longest first (``ordered``); the tests of each file keep their order."""
    recorded = read_durations(config.rootpath / DURATIONS)
    files = list(dict.fromkeys(_file_of(item, config.rootpath) for item in items))
    rank = {path: place for place, path in enumerate(ordered(files, recorded))}
    items.sort(key=lambda item: rank[_file_of(item, config.rootpath)])


def _file_of(item: pytest.Item, root: Path) -> str:
    try:
        return item.path.relative_to(root).as_posix()
    except ValueError:  # a test outside the repository (pytest given another directory)
        return item.path.as_posix()


def _load() -> float:
    return round(os.getloadavg()[0], 2)


class _FileSeconds:
    """Sums each test file's phases as the reports come in; at the session's end, writes them
    (``--file-durations``) and compares them with the record."""

    def __init__(self, config: pytest.Config) -> None:
        self._config = config
        self._seconds: defaultdict[str, float] = defaultdict(float)
        self._stale: list[str] = []
        self._load_at_start = _load()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self._seconds[report.nodeid.split("::", 1)[0]] += report.duration

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        root = self._config.rootpath
        measured = {path: round(seconds, 2) for path, seconds in self._seconds.items()}
        out = self._config.getoption("file_durations")
        if out:
            by_length = dict(sorted(measured.items(), key=lambda item: -item[1]))
            run = {
                "ended": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "args": self._config.invocation_params.args,
                "cpus": os.cpu_count(),
                "load_1min_at_start": self._load_at_start,
                "load_1min_at_end": _load(),
                "tests": session.testscollected,
                "exit": int(exitstatus),
            }
            record = {"run": run, "seconds": by_length}
            Path(out).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        recorded = read_durations(root / DURATIONS)
        if recorded and sum(path in measured for path in recorded) >= FULL_SHARE * len(recorded):
            workers = getattr(self._config.option, "tx", None) or ()  # pytest-xdist's, one a test process
            self._stale = stale(measured, recorded, at_once=len(workers))

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if self._stale:
            terminalreporter.write_sep("-", f"test file order: {len(self._stale)} file(s) moved")
            for line in self._stale:
                terminalreporter.write_line(line)
            terminalreporter.write_line(
                f"the order of {DURATIONS} is stale: refresh it with scripts/file-durations in a quiet window"
            )
