"""The jsonb checks before decoding (``loading._jsonb._check_depth``: nesting depth and values): the
strings cut out of the whole text at once before, a piece at a time now (A/B in one process).

    nice -n 5 .venv/bin/python benchmarks/bench_jsonb_scan.py [--mib 2] [--repeat 5]

A is the check as it was (``_JSON_STRING.sub("0", text)`` over the whole text, then its brackets
summed 1 MiB at a time and its values counted from it, kept here), B the shipped one
(``json_scan.bare_pieces``: ~16 KiB of the text at a time, a string past a piece passed over by one
match). Inputs of about ``--mib`` MiB each: ``"",`` (the shape the change is for), ``"" ,``, a typical
jsonb row repeated, wide arrays, one string of ``\\"`` escapes, non-ASCII strings. For each, the peak
of what the check allocates (tracemalloc, a run of its own, as a ratio to the text's size) and its CPU
time (``time.process_time``, tracemalloc off, A and B alternating, best of ``--repeat``); both must
give the same count (asserted). ``uptime`` before and after.
"""

from __future__ import annotations

import itertools
import json
import re
import sys
import tracemalloc
from collections.abc import Callable
from functools import partial

from _machine import arguments, cpu_seconds, uptime
from crm_audit_transform.errors import LimitExceeded
from crm_audit_transform.loading import _jsonb

LIMIT = 100
_JSON_STRING = re.compile(r'"[^"\\]*+(?:\\.?[^"\\]*+)*+"?', re.S)
_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_NOT_BRACKETS = bytes(byte for byte in range(256) if byte not in b"[]{}")
_NO_BLANKS = str.maketrans("", "", " \t\n\r")
_CHUNK = 1 << 20


def whole(text: str, max_depth: int) -> int:
    """The check before: the strings cut out of the whole text, its depth summed, its values counted."""
    stripped = _JSON_STRING.sub("0", text)
    depth = 0
    for start in range(0, len(stripped), _CHUNK):
        steps = (
            stripped[start : start + _CHUNK].encode("utf-8", "surrogatepass").translate(_STEPS, _NOT_BRACKETS)
        )
        sums = itertools.accumulate(memoryview(steps).cast("b"), initial=depth)
        next(sums)
        passed = next(filter(max_depth.__lt__, sums), None)
        if passed is not None:
            raise LimitExceeded("nesting depth", max_depth, passed)
        depth += steps.count(1) - steps.count(0xFF)
    bare = stripped.translate(_NO_BLANKS)
    collections = bare.count("[") + bare.count("{")
    return 1 + bare.count(",") + collections - bare.count("[]") - bare.count("{}")


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
        '`"",` repeated': '{"a": [' + '"",' * (size // 3) + '""]}',
        '`"" ,` repeated': '{"a": [' + '"" ,' * (size // 4) + '""]}',
        "a typical jsonb row repeated": '{"a": [' + ",".join([row] * (size // len(row))) + "]}",
        "wide arrays, `[],` repeated": '{"a": [' + "[]," * (size // 3) + "[]]}",
        'one string of `\\"`': '{"a": "' + '\\"' * (size // 2) + '"}',
        'non-ASCII strings, `"é",`': '{"a": [' + '"é",' * (size // 5) + '""]}',
    }


def count(check: Callable[[str, int], int], text: str) -> int | None:
    try:
        return check(text, LIMIT)
    except LimitExceeded:
        return None


def peak(check: Callable[[str, int], int], text: str) -> int:
    tracemalloc.start()
    try:
        count(check, text)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def main() -> int:
    parser = arguments(__doc__, repeat=5)
    parser.add_argument("--mib", type=int, default=2)
    args = parser.parse_args()
    texts = inputs(args.mib)
    checks = {"A": whole, "B": _jsonb._check_depth}
    for name, text in texts.items():
        assert count(whole, text) == count(_jsonb._check_depth, text), name
    print(f"load before: {uptime()}")
    peaks = {(name, ab): peak(check, text) for name, text in texts.items() for ab, check in checks.items()}
    best = {(name, ab): float("inf") for name in texts for ab in checks}
    for _ in range(args.repeat):
        for name, text in texts.items():
            for ab, check in checks.items():
                best[name, ab] = min(best[name, ab], cpu_seconds(partial(count, check, text)))
    print(f"load after: {uptime()}")
    print("\n| input | MB | A peak × text | B peak × text | A/B peak | A s CPU | B s CPU | A/B CPU |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, text in texts.items():
        size = len(text.encode("utf-8"))
        pa, pb = peaks[name, "A"], peaks[name, "B"]
        a, b = best[name, "A"], best[name, "B"]
        print(
            f"| {name} | {size / 1e6:.1f} | {pa / size:.2f} | {pb / size:.3f} | {pa / max(pb, 1):.1f} | "
            f"{a:.4f} | {b:.4f} | {a / b if b else float('inf'):.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
