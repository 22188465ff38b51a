"""Mongo adapter: document encoding and the store's batch insert on mongomock.

Run from the repository root: ``.venv/bin/python benchmarks/bench_mongo.py``. mongomock is pure
Python, so its figures bound our own overhead, not a real server's throughput.
"""

from __future__ import annotations

import sys

import bson
import mongomock

from _machine import best_wall, uptime

sys.path.insert(0, "tests")  # the log builder lives with the tests

from crm_audit_adapters.mongo import MongoActivityLogStore, apply_migration, encode_activity_log
from support.mongo import activity_log

N = 2000


def insert_all(logs: list) -> None:
    db = mongomock.MongoClient()["bench"]
    apply_migration(db, "up")
    store = MongoActivityLogStore(db.activity_logs)
    for start in range(0, len(logs), 20):
        store.insert_batch(logs[start : start + 20])


class NullCollection:
    """Accepts every insert and does nothing: what is left is the store's own work per batch."""

    def insert_many(self, documents: list, ordered: bool = True) -> None:
        return None


def store_overhead(logs: list) -> None:
    store = MongoActivityLogStore(NullCollection())  # type: ignore[arg-type]
    for start in range(0, len(logs), 20):
        store.insert_batch(logs[start : start + 20])


def main() -> None:
    print(f"load before: {uptime()}")
    logs = [activity_log(n) for n in range(1, N + 1)]
    encode = best_wall(lambda: [encode_activity_log(log) for log in logs], 5)
    encode_bson = best_wall(lambda: [bson.encode(encode_activity_log(log)) for log in logs], 5)
    overhead = best_wall(lambda: store_overhead(logs), 5)
    insert = best_wall(lambda: insert_all(logs), 3)
    print(f"encode_activity_log: {N / encode:,.0f} logs/s ({encode / N * 1e6:.1f} µs/log)")
    print(f"encode + bson.encode: {N / encode_bson:,.0f} logs/s ({encode_bson / N * 1e6:.1f} µs/log)")
    print(f"insert_batch x20, store's own work (no database): {N / overhead:,.0f} logs/s")
    print(f"insert_batch x20 on mongomock (unique index): {N / insert:,.0f} logs/s")
    print(f"load after: {uptime()}")


if __name__ == "__main__":
    main()
