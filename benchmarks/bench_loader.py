"""``load_audited_changes`` against a bare libyaml parse of the same corpus texts.

    .venv/bin/python benchmarks/bench_loader.py [--repeat 7]

Every pass loads all 2,403 ``audited_changes`` texts of tests/fixtures/audited-5.8.0 once; each
figure is the best and the median of ``--repeat`` passes (rows/s from the best).

* floor: ``yaml.load(text, yaml.CSafeLoader)`` — C parse, PyYAML's resolver and constructors. It
  fails on every row with a Ruby tag (counted), so it is an optimistic floor.
* floor, all rows built: the same, with a do-nothing constructor for ``!ruby/...`` tags so that
  every row is built in full (what the floor would cost if it could read the corpus).
* loader (libyaml), loader (python): ``load_audited_changes`` on each backend.
The goal: the loader on libyaml costs at most 1.5x the floor.
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


def _passes(texts: list[str], load: Callable[[str], Any], repeat: int) -> tuple[list[float], int]:
    times, failures = [], 0
    for _ in range(repeat):
        failures = 0
        start = time.perf_counter()
        for text in texts:
            try:
                load(text)
            except yaml.YAMLError:
                failures += 1
        times.append(time.perf_counter() - start)
    return times, failures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    with CORPUS.open(encoding="utf-8") as lines:
        texts = [json.loads(line)["audited_changes"] for line in lines]
    candidates: dict[str, Callable[[str], Any]] = {
        "floor: yaml.load(text, CSafeLoader)": _floor,
        "floor, all rows built (permissive CSafeLoader)": _floor_all,
        "load_audited_changes, libyaml": lambda text: load_audited_changes(text, backend="libyaml"),
        "load_audited_changes, python": lambda text: load_audited_changes(text, backend="python"),
    }
    versions = f"python {platform.python_version()}, PyYAML {yaml.__version__}"
    print(f"{versions}, {len(texts)} rows, {args.repeat} passes")
    best: dict[str, float] = {}
    for name, load in candidates.items():
        times, failures = _passes(
            texts, load, args.repeat if "python" not in name else max(2, args.repeat // 3)
        )
        best[name] = min(times)
        print(
            f"{name:50} best {min(times) * 1000:8.1f} ms  median {statistics.median(times) * 1000:8.1f} ms"
            f"  {len(texts) / min(times):9.0f} rows/s  failed rows {failures}"
        )
    floor = best["floor: yaml.load(text, CSafeLoader)"]
    full = best["floor, all rows built (permissive CSafeLoader)"]
    loader = best["load_audited_changes, libyaml"]
    print(f"ratio loader/floor: {loader / floor:.2f}x   loader/floor-all-rows-built: {loader / full:.2f}x")


if __name__ == "__main__":
    main()
