"""The run loop over in-memory ports, per corpus tenant: rows/s of prepare → lookups → transform → write.

Run from tests/ so the corpus helpers import:
    cd tests && PYTHONPATH=. ../.venv/bin/python ../benchmarks/run_loop_in_memory.py
"""

from __future__ import annotations

import statistics
import time

from crm_audit_transform.usecases import RunSettings
from support.corpus_account import World

for tenant in ("acme", "globex", "nusantara_retail"):
    times = []
    for _ in range(5):
        world = World(tenant)
        world.trigger()
        start = time.perf_counter()
        job = world.run(settings=RunSettings(halt_threshold=1.0)).job
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    rate = job.tally.processed / median
    print(
        f"{tenant}: {job.tally.processed} rows, median {median:.3f} s, {rate:,.0f} rows/s,"
        f" migrated {job.tally.migrated}, failed {job.tally.failed_total}"
    )
