"""The Transformer of this tree against the Transformer of another checkout, in one process.

    git worktree add --detach /tmp/before <rev>
    .venv/bin/python benchmarks/bench_transform_ab.py --before /tmp/before [--repeat 15] [--copies 8]
        [--clock cpu|wall]

The other checkout's ``src/crm_audit_transform`` is imported under another name, so both versions
run in the same process, interleaved round by round: a busy moment of the shared machine hits both
alike, and the figures that matter are the ratios (after / before) of the same round. Over the audited
5.8.0 corpus (``--copies`` times, pages of 500 per tenant as a run makes them):

``Transformer.transform`` alone is timed (rows prepared and lookups made outside the timing), so the
figure compares the rules and the way they are run, not the loader: the other checkout's compiled
loader extension is usually not built (or not importable under another name), so its ``prepare``
would run the pure-Python path and any whole-page comparison would measure that instead.

Each version gets its own rows, ports and lookups, built by its own ``testing.golden`` module.
"""

from __future__ import annotations

import importlib.util
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import crm_audit_transform
from _machine import arguments

PAGE = 500


def load_package(src: Path, name: str) -> ModuleType:
    """Import the package at ``src`` as ``name`` (its imports inside are relative)."""
    spec = importlib.util.spec_from_file_location(
        name, src / "__init__.py", submodule_search_locations=[str(src)]
    )
    if spec is None or spec.loader is None:
        raise SystemExit(f"no package at {src}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def workload(package: ModuleType, copies: int) -> tuple[Callable[[], None], int]:
    """The timed callable for one version, and the number of rows it transforms."""
    name = package.__name__
    golden = importlib.import_module(f"{name}.testing.golden")
    lookup = importlib.import_module(f"{name}.lookup")
    transformer = package.Transformer(package.load_default_config())
    pages: list[tuple[Any, Any, str]] = []  # (rows, ctx, company)
    for tenant_name in golden.corpus_tenants():
        tenant = golden.corpus_tenant(tenant_name)
        ports = lookup.LookupPorts(
            tenant.user_directory(), tenant.sso_directory(), tenant.contact_directory()
        )
        rows = tenant.rows * copies
        for start in range(0, len(rows), PAGE):
            chunk = rows[start : start + PAGE]
            prepared = transformer.prepare(chunk)
            ctx = lookup.fetch_lookups(
                transformer.plan(prepared),
                company_sso_id=tenant.company_sso_id,
                tenant=tenant.name,
                ports=ports,
            )
            pages.append((chunk, ctx, tenant.company_sso_id))
    prepared_pages = [(transformer.prepare(rows), ctx, company) for rows, ctx, company in pages]

    def transform_only() -> None:
        for prepared, ctx, company in prepared_pages:
            transformer.transform(prepared, ctx, company_sso_id=company)

    return transform_only, sum(len(rows) for rows, _, _ in pages)


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def timed(run: Callable[[], None], clock: Callable[[], float]) -> float:
    start = clock()
    run()
    return clock() - start


def main() -> None:
    parser = arguments(__doc__, repeat=15)
    parser.add_argument(
        "--before", type=Path, required=True, help="a checkout of the version to compare with"
    )
    parser.add_argument("--copies", type=int, default=8)
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="cpu", help="cpu: less hit by other work")
    args = parser.parse_args()
    clock = CLOCKS[args.clock]
    before = load_package(args.before / "src" / "crm_audit_transform", "before_crm_audit_transform")
    versions = {"before": workload(before, args.copies), "after": workload(crm_audit_transform, args.copies)}
    rows = versions["after"][1]
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.repeat):
        for label, (transform_only, _) in versions.items():
            times.setdefault((label, "transform"), []).append(timed(transform_only, clock))
    print(f"rows per pass: {rows}; {args.repeat} interleaved rounds, {args.clock} clock")
    print(f"before = {args.before}")
    for part in ("transform",):
        b, a = times[("before", part)], times[("after", part)]
        ratios = [x / y for x, y in zip(a, b, strict=True)]
        print(
            f"{part:24} before best {min(b):.3f} s ({rows / min(b):,.0f} rows/s)  "
            f"after best {min(a):.3f} s ({rows / min(a):,.0f} rows/s)  "
            f"after/before: best {min(a) / min(b):.3f}, median of rounds {statistics.median(ratios):.3f}"
        )


if __name__ == "__main__":
    main()
