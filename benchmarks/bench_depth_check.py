"""The jsonb nesting check (``loading._jsonb._check_depth``): a Python step a bracket before, C-speed
sums now (A/B in one process).

    nice -n 5 .venv/bin/python benchmarks/bench_depth_check.py [--mib 8] [--repeat 5]

A is the check as it was (a ``finditer`` step a bracket outside strings; the property test's
reference, ``tests/property/test_json_depth_scan.py``), B the shipped one. Inputs of about ``--mib``
MiB each: wide arrays (``[[],[],…]``), wide objects (``{"k0":{},"k1":{},…}``), a typical jsonb row
repeated (strings, numbers, a few nested lists), deep nesting past the limit of 100 (both stop at
the 101st bracket: the strings are stripped first, the same in both), and long strings with few
brackets. CPU time (``time.process_time``), A and B alternating, best of ``--repeat``; the two must
decide alike on every input (asserted). ``uptime`` before and after.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from functools import partial

from _machine import arguments, cpu_seconds, uptime
from crm_audit_transform.errors import LimitExceeded
from crm_audit_transform.loading import check_json_depth

_STRING = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+"', re.S)
_BRACKET = re.compile(r"[\[\]{}]")
LIMIT = 100


def stepwise(text: str, max_depth: int) -> None:
    """The check before (``_check_depth`` up to this change)."""
    depth = 0
    for match in _BRACKET.finditer(_STRING.sub("", text)):
        if match.group() in "[{":
            depth += 1
            if depth > max_depth:
                raise LimitExceeded("nesting depth", max_depth, depth)
        else:
            depth -= 1


def inputs(mib: int) -> dict[str, str]:
    size = mib << 20
    row = json.dumps(
        {
            "name": ["Initech LLC", "Initech, LLC"],
            "amount": ["10.50", "12.00"],
            "tags": [["a", "b"], ["a", "b", "c"]],
            "owner_id": [12, 13],
            "notes": [None, 'called twice, "urgent"'],
        }
    )
    return {
        "wide arrays": "[" + ",".join(["[]"] * (size // 3)) + "]",
        "wide objects": "{" + ",".join(f'"k{i}":{{}}' for i in range(size // 10)) + "}",
        "typical rows": "[" + ",".join([row] * (size // len(row))) + "]",
        "deep past limit": "[" * (size // 2) + "]" * (size // 2),
        "long strings": json.dumps({f"k{i}": "x" * 4096 for i in range(size // 4100)}),
    }


def decide(check: Callable[[str, int], None], text: str) -> int | None:
    try:
        check(text, LIMIT)
    except LimitExceeded as exc:
        return exc.actual
    return None


def main() -> int:
    parser = arguments(__doc__, repeat=5)
    parser.add_argument("--mib", type=int, default=8)
    args = parser.parse_args()
    texts = inputs(args.mib)
    for name, text in texts.items():
        assert decide(stepwise, text) == decide(check_json_depth, text), name
    print(f"load before: {uptime()}")
    best = {(name, ab): float("inf") for name in texts for ab in "AB"}
    for _ in range(args.repeat):
        for name, text in texts.items():
            for ab, check in (("A", stepwise), ("B", check_json_depth)):
                best[name, ab] = min(best[name, ab], cpu_seconds(partial(decide, check, text)))
    print(f"load after: {uptime()}")
    print("\n| input | MiB | A: step a bracket, s CPU | B: C-speed sums, s CPU | A/B |")
    print("|---|---:|---:|---:|---:|")
    for name, text in texts.items():
        a, b = best[name, "A"], best[name, "B"]
        ratio = a / b if b else float("inf")
        print(f"| {name} | {len(text) / (1 << 20):.1f} | {a:.4f} | {b:.4f} | {ratio:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
