"""Rollback of one account: one delete of the whole account against deletes in chunks.

    .venv/bin/python benchmarks/bench_rollback.py [--logs 100000] [--chunk 1000] [--repeat 3]
        [--backend wire|mongomock] [--uri mongodb://…]

Each round fills a fresh database with ``--logs`` migrated logs of one account (and 100 of another,
which must stay) and a completed job, then times ``usecases.rollback`` over ``MongoJobStore`` and
``MongoActivityLogStore``, in an order that alternates per round:

* ``whole``: the store offered as plain ``MigratedLogs`` (``delete_migrated``: one ``delete_many``
  of the account, after one renewal of the hold) — the rollback as it deleted before chunks;
* ``chunks``: the store as it is (``MigratedLogsInChunks``): a ``find`` of at most ``--chunk``
  ``_id``s, a renewal of the hold, a ``delete_many`` by those ids, until none is left.

Wall time and this process's CPU time. Without ``--uri`` the backend is the wire-protocol emulator
the tests use (mongoeco's in-memory engine in its own process: **not MongoDB**, Python, and its
``_id`` lookups may scan) or mongomock in this process; the ratio says what chunks cost on that
backend, not on a MongoDB server, where each chunk is an indexed ``_id`` lookup.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bson import ObjectId

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # the emulator harness lives with the tests

from _machine import Stopwatch, arguments, uptime  # noqa: E402
from crm_audit_adapters.mongo import MongoActivityLogStore, MongoJobStore  # noqa: E402
from crm_audit_transform.domain import SOURCE_TAG  # noqa: E402
from crm_audit_transform.jobs import COMPLETED, ROLLED_BACK, MigrationJob  # noqa: E402
from crm_audit_transform.ports import MigratedLogs  # noqa: E402
from crm_audit_transform.testing import FixedClock  # noqa: E402
from crm_audit_transform.usecases.rollback import RollbackPorts, rollback  # noqa: E402

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
LEASE = dt.timedelta(minutes=2)
COMPANY = "company-a"


class _Whole:
    """The store as plain ``MigratedLogs``: rollback deletes the account in one ``delete_many``."""

    def __init__(self, store: MongoActivityLogStore) -> None:
        self._store = store

    def delete_migrated(self, company_sso_id: str) -> int:
        return self._store.delete_migrated(company_sso_id)

    def count_migrated(self, company_sso_id: str) -> int:
        return self._store.count_migrated(company_sso_id)


@contextmanager
def database(backend: str, uri: str | None) -> Iterator[Callable[[str], Any]]:
    """A function that gives a fresh database by name, on the chosen backend."""
    if backend == "mongomock":
        import mongomock

        client: Any = mongomock.MongoClient()
        yield lambda name: client[name]
        return
    import pymongo

    if uri:
        real: Any = pymongo.MongoClient(uri)
        yield lambda name: real[name]
        real.close()
        return
    from support.mongo_emulator import MongoEmulator

    with MongoEmulator() as emulator_uri:
        wire: Any = pymongo.MongoClient(emulator_uri)
        yield lambda name: wire[name]
        wire.close()


def fill(db: Any, logs: int) -> None:
    """``logs`` migrated logs of the account, 100 of another, and a completed job."""

    def doc(company: str, n: int) -> dict[str, Any]:
        return {
            "_id": ObjectId(),
            "company_sso_id": company,
            "source_tag": SOURCE_TAG,
            "external_id": f"crm:tenant_a:audit:{n}",
            "action": "update",
            "occurred_at": T0,
        }

    for start in range(0, logs, 10_000):
        db.activity_logs.insert_many([doc(COMPANY, n) for n in range(start, min(logs, start + 10_000))])
    db.activity_logs.insert_many([doc("company-b", n) for n in range(100)])
    job = MigrationJob(
        job_id="job-1",
        company_sso_id=COMPANY,
        tenant="tenant_a",
        status=COMPLETED,
        cutoff=T0,
        created_at=T0,
        updated_at=T0,
    )
    MongoJobStore(db.jobs, clock=FixedClock(T0)).create(job)


def main() -> int:
    parser = arguments(__doc__, repeat=3)
    parser.add_argument("--logs", type=int, default=100_000)
    parser.add_argument("--chunk", type=int, default=1000)
    parser.add_argument("--backend", choices=["wire", "mongomock"], default="wire")
    parser.add_argument("--uri", default=os.environ.get("CRM_AUDIT_TEST_MONGO_URI"))
    args = parser.parse_args()
    load = uptime()
    print(f"{args.logs:,} logs of one account, chunk {args.chunk}, backend {args.uri or args.backend}")
    print(f"load before: {load}")
    best: dict[str, tuple[float, float]] = {}
    with database(args.backend, args.uri) as fresh:
        for round_ in range(args.repeat):
            names = ["whole", "chunks"] if round_ % 2 == 0 else ["chunks", "whole"]
            for name in names:
                db = fresh(f"crm_audit_bench_rollback_{os.getpid()}_{round_}_{name}")
                db.activity_logs.drop()
                db.jobs.drop()
                fill(db, args.logs)
                store = MongoActivityLogStore(db.activity_logs)
                logs: MigratedLogs = _Whole(store) if name == "whole" else store
                jobs = MongoJobStore(db.jobs, clock=FixedClock(T0) if args.backend == "mongomock" else None)
                ports = RollbackPorts(jobs, logs, FixedClock(T0), LEASE, chunk=args.chunk)
                with Stopwatch() as took:
                    result = rollback(COMPANY, ports)
                wall, cpu = took.wall, took.cpu
                job = jobs.get("job-1")
                assert job is not None
                if (result.deleted, job.logs_deleted, job.status) != (args.logs, args.logs, ROLLED_BACK):
                    raise RuntimeError(
                        f"{name}: {result.deleted} deleted, job {job.logs_deleted} {job.status}"
                    )
                if store.count_migrated("company-b") != 100:
                    raise RuntimeError(f"{name}: another account's logs went")
                db.activity_logs.drop()
                db.jobs.drop()
                old = best.get(name)
                best[name] = (min(wall, old[0]), min(cpu, old[1])) if old else (wall, cpu)
                print(f"round {round_ + 1} {name}: {wall:.3f} s wall, {cpu:.3f} s CPU")
    print(f"load after: {uptime()}")
    (whole_wall, whole_cpu), (chunks_wall, chunks_cpu) = best["whole"], best["chunks"]
    print(
        f"best: whole {whole_wall:.3f} s wall / {whole_cpu:.3f} s CPU; chunks {chunks_wall:.3f} s wall / "
        f"{chunks_cpu:.3f} s CPU; chunks / whole {chunks_wall / whole_wall:.2f} x wall, "
        f"{chunks_cpu / whole_cpu:.2f} x CPU"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
