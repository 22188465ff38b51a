"""What the benchmark scripts share: their command line's start, the machine's load, a call's times,
and a commit's sources to measure beside this tree's.

Each script prints ``uptime`` before and after its rounds (the load that benchmarks/RESULTS.md
records beside every figure) and times with ``time.perf_counter`` (wall seconds) and
``time.process_time`` (this process's CPU seconds, which a busy shared machine inflates less than
the wall). Scripts import it as a sibling (``from _machine import …``): python puts a script's own
folder first on ``sys.path``.
"""

from __future__ import annotations

import argparse
import subprocess
import tarfile
import time
from collections.abc import Callable
from pathlib import Path


def arguments(doc: str | None, *, repeat: int) -> argparse.ArgumentParser:
    """A parser described by ``doc``'s first paragraph (the script's docstring), with ``--repeat``
    (rounds, default ``repeat``) that every script alternates its candidates over."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=repeat)
    return parser


def uptime() -> str:
    """``uptime``'s line: the clock, time up, users and the 1, 5 and 15 minute load averages."""
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def cpu_seconds(call: Callable[[], object]) -> float:
    """This process's CPU seconds (``time.process_time``) of one ``call()``."""
    start = time.process_time()
    call()
    return time.process_time() - start


def best_wall(call: Callable[[], object], repeat: int) -> float:
    """The fewest wall seconds (``time.perf_counter``) of ``repeat`` calls of ``call()``: the call the
    rest of a shared machine hindered least."""
    fastest = float("inf")
    for _ in range(repeat):
        with Stopwatch() as took:
            call()
        fastest = min(fastest, took.wall)
    return fastest


class Stopwatch:
    """The wall seconds (``time.perf_counter``) and this process's CPU seconds (``time.process_time``)
    of a ``with`` block: ``with Stopwatch() as took: …``, then ``took.wall`` and ``took.cpu``."""

    __slots__ = ("_started", "cpu", "wall")

    def __init__(self) -> None:
        self._started = (0.0, 0.0)
        self.wall = self.cpu = 0.0

    def __enter__(self) -> Stopwatch:
        self._started = (time.perf_counter(), time.process_time())
        return self

    def __exit__(self, *_: object) -> None:
        self.wall = time.perf_counter() - self._started[0]
        self.cpu = time.process_time() - self._started[1]


def source_tree(ref: str, into: Path) -> Path:
    """``ref``'s ``src`` (``git archive`` of this repository), unpacked under ``into``: the folder to
    put first on a child's ``PYTHONPATH`` to measure that commit beside this tree."""
    archive = into / "src.tar"
    root = Path(__file__).resolve().parent.parent
    subprocess.run(["git", "-C", str(root), "archive", "-o", str(archive), ref, "src"], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into / ref, filter="data")
    return into / ref / "src"
