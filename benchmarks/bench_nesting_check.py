"""The cost of the MongoDB nesting check in the log encoders (A/B in one process).

Run from the repository root: ``nice -n 5 .venv/bin/python benchmarks/bench_nesting_check.py``.
The logs are the acme corpus tenant's, migrated in memory (every kind of value the loader makes,
lists and hashes included), repeated to ``ROUNDS`` passes. A is ``documents.encode_leaf`` without the
check, B the shipped one; each pass encodes every log to BSON bytes (the store, the ``--workers``
encoder) and to a JSONL line (the dry run's sink). CPU time, A and B alternating, best of ``REPEAT``.
"""

from __future__ import annotations

import sys

import bson

sys.path.insert(0, "tests")  # the corpus world lives with the tests

from _machine import cpu_seconds
from crm_audit_adapters.mongo import documents
from crm_audit_adapters.mongo.documents import encode_activity_log
from crm_audit_adapters.mongo.extended_json import relaxed_json_bytes
from crm_audit_transform.usecases import RunSettings
from support.corpus_account import World

ROUNDS = 20
REPEAT = 7


def _unchecked_leaf(value: object, encoder: documents.ValueEncoder, room: int) -> object:
    """``encode_leaf`` as it was before the nesting check."""
    if type(value) is float and value - value == 0.0:
        return value
    return encoder.value(value)  # type: ignore[arg-type]


def main() -> None:
    world = World("acme")
    world.trigger()
    world.run(settings=RunSettings(halt_threshold=1.0))
    logs = list(world.logs.logs) * ROUNDS
    containers = sum(
        1
        for log in world.logs.logs
        for c in log.changes
        for v in (c.from_, c.to)
        if isinstance(v, list | dict)
    )
    checked = documents.encode_leaf

    def work() -> None:
        for log in logs:
            bson.encode(encode_activity_log(log))
            relaxed_json_bytes(log)

    best = {"A": float("inf"), "B": float("inf")}
    for _ in range(REPEAT):
        for name, leaf in (("A", _unchecked_leaf), ("B", checked)):
            documents.encode_leaf = leaf  # type: ignore[assignment]
            best[name] = min(best[name], cpu_seconds(work))
    documents.encode_leaf = checked  # type: ignore[assignment]
    print(
        f"logs per pass: {len(logs)} ({len(world.logs.logs)} corpus logs x {ROUNDS}); "
        f"list/hash values per corpus pass: {containers}"
    )
    print(
        f"A (no check): {best['A']:.3f} s CPU  B (check): {best['B']:.3f} s CPU  "
        f"B/A: {best['B'] / best['A']:.3f}"
    )


if __name__ == "__main__":
    main()
