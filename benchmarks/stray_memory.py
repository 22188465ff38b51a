"""What verify's stray pass holds for strays that name no audit of the tenant: peak RSS and CPU.

Usage: .venv/bin/python benchmarks/stray_memory.py [--ids 1000000] [--ref REV ...] [--repeat 2]

``Walk.stray_pass`` (the real one, on a walk of no rows) over a reader whose tagged stream yields
``--ids`` ``crm_migration`` external ids of another tenant (``crm:other:audit:{n}``), made one at a
time (the stream itself holds nothing), each in its own process:
- ``distinct``: every id once (the common case: no duplicate);
- ``doubled``: every 1,000th id twice (duplicates: the pass reads the stream again for them);
- ``tenant``: ids of this tenant (``crm:acme:audit:{n}00``, 100 apart: sparse, no bitmap) naming
  no walked audit, in the stream's text order (``1``, ``10``, ``100``, …, ``11``): each kept as its
  audit id, sorted in across all those held.
Each line gives the process's peak RSS above its RSS before the pass (``ru_maxrss`` less
``VmRSS``, MiB: the load does not move it) and the pass's CPU seconds (``time.process_time``, which
a busy machine inflates less than the wall; read only as ratios within one run). This tree's
``src`` is measured, and each ``--ref`` (a commit) from its ``src`` as ``git archive`` gives it,
first on ``PYTHONPATH``; the trees alternate ``--repeat`` times. One JSON line a measurement on
stdout, ``uptime`` before and after on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

from _machine import arguments, source_tree, uptime

HERE = Path(__file__).resolve().parent
KINDS = ("distinct", "doubled", "tenant")
COMPANY = "company-a"


class _Reader:
    """A ``TaggedExternalIds`` reader whose stream is made as it is read."""

    def __init__(self, ids: int, kind: str) -> None:
        self.ids, self.kind = ids, kind

    def tagged_external_ids(self, company_sso_id: str, prefix: str) -> Iterator[tuple[str, str]]:
        if self.kind == "tenant":
            # Zeros appended keep the text order of n: the ids' own, as MongoDB sorts them.
            yield from ((f"crm:acme:audit:{n}00", "crm_migration") for n in text_order(self.ids))
            return
        for n in range(self.ids):
            yield f"crm:other:audit:{n}", "crm_migration"
            if self.kind == "doubled" and n % 1000 == 0:
                yield f"crm:other:audit:{n}", "crm_migration"

    def migrated_external_ids(self, company_sso_id: str) -> Iterator[str]:
        return (ext_id for ext_id, _ in self.tagged_external_ids(company_sso_id, ""))


def text_order(last: int) -> Iterator[int]:
    """1 to ``last`` in the order of their decimal text (1, 10, 100, …, 11, …), one at a time."""
    n = 1
    for _ in range(last):
        yield n
        if n * 10 <= last:
            n *= 10
            continue
        while n % 10 == 9 or n + 1 > last:
            n //= 10
        n += 1


def _rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def measure(kind: str, ids: int) -> dict[str, object]:
    from crm_audit_transform.usecases._id_set import AuditIdSet
    from crm_audit_transform.usecases._verify_findings import found_by_kind
    from crm_audit_transform.usecases._verify_walk import Walk

    walk = Walk.__new__(Walk)  # the pass's own state, without a page walked
    walk.company, walk.tenant = COMPANY, "acme"
    walk.ports = SimpleNamespace(reader=_Reader(ids, kind))  # type: ignore[assignment]
    walk.found = found_by_kind(10_000)
    walk.walked = AuditIdSet()
    walk.foreign_strays = 0
    before = _rss_kib()
    cpu = time.process_time()
    walk.stray_pass()
    cpu = time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {
        "kind": kind,
        "ids": ids,
        "strays": walk.found["stray"].count,
        "duplicates": walk.found["duplicate"].count,
        "peak_rss_above_mib": round((peak - before) / 1024, 1),
        "cpu_s": round(cpu, 3),
    }


def main() -> None:
    parser = arguments(__doc__, repeat=2)
    parser.add_argument("--ids", type=int, default=1_000_000)
    parser.add_argument("--ref", action="append", default=[], help="also measure this commit's src")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.ids)))
        return
    print(uptime(), file=sys.stderr)
    with tempfile.TemporaryDirectory() as trees:
        sources = {"this tree": str(HERE.parent / "src")}
        sources.update({ref: str(source_tree(ref, Path(trees))) for ref in args.ref})
        for round_ in range(args.repeat):
            for kind in KINDS:
                for name, src in sources.items():
                    env = {**os.environ, "PYTHONPATH": src}
                    child = [sys.executable, __file__, "--child", kind, "--ids", str(args.ids)]
                    out = subprocess.run(child, env=env, check=True, capture_output=True, text=True)
                    print(json.dumps({"tree": name, "round": round_, **json.loads(out.stdout)}), flush=True)
    print(uptime(), file=sys.stderr)


if __name__ == "__main__":
    main()
