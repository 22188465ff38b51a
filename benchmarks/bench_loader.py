"""``load_audited_changes`` against a bare libyaml parse of the same corpus texts.

    .venv/bin/python benchmarks/bench_loader.py [--repeat 7] [--clock wall|cpu]

Every pass loads all 2,403 ``audited_changes`` texts of tests/fixtures/audited-5.8.0 once; each
figure is the best and the median of ``--repeat`` passes (rows/s from the best).

* floor: ``yaml.load(text, yaml.CSafeLoader)`` — C parse, PyYAML's resolver and constructors. It
  fails on every row with a Ruby tag (counted), so it is an optimistic floor.
* floor, all rows built: the same, with a do-nothing constructor for ``!ruby/...`` tags so that
  every row is built in full (what the floor would cost if it could read the corpus).
* loader (libyaml), loader (python): ``load_audited_changes`` on each backend.
The goal: the loader on libyaml costs at most 1.5x the floor.

Passes are interleaved (floor, floor all built, loader, … then the next round) so that a change of
machine load hits every candidate alike. ``--clock cpu`` times with ``time.process_time`` (this
process's CPU time), which a busy shared machine does not inflate the way it inflates wall time.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from crm_audit_transform.loading import load_audited_changes

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "audited-5.8.0" / "audits.jsonl"


class _PermissiveCLoader(yaml.CSafeLoader):
    """CSafeLoader that builds any ``!ruby/...`` node as a plain dict/list/str."""


def _any_ruby(loader: Any, suffix: str, node: Any) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    return loader.construct_scalar(node)


_PermissiveCLoader.add_multi_constructor("!ruby/", _any_ruby)
_PermissiveCLoader.add_multi_constructor("tag:yaml.org,2002:", _any_ruby)


def _floor(text: str) -> None:
    yaml.load(text, yaml.CSafeLoader)


def _floor_all(text: str) -> None:
    yaml.load(text, _PermissiveCLoader)


def _pass(texts: list[str], load: Callable[[str], Any], clock: Callable[[], float]) -> tuple[float, int]:
    failures = 0
    start = clock()
    for text in texts:
        try:
            load(text)
        except yaml.YAMLError:
            failures += 1
    return clock() - start, failures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    args = parser.parse_args()
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    with CORPUS.open(encoding="utf-8") as lines:
        texts = [json.loads(line)["audited_changes"] for line in lines]
    candidates: dict[str, Callable[[str], Any]] = {
        "floor: yaml.load(text, CSafeLoader)": _floor,
        "floor, all rows built (permissive CSafeLoader)": _floor_all,
        "load_audited_changes, libyaml": lambda text: load_audited_changes(text, backend="libyaml"),
        "load_audited_changes, python": lambda text: load_audited_changes(text, backend="python"),
    }
    versions = f"python {platform.python_version()}, PyYAML {yaml.__version__}"
    print(f"{versions}, {len(texts)} rows, {args.repeat} passes, {args.clock} clock, interleaved")
    times: dict[str, list[float]] = {name: [] for name in candidates}
    failed: dict[str, int] = {}
    for round_ in range(args.repeat):
        for name, load in candidates.items():
            if "python" in name and round_ >= max(2, args.repeat // 3):
                continue  # the pure backend is ~9x slower: fewer passes keep the run short
            seconds, failed[name] = _pass(texts, load, clock)
            times[name].append(seconds)
    best: dict[str, float] = {}
    for name in candidates:
        runs, failures = times[name], failed[name]
        best[name] = min(runs)
        print(
            f"{name:50} best {min(runs) * 1000:8.1f} ms  median {statistics.median(runs) * 1000:8.1f} ms"
            f"  {len(texts) / min(runs):9.0f} rows/s  failed rows {failures}"
        )
    floor = best["floor: yaml.load(text, CSafeLoader)"]
    full = best["floor, all rows built (permissive CSafeLoader)"]
    loader = best["load_audited_changes, libyaml"]
    print(f"ratio loader/floor: {loader / floor:.2f}x   loader/floor-all-rows-built: {loader / full:.2f}x")
    medians = {name: statistics.median(runs) for name, runs in times.items()}
    print(
        "ratio of medians loader/floor: "
        f"{medians['load_audited_changes, libyaml'] / medians['floor: yaml.load(text, CSafeLoader)']:.2f}x"
    )


if __name__ == "__main__":
    main()
