"""Files adapters: read throughput (JSONL, psql CSV) on the corpus, sink write throughput, sink reopen."""

import pathlib
import sys
import tempfile
import time

sys.path.insert(0, "tests")
from crm_audit_adapters.files import JsonlActivityLogSink, read_audit_rows
from integration.test_files_audits import write_psql_csv
from support.mongo import activity_log

F = pathlib.Path("tests/fixtures/audited-5.8.0/audits.jsonl")


def best(fn, n=5):
    r = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        r.append(time.perf_counter() - t)
    return min(r)


rows = list(read_audit_rows(F))
with tempfile.TemporaryDirectory() as d:
    d = pathlib.Path(d)
    csvs = []
    for t in ("acme", "globex", "nusantara_retail"):
        p = d / f"{t}.csv"
        write_psql_csv(p, [r for r in rows if r.tenant == t])
        csvs.append((p, t))
    size_j = F.stat().st_size
    size_c = sum(p.stat().st_size for p, _ in csvs)
    tj = best(lambda: sum(1 for _ in read_audit_rows(F)))
    tc = best(lambda: sum(1 for p, t in csvs for _ in read_audit_rows(p, t)))
    print(
        f"jsonl read: {len(rows)} rows, {size_j / 1e6:.2f} MB, {tj * 1e3:.1f} ms -> {len(rows) / tj:,.0f} rows/s"
    )
    print(
        f"csv read:   {len(rows)} rows, {size_c / 1e6:.2f} MB, {tc * 1e3:.1f} ms -> {len(rows) / tc:,.0f} rows/s"
    )
    logs = [activity_log(i) for i in range(1, 10001)]
    for fsync in (False, True):

        def run():
            p = d / f"out-{fsync}.jsonl"
            if p.exists():
                p.unlink()
            with JsonlActivityLogSink(p, fsync=fsync) as s:
                for i in range(0, len(logs), 20):
                    s.insert_batch(logs[i : i + 20])

        ts = best(run, 3)
        print(
            f"sink write fsync={fsync}: 10000 logs in batches of 20, {ts * 1e3:.0f} ms -> {len(logs) / ts:,.0f} logs/s"
        )
    p = d / "out-False.jsonl"
    to = best(lambda: JsonlActivityLogSink(p).close(), 3)
    print(f"sink reopen (10000 lines recovered): {to * 1e3:.1f} ms")
