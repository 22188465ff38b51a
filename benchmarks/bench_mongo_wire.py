"""The MongoDB write path measured client-side: documents/s, and where this process spends the time.

    .venv/bin/python benchmarks/bench_mongo_wire.py [--logs 20000] [--repeat 3] [--uri mongodb://…]

Without ``--uri`` (or ``CRM_AUDIT_TEST_MONGO_URI``) it starts the wire-protocol emulator the tests
use (``tests/support/mongo_emulator.py``: mongoeco's in-memory engine in its own process, on
127.0.0.1). **The emulator is not MongoDB**: it is Python, so how fast it stores a document says
nothing about a MongoDB server; only the client-side shares are figures about this library.

The logs are the corpus's migrated logs (``transform_corpus`` over every tenant), repeated under
fresh ``external_id``s up to ``--logs``. Each round, in an order rotated per round, times:

* ``encode``: ``encode_activity_log`` of every log — our converter, domain → BSON-ready dict;
* ``bson``: ``bson.encode`` of every such dict — the C encoding pymongo does inside ``insert_many``;
* ``store``: ``MongoActivityLogStore.insert_batch`` in batches of 20 (the run's batch) into a
  collection that accepts and drops everything — the store's own work without a database;
* ``insert``: the same batches into the server, in a fresh database (with migration 035's indexes
  when ``--indexes``): the store hands pymongo each document's BSON, encoded once;
* ``insert_dicts``: the same, the store handing pymongo the dicts, which it encodes again (what the
  store did before it kept the bytes of its size check).
  Wall time and this process's CPU time (``time.process_time``) are both taken.

From the best of each: the client's CPU per document of ``insert`` splits into ours (``encode`` and
the store's bookkeeping), BSON (``bson``), and the driver (pymongo's Python: the command, the
batch split, the session, the reply; what is left of the client CPU); the rest of the wall time is
the wire and the server (this process waits on its socket). ``--profile`` also runs one ``insert``
pass under cProfile and sums its own time by package as a cross-check.
"""

from __future__ import annotations

import cProfile
import os
import pstats
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import bson
import pymongo

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # the emulator harness lives with the tests

from _machine import Stopwatch, arguments, uptime  # noqa: E402
from crm_audit_adapters.mongo import MongoActivityLogStore, apply_migration, encode_activity_log  # noqa: E402
from crm_audit_transform.config import load_default_config  # noqa: E402
from crm_audit_transform.domain import ActivityLog, Migrated  # noqa: E402
from crm_audit_transform.testing.golden import corpus_tenants, transform_corpus  # noqa: E402

BATCH = 20


def corpus_logs(count: int) -> list[ActivityLog]:
    """The corpus's migrated logs, repeated with distinct external ids until there are ``count``."""
    config = load_default_config()
    base = [
        outcome.log
        for tenant in corpus_tenants()
        for outcome in transform_corpus(config, tenant).outcomes
        if isinstance(outcome, Migrated)
    ]
    return [
        attrs.evolve(log, external_id=f"{log.external_id}:{n // len(base)}")
        for n, log in zip(range(count), _cycle(base), strict=False)
    ]


def _cycle(items: Sequence[ActivityLog]) -> Iterator[ActivityLog]:
    while True:
        yield from items


class _DroppingCollection:
    """Accepts every insert and keeps nothing: the store's own work per batch, without a database."""

    def insert_many(self, documents: list[Any], ordered: bool = True) -> None:
        return None


class _DictsOnly:
    """A pymongo collection behind a wrapper, so the store hands it dicts to encode (as before)."""

    def __init__(self, collection: Any) -> None:
        self._collection = collection

    def __getattr__(self, name: str) -> Any:
        return getattr(self._collection, name)


@contextmanager
def server(uri: str | None) -> Iterator[tuple[str, str]]:
    """(URI, what it is): the given server, else the emulator for as long as the block runs."""
    if uri:
        yield uri, "the server at the given URI"
        return
    from support.mongo_emulator import MongoEmulator

    with MongoEmulator() as emulator_uri:
        yield emulator_uri, "the mongoeco wire-protocol emulator (in-memory engine), NOT MongoDB"


def _batches(logs: Sequence[ActivityLog]) -> Iterator[Sequence[ActivityLog]]:
    for start in range(0, len(logs), BATCH):
        yield logs[start : start + BATCH]


def main() -> int:
    parser = arguments(__doc__, repeat=3)
    parser.add_argument("--logs", type=int, default=20_000)
    parser.add_argument("--uri", default=os.environ.get("CRM_AUDIT_TEST_MONGO_URI"))
    parser.add_argument("--profile", action="store_true", help="one extra insert pass under cProfile")
    parser.add_argument(
        "--indexes",
        action="store_true",
        help="apply migration 035 first (the emulator's unique index is slow; the client's work is alike)",
    )
    args = parser.parse_args()
    logs = corpus_logs(args.logs)
    docs = [encode_activity_log(log) for log in logs]
    print(f"{len(logs):,} logs, {sum(len(bson.encode(d)) for d in docs) / len(docs):,.0f} BSON bytes each")
    print(f"load before: {uptime()}")
    with server(args.uri) as (uri, what):
        print(f"server: {what}")
        client: pymongo.MongoClient[Any] = pymongo.MongoClient(uri)
        rounds = 0

        took: dict[str, tuple[float, float]] = {}

        def insert(dicts: bool = False) -> None:
            nonlocal rounds
            rounds += 1
            name = f"crm_audit_bench_wire_{os.getpid()}_{rounds}"
            client.drop_database(name)
            db = client[name]
            if args.indexes:
                apply_migration(db, "up")
            collection: Any = _DictsOnly(db.activity_logs) if dicts else db.activity_logs
            store = MongoActivityLogStore(collection)
            try:
                with Stopwatch() as batches:
                    for batch in _batches(logs):
                        store.insert_batch(batch)
                took["insert_dicts" if dicts else "insert"] = (batches.wall, batches.cpu)
                if db.activity_logs.count_documents({}) != len(logs):
                    raise RuntimeError("the server did not keep every document")
            finally:
                client.drop_database(name)

        def store_only() -> None:
            store = MongoActivityLogStore(_DroppingCollection())  # type: ignore[arg-type]
            for batch in _batches(logs):
                store.insert_batch(batch)

        candidates: dict[str, Callable[[], object]] = {
            "encode": lambda: [encode_activity_log(log) for log in logs],
            "bson": lambda: [bson.encode(doc) for doc in docs],
            "store": store_only,
            "insert": insert,
            "insert_dicts": lambda: insert(dicts=True),
        }
        best: dict[str, tuple[float, float]] = {}
        for round_ in range(args.repeat):
            names = list(candidates)
            names = names[round_ % len(names) :] + names[: round_ % len(names)]
            for name in names:
                with Stopwatch() as call:
                    candidates[name]()
                wall, cpu = call.wall, call.cpu
                if name in took:
                    wall, cpu = took[name]  # the batches alone, without the database's setup
                old = best.get(name)
                best[name] = (min(wall, old[0]), min(cpu, old[1])) if old else (wall, cpu)
                print(f"round {round_ + 1} {name}: {wall:.3f} s wall, {cpu:.3f} s CPU")
        profile = _profile(insert) if args.profile else None
        client.close()
    print(f"load after: {uptime()}")
    report(len(logs), best, what, profile)
    return 0


def _profile(insert: Callable[[], None]) -> dict[str, float]:
    """Own time of one insert pass by package (cProfile), in seconds."""
    profiler = cProfile.Profile()
    profiler.enable()
    insert()
    profiler.disable()
    stats = pstats.Stats(profiler)
    shares: dict[str, float] = {}
    for (filename, _, function), row in stats.stats.items():  # type: ignore[attr-defined]
        own = row[2]
        if "crm_audit" in filename:
            key = "ours (crm_audit_*)"
        elif "bson" in filename or "bson" in function or "_cbson" in function or "encode" in function:
            key = "bson"
        elif "recv" in function or "select" in function or "poll" in function or "sendall" in function:
            key = "socket (waiting on the server)"
        elif "pymongo" in filename:
            key = "pymongo (Python)"
        else:
            key = "other"
        shares[key] = shares.get(key, 0.0) + own
    return shares


def report(
    count: int, best: dict[str, tuple[float, float]], what: str, profile: dict[str, float] | None
) -> None:
    """The client-side split of one document's insert, from the best pass of each candidate.

    ``store`` (no database) is our whole part: ``encode_activity_log``, the store's own BSON
    encode(s) (its size check) and bookkeeping. What ``insert`` spends on CPU beyond it is the
    driver, which BSON-encodes the batch it sends unless it is handed encoded documents.
    """
    per = 1e6 / count
    wall, cpu = best["insert"]
    encode, bson_, store = best["encode"][1], best["bson"][1], best["store"][1]
    driver = max(cpu - store, 0.0)
    waiting = max(wall - cpu, 0.0)
    print(f"\nserver: {what}")
    print(f"insert_batch x{BATCH}: {count / wall:,.0f} documents/s wall ({wall * per:.1f} µs a document)")
    print(f"one bson.encode of a document: {bson_ * per:.1f} µs; encode_activity_log: {encode * per:.1f} µs")
    print("\n| part of one document's insert (client side) | µs | share of wall |\n|---|---:|---:|")
    rows = [
        ("ours: the store without a database (encode_activity_log, size check, ids, results)", store),
        ("the driver (pymongo: BSON of what it sends, the command, the reply)", driver),
        ("waiting: the wire and the server (not this process's CPU)", waiting),
    ]
    for label, seconds in rows:
        print(f"| {label} | {seconds * per:.1f} | {seconds / wall:.0%} |")
    print(f"| total (wall) | {wall * per:.1f} | 100% |")
    print(f"\nclient CPU {cpu * per:.1f} µs a document: ours {store / cpu:.0%}, driver {driver / cpu:.0%}")
    if "insert_dicts" in best:
        dicts_cpu = best["insert_dicts"][1]
        print(
            f"handing pymongo dicts instead (BSON encoded twice): {dicts_cpu * per:.1f} µs of client CPU a"
            f" document, {dicts_cpu / cpu:.2f}× the bytes-once figure"
        )
    if profile:
        total = sum(profile.values())
        print("\ncProfile of one insert pass, own time by package:")
        for key, seconds in sorted(profile.items(), key=lambda kv: -kv[1]):
            print(f"  {key}: {seconds:.3f} s ({seconds / total:.0%})")


if __name__ == "__main__":
    sys.exit(main())
