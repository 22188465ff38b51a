"""Hostile records read at C speed: the scanners before and after, A/B in one process.

Run from the repository root: ``nice -n 5 .venv/bin/python benchmarks/bench_hostile_records.py``
(``--mib N`` sizes the inputs, default 8; ``--repeat N`` the alternating rounds, default 3).

* CSV: ``csv_records`` over a file holding one record past the cap (1 MiB here; 64 MiB in a run),
  read on in blocks by ``psql_csv._RecordScan``: a quoted field made of ``""`` (the hostile one),
  one of ``a""`` (a quote every 3 bytes), a record of ``a,`` (a field every 2 bytes), and a quoted
  field of ``a`` the same length (plain).
* JSON: ``lines.shallow_object`` over a line whose member nests past ``json``'s recursion, which
  ``lines._collection_end`` measures: ``{"a":[`` a level (an object's key each level), ``[`` a
  level, and, 2,000 deep, a member of ``[],`` or of ``[[]],`` repeated (brackets that alternate: a
  step each, before and after); and, after such a member, one of 16 KiB holding a string that never
  ends (``["\"\"…``), which the scanner before tried again from each quote.

A is the scanner as it was (kept in ``tests/property/test_hostile_scans.py`` as the reference the
shipped one is held to), B the shipped one; CPU time, A and B alternating, best of ``--repeat``.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, "tests/property")  # the reference scanners live with their property test

from test_hostile_scans import ReferenceRecordScan, reference_collection_end

from _machine import arguments, cpu_seconds
from crm_audit_adapters.files import lines, psql_csv
from crm_audit_adapters.files.psql_csv import csv_records

CAP = 1 << 20
LONE = 16 << 10
"""The lone quote's member is 16 KiB whatever ``--mib``: the scanner before took a time square in it."""


def csv_file(folder: Path, name: str, record: bytes) -> Path:
    path = folder / f"{name}.csv"
    path.write_bytes(b"id,audited_changes\n" + record + b"\n2,x\n")
    return path


def read_csv(path: Path, fields: int) -> None:
    long: list[int] = []
    rows = list(csv_records(path, CAP, on_long=lambda number, record: long.append(record.fields)))
    assert long == [fields], long
    assert len(rows) == 2, len(rows)


def read_json(line: str) -> None:
    with contextlib.suppress(ValueError):  # the lone quote's line is not JSON, found once its end is
        lines.shallow_object(line)


def main() -> None:
    parser = arguments(__doc__, repeat=3)
    parser.add_argument("--mib", type=int, default=8)
    args = parser.parse_args()
    size = args.mib << 20
    shipped_scan, shipped_end = psql_csv._RecordScan, lines._collection_end
    sides = {
        "A": (ReferenceRecordScan, reference_collection_end),
        "B": (shipped_scan, shipped_end),
    }
    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        cases: dict[str, Callable[[], None]] = {}
        for name, record, fields in (
            ('csv ""', b'1,"' + b'""' * (size // 2) + b'"', 2),
            ('csv a""', b'1,"' + b'a""' * (size // 3) + b'"', 2),
            ("csv a,", b"1," + b"a," * (size // 2), size // 2 + 2),
            ("csv plain", b'1,"' + b"a" * size + b'"', 2),
        ):
            path = csv_file(base, name.replace(" ", "_").replace('"', "q").replace(",", "c"), record)
            cases[name] = lambda path=path, fields=fields: read_csv(path, fields)  # type: ignore[misc]
        levels = size // 8
        keyed = '{"a":[' * levels + "1" + "]}" * levels
        bare = "[" * (size // 2) + "]" * (size // 2)
        wide = "[" * 2000 + "[]," * (size // 3) + "1" + "]" * 2000
        wide2 = "[" * 2000 + "[[]]," * (size // 5) + "1" + "]" * 2000
        for name, member in (
            ('json {"a":[', keyed),
            ("json [", bare),
            ("json [],", wide),
            ("json [[]],", wide2),
        ):
            line = '{"id": 1, "audited_changes": ' + member + ', "tenant": "acme"}'
            cases[name] = lambda line=line: read_json(line)  # type: ignore[misc]
        # Last in its line, so that no quote after it closes its string: a line that is not JSON.
        lone = '{"id": 1, "a": ' + "[" * 2000 + "]" * 2000 + ', "b": ["' + '\\"' * (LONE // 2) + "]}"
        cases['json ["\\"'] = lambda: read_json(lone)
        best = {(case, side): float("inf") for case in cases for side in sides}
        for _ in range(args.repeat):
            for side, (scan, end) in sides.items():
                psql_csv._RecordScan, lines._collection_end = scan, end  # type: ignore[misc,assignment]
                for case, work in cases.items():
                    best[case, side] = min(best[case, side], cpu_seconds(work))
        psql_csv._RecordScan, lines._collection_end = shipped_scan, shipped_end  # type: ignore[misc]
    print(f"inputs of {args.mib} MiB; CPU s, best of {args.repeat} alternating rounds")
    for case in cases:
        a, b = best[case, "A"], best[case, "B"]
        print(f"{case:12} A (before) {a:8.3f} s  B (after) {b:8.3f} s  A/B {a / b:8.1f}")
    for side in sides:
        plain = best["csv plain", side]
        print(f'{side}: csv "" / plain {best["csv " + chr(34) * 2, side] / plain:.1f}')


if __name__ == "__main__":
    main()
