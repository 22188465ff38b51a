"""``load_audited_changes`` on each backend against a bare libyaml parse of the same corpus texts.

    .venv/bin/python benchmarks/bench_loader.py [--repeat 7] [--clock wall|cpu] [--with-python]

Every pass loads all 2,403 ``audited_changes`` texts of tests/fixtures/audited-5.8.0 once. The
candidates are interleaved: round ``r`` runs one pass of each, in an order rotated by ``r``, so a
busy moment of the shared machine hits them alike; each figure is the best and the median over
``--repeat`` rounds (rows/s from the best). ``uptime`` is printed before and after. ``--clock cpu``
times with ``time.process_time`` (this process's CPU time), which a busy shared machine does not
inflate the way it inflates wall time.

* floor: ``yaml.load(text, yaml.CSafeLoader)`` — C parse, PyYAML's resolver and constructors. It
  fails on every row with a Ruby tag, so it is an optimistic floor.
* floor, all rows built: the same, with a do-nothing constructor for ``!ruby/...`` tags so that
  every row is built in full (what the floor would cost if it could read the corpus).
* loader (compiled, libyaml, python): ``load_audited_changes`` on each available backend.

Any exception a candidate raises on a row counts that row as failed (a ``ValueError`` from an
invalid date as much as a ``YAMLError``); it never stops the benchmark.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from _machine import arguments, uptime
from crm_audit_transform.loading import available_backends, load_audited_changes

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "audited-5.8.0" / "audits.jsonl"
FLOOR = "floor: yaml.load(text, CSafeLoader)"
FLOOR_ALL = "floor, all rows built (permissive CSafeLoader)"


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


def one_pass(texts: list[str], load: Callable[[str], Any], clock: Callable[[], float]) -> tuple[float, int]:
    """Seconds for one pass, and how many rows raised (any exception)."""
    failures = 0
    start = clock()
    for text in texts:
        try:
            load(text)
        except Exception:
            failures += 1
    return clock() - start, failures


def main() -> None:
    parser = arguments(__doc__, repeat=7)
    parser.add_argument("--with-python", action="store_true", help="also the pure-Python parser (slow)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    args = parser.parse_args()
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    with CORPUS.open(encoding="utf-8") as lines:
        texts = [json.loads(line)["audited_changes"] for line in lines]
    candidates: dict[str, Callable[[str], Any]] = {FLOOR: _floor, FLOOR_ALL: _floor_all}
    for backend in available_backends():
        if backend != "python" or args.with_python:
            candidates[f"load_audited_changes, {backend}"] = lambda text, b=backend: load_audited_changes(
                text, backend=b
            )
    versions = f"python {platform.python_version()}, PyYAML {yaml.__version__}"
    print(f"{versions}, {len(texts)} rows, {args.repeat} interleaved rounds, {args.clock} clock")
    print(f"load before: {uptime()}")
    names = list(candidates)
    times: dict[str, list[float]] = {name: [] for name in names}
    failed: dict[str, int] = {}
    for round_ in range(args.repeat):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            seconds, failed[name] = one_pass(texts, candidates[name], clock)
            times[name].append(seconds)
    print(f"load after: {uptime()}")
    for name in names:
        best, median = min(times[name]), statistics.median(times[name])
        print(
            f"{name:50} best {best * 1000:8.1f} ms  median {median * 1000:8.1f} ms"
            f"  {len(texts) / best:9.0f} rows/s  failed rows {failed[name]}"
        )
    for backend in ("compiled", "libyaml"):
        name = f"load_audited_changes, {backend}"
        if name in times:
            loader = min(times[name])
            print(
                f"ratio {backend}/floor: {loader / min(times[FLOOR]):.2f}x   "
                f"{backend}/floor-all-rows-built: {loader / min(times[FLOOR_ALL]):.2f}x"
            )


if __name__ == "__main__":
    main()
