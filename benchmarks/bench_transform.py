"""Transform cost against loading cost, over the audited 5.8.0 corpus (one run, best of N repeats).

    .venv/bin/python benchmarks/bench_transform.py [--repeat 5]

* loader alone: ``load_audited_changes`` on every row's ``audited_changes``.
* plan + transform: ``Transformer.prepare`` (which loads each row once), ``plan``,
  ``fetch_lookups`` against the in-memory ports, and ``transform`` — a page per tenant.
The goal is transforming at most 2x the cost of loading.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from _machine import Stopwatch, arguments, uptime
from crm_audit_transform import load_audited_changes
from crm_audit_transform.config import load_default_config
from crm_audit_transform.lookup import LookupPorts, fetch_lookups
from crm_audit_transform.testing.golden import corpus_tenant, corpus_tenants
from crm_audit_transform.transformer import Transformer


def timed(run: Callable[[], None]) -> float:
    with Stopwatch() as took:
        run()
    return took.wall


def main() -> None:
    args = arguments(__doc__, repeat=5).parse_args()
    tenants = [corpus_tenant(t) for t in corpus_tenants()]
    rows = [row for tenant in tenants for row in tenant.rows]
    transformer = Transformer(load_default_config())
    # Ports are built once, outside the timed part.
    ports = [(t, t.user_directory(), t.sso_directory(), t.contact_directory()) for t in tenants]

    def load_only() -> None:
        for row in rows:
            # A load error is an outcome for the transformer; here only its cost matters.
            with contextlib.suppress(Exception):
                load_audited_changes(row.audited_changes)

    def plan_and_transform() -> None:
        for tenant, users, sso, contacts in ports:
            prepared = transformer.prepare(tenant.rows)
            ctx = fetch_lookups(
                transformer.plan(prepared),
                company_sso_id=tenant.company_sso_id,
                tenant=tenant.name,
                ports=LookupPorts(users, sso, contacts),
            )
            transformer.transform(prepared, ctx, company_sso_id=tenant.company_sso_id)

    # Interleaved, best of N each: the machine is shared, so a busy moment hits both sides alike.
    load_runs, transform_runs = [], []
    print(f"load before: {uptime()}")
    for _ in range(args.repeat):
        load_runs.append(timed(load_only))
        transform_runs.append(timed(plan_and_transform))
    print(f"load after: {uptime()}")
    load_s, transform_s = min(load_runs), min(transform_runs)
    n = len(rows)
    print(f"rows: {n} (best of {args.repeat})")
    print(f"loader alone:       {load_s:.3f} s  {n / load_s:,.0f} rows/s")
    print(f"plan + transform:   {transform_s:.3f} s  {n / transform_s:,.0f} rows/s")
    print(f"ratio (transform / load): {transform_s / load_s:.2f}x  (goal <= 2x)")


if __name__ == "__main__":
    main()
