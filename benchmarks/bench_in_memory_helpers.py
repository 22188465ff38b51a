"""The in-memory stores' size check as it was (the property test's reference) and as it is, in one
process.

Run from the repository root: ``nice -n 5 .venv/bin/python benchmarks/bench_in_memory_helpers.py``.
The logs are the acme corpus tenant's, migrated in memory (every kind of value the loader makes,
lists and hashes included), repeated to ``--rounds`` passes. Each pass asks every log's refusal
(``log_refusal``: what every in-memory insert asks). CPU time, A and B alternating, best of
``--repeat``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

sys.path.insert(0, "tests")  # the corpus world lives with the tests
sys.path.insert(0, "tests/property")  # the references live with their property test

from test_in_memory_log_limits import refusal_as_built

from _machine import arguments, cpu_seconds
from crm_audit_transform.domain import ActivityLog
from crm_audit_transform.testing._log_limits import log_refusal
from crm_audit_transform.usecases import RunSettings
from support.corpus_account import World


def main() -> None:
    parser = arguments(__doc__, repeat=7)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    world = World("acme")
    world.trigger()
    world.run(settings=RunSettings(halt_threshold=1.0))
    corpus: list[ActivityLog] = list(world.logs.logs)
    logs = corpus * args.rounds
    assert [log_refusal(log) for log in corpus] == [refusal_as_built(log) for log in corpus]
    cases: dict[str, Callable[[ActivityLog], object]] = {
        "refusal A (built)": refusal_as_built,
        "refusal B (log_bytes)": log_refusal,
    }
    best = dict.fromkeys(cases, float("inf"))
    for _ in range(args.repeat):
        for name, fn in cases.items():
            best[name] = min(best[name], cpu_seconds(lambda fn=fn: [fn(log) for log in logs]))
    print(f"logs per pass: {len(logs)} ({len(corpus)} corpus logs x {args.rounds})")
    for name, seconds in best.items():
        print(f"{name}: {seconds:.3f} s CPU, {seconds / len(logs) * 1e6:.2f} us a log")
    refusal = best["refusal B (log_bytes)"] / best["refusal A (built)"]
    print(f"B/A: refusal {refusal:.3f}")


if __name__ == "__main__":
    main()
