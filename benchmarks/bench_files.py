"""Files adapters: read throughput (JSONL, psql CSV) on the corpus, sink writes, sink reopen.

Run from the repository root: ``.venv/bin/python benchmarks/bench_files.py``.
"""

from __future__ import annotations

import pathlib
import sys
import tempfile

from _machine import best_wall, uptime

sys.path.insert(0, "tests")  # the psql-style CSV writer and the log builder live with the tests

from crm_audit_adapters.files import JsonlActivityLogSink, read_audit_rows
from integration.test_files_audits import write_psql_csv
from support.mongo import activity_log

CORPUS = pathlib.Path("tests/fixtures/audited-5.8.0/audits.jsonl")
TENANTS = ("acme", "globex", "nusantara_retail")


def write_logs(path: pathlib.Path, logs: list, fsync: bool) -> None:
    path.unlink(missing_ok=True)
    with JsonlActivityLogSink(path, fsync=fsync) as sink:
        for start in range(0, len(logs), 20):
            sink.insert_batch(logs[start : start + 20])


def main() -> None:
    print(f"load before: {uptime()}")
    rows = list(read_audit_rows(CORPUS))
    with tempfile.TemporaryDirectory() as tmp:
        directory = pathlib.Path(tmp)
        csvs = []
        for tenant in TENANTS:
            path = directory / f"{tenant}.csv"
            write_psql_csv(path, [row for row in rows if row.tenant == tenant])
            csvs.append((path, tenant))
        jsonl_mb = CORPUS.stat().st_size / 1e6
        csv_mb = sum(path.stat().st_size for path, _ in csvs) / 1e6
        jsonl_s = best_wall(lambda: sum(1 for _ in read_audit_rows(CORPUS)), 5)
        csv_s = best_wall(lambda: sum(1 for path, tenant in csvs for _ in read_audit_rows(path, tenant)), 5)
        n = len(rows)
        print(f"jsonl read: {n} rows, {jsonl_mb:.2f} MB, {jsonl_s * 1e3:.1f} ms, {n / jsonl_s:,.0f} rows/s")
        print(f"csv read:   {n} rows, {csv_mb:.2f} MB, {csv_s * 1e3:.1f} ms, {n / csv_s:,.0f} rows/s")
        logs = [activity_log(i) for i in range(1, 10001)]
        for fsync in (False, True):
            path = directory / f"out-{fsync}.jsonl"
            seconds = best_wall(lambda path=path, fsync=fsync: write_logs(path, logs, fsync), 3)
            print(f"sink fsync={fsync}: {len(logs)} logs, batches of 20, {seconds * 1e3:.0f} ms", end="")
            print(f", {len(logs) / seconds:,.0f} logs/s")
        reopen = best_wall(lambda: JsonlActivityLogSink(directory / "out-False.jsonl").close(), 3)
        print(f"sink reopen over {len(logs)} lines: {reopen * 1e3:.1f} ms")
    print(f"load after: {uptime()}")


if __name__ == "__main__":
    main()
