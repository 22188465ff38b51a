"""What the file readers hold: a line past its cap, and opening a contacts file, in bytes allocated.

Usage: .venv/bin/python benchmarks/files_memory.py [--ref REV ...]

Each measurement is a tracemalloc peak (bytes allocated above what was held before, not time, so
the machine's load does not move it), taken in its own process:
- ``line``: ``numbered_lines`` passing over (``on_long``) one JSONL line just past a cap of 8 MiB and
  one three times the cap, then reading the line after it;
- ``record``: ``csv_records`` doing the same with a quoted psql CSV field over two lines;
- ``contacts``: opening ``JsonlContactDirectory`` over 15,000 and 150,000 contacts of one company,
  in person id order and shuffled (150,000 is about the 1M-row dry run's count);
- ``members``: ``numbered_lines`` reading an audits line past the cap for its ``tenant`` and ``id``
  (``keep``, ``on_long``: the audits reader's way) whose ``tenant`` is the long value, then the line
  after it (``refused``: the read stopped at the long member instead);
- ``stored``: ``dry-run --verify``'s ``StoredLine.parsed`` of a stored line past the cap with our
  keys and a malformed document member, refused (``FileFormatError``).
This tree's ``src`` is measured, and each ``--ref`` (a commit) from its ``src`` as ``git archive``
gives it, first on ``PYTHONPATH`` (a ref's tree has no compiled extensions: the readers measured are
pure Python either way). One JSON line a measurement on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import tracemalloc
from collections.abc import Callable
from pathlib import Path

from _machine import source_tree

HERE = Path(__file__).resolve().parent
MIB = 1 << 20
CAP = 8 * MIB
CONTACTS = (15_000, 150_000)


def _peak(read: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        read()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - before


def _write_long(path: Path, start: bytes, length: int, end: bytes) -> Path:
    with path.open("wb") as out:
        out.write(start)
        block = b"y" * MIB
        for left in range(length, 0, -MIB):
            out.write(block[:left])
        out.write(end)
    return path


def _write_contacts(path: Path, count: int, *, shuffled: bool) -> Path:
    people = list(range(1, count + 1))
    if shuffled:
        random.Random(7).shuffle(people)
    with path.open("w") as out:
        for person in people:
            line = {"_id": f"c{person}", "company_sso_id": "co", "crm_data": {"id": person}}
            out.write(json.dumps({**line, "created_at": "2024-01-02T03:04:05Z"}) + "\n")
    return path


def measure(kind: str, size: str, work: Path) -> dict[str, object]:
    """One measurement in this process (the tree under test is first on ``sys.path``)."""
    if kind == "line":
        from crm_audit_adapters.files.lines import numbered_lines

        length = CAP + 1 if size == "cap+1" else 3 * CAP
        path = _write_long(work / "a.jsonl", b'{"id": 1, "long": "', length, b'"}\n{"id": 2}\n')
        seen: list[int] = []
        peak = _peak(lambda: seen.extend(n for n, _ in numbered_lines(path, CAP, on_long=lambda n, h: None)))
        assert seen == [2], seen
        return {"kind": kind, "size": size, "peak_mib": round(peak / MIB, 2)}
    if kind == "record":
        from crm_audit_adapters.files.psql_csv import csv_records

        length = CAP + 1 if size == "cap+1" else 3 * CAP
        path = _write_long(work / "a.csv", b'id,x\n1,"a\nb', length, b'"\n2,z\n')
        records: list[bytes] = []
        peak = _peak(lambda: records.extend(r for _, r in csv_records(path, CAP, on_long=lambda n, r: None)))
        assert records == [b"id,x", b"2,z"], records
        return {"kind": kind, "size": size, "peak_mib": round(peak / MIB, 2)}
    if kind == "members":
        from crm_audit_adapters.files.errors import FileFormatError
        from crm_audit_adapters.files.lines import numbered_lines

        length = CAP + 1 if size == "cap+1" else 3 * CAP
        path = _write_long(work / "a.jsonl", b'{"tenant": "', length, b'", "id": 1}\n{"id": 2}\n')
        lines: list[int] = []
        keep = {"tenant", "id"}
        try:
            peak = _peak(
                lambda: lines.extend(
                    n for n, _ in numbered_lines(path, CAP, on_long=lambda n, h: None, keep=keep)
                )
            )
        except FileFormatError:
            return {"kind": kind, "size": size, "refused": True}
        assert lines == [2], lines
        return {"kind": kind, "size": size, "peak_mib": round(peak / MIB, 2)}
    if kind == "stored":
        from crm_audit_adapters.files.errors import FileFormatError
        from crm_audit_adapters.files.verification import JsonlMigratedLogReader

        length = CAP + 1 if size == "cap+1" else 3 * CAP
        keys = b'{"company_sso_id":"co","external_id":"crm:t:audit:1","source_tag":"crm_migration"'
        path = _write_long(work / "out.jsonl", keys + b',"action":,"pad":"', length, b'"}\n')
        (stored,) = JsonlMigratedLogReader(path).migrated_logs("co", ["crm:t:audit:1"])

        def refused() -> None:
            try:
                stored.parsed()
            except FileFormatError:
                return
            raise AssertionError("a malformed stored line was read")

        peak = _peak(refused)
        return {"kind": kind, "size": size, "peak_mib": round(peak / MIB, 2)}
    from crm_audit_adapters.files import JsonlContactDirectory

    count, order = size.split(":")
    path = _write_contacts(work / "c.jsonl", int(count), shuffled=order == "shuffled")
    held: list[object] = []
    peak = _peak(lambda: held.append(JsonlContactDirectory(path)))
    return {
        "kind": kind,
        "size": size,
        "peak_mib": round(peak / MIB, 2),
        "bytes_a_contact": round(peak / int(count)),
    }


CASES = [
    *(("line", size) for size in ("cap+1", "3cap")),
    *(("record", size) for size in ("cap+1", "3cap")),
    *(("contacts", f"{count}:{order}") for count in CONTACTS for order in ("in-order", "shuffled")),
    *(("members", size) for size in ("cap+1", "3cap")),
    *(("stored", size) for size in ("cap+1", "3cap")),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--ref", action="append", default=[], help="also measure this commit's src")
    parser.add_argument("--kind", action="append", default=[], help="only these kinds (all when none)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        with tempfile.TemporaryDirectory() as work:
            kind, size = args.child
            print(json.dumps(measure(kind, size, Path(work))))
        return
    with tempfile.TemporaryDirectory() as trees:
        sources = {"this tree": str(HERE.parent / "src")}
        sources.update({ref: str(source_tree(ref, Path(trees))) for ref in args.ref})
        for name, src in sources.items():
            for kind, size in CASES:
                if args.kind and kind not in args.kind:
                    continue
                env = {**os.environ, "PYTHONPATH": src}
                child = [sys.executable, __file__, "--child", kind, size]
                out = subprocess.run(child, env=env, check=True, capture_output=True, text=True)
                print(json.dumps({"tree": name, **json.loads(out.stdout)}), flush=True)


if __name__ == "__main__":
    main()
